import { describe, expect, it } from "vitest";
import { Charger, type ChargerOptions } from "../../src/control/charger.js";
import { type Relay, SimRelay } from "../../src/control/relay.js";
import type { Reading } from "../../src/model/reading.js";
import { silentLogger } from "../../src/ops/logger.js";
import { HeldRelay } from "../helpers/held-relay.js";

const T0 = 1_800_000_000_000;

type Limits = Partial<Pick<ChargerOptions, "maxKwh" | "maxMinutes" | "maxPowerW" | "meterTimeoutMs">>;

function chargerOn(relay: Relay, over: Limits = {}) {
  return new Charger(
    { name: "point-1", relay, powerPoint: "m1/power", energyPoint: "m1/import_active_energy", onlinePoint: "m1/online", maxPowerW: 800, maxKwh: 2, maxMinutes: 120, meterTimeoutMs: 30_000, ...over },
    silentLogger(),
  );
}

const meter = (ts: number, power: number, kwh: number, online = true): Reading[] => [
  { point: "m1/power", ts, value: power, quality: "good" },
  { point: "m1/import_active_energy", ts, value: kwh, quality: "good" },
  { point: "m1/online", ts, value: online, quality: "good" },
];

function rig(over: Limits = {}) {
  const relay = new SimRelay("relay-1");
  return { relay, charger: chargerOn(relay, over), meter };
}

const sessions = (events: Reading[]) => events.filter((e) => e.point === "point-1/session").map((e) => JSON.parse(String(e.value)));
const settle = () => new Promise((r) => setTimeout(r, 0));

describe("Charger", () => {
  it("is off at start, and will not start without a meter reading", async () => {
    const { relay, charger, meter } = rig();
    relay.on = true; // whatever it was before the agent started
    await charger.start();
    expect(relay.on).toBe(false);
    await expect(charger.execute("start", {}, T0)).rejects.toThrow(/meter has not been read/);
    charger.process(meter(T0, 0, 100), T0);
    await charger.execute("start", {}, T0 + 10);
    expect(relay.on).toBe(true);
  });

  it("stops at the session's kWh limit within one meter poll and records the session", async () => {
    const { relay, charger, meter } = rig();
    charger.process(meter(T0, 0, 100), T0);
    await charger.execute("start", { max_kwh: 0.5 }, T0);
    expect(sessions(charger.process(meter(T0 + 60_000, 500, 100.3), T0 + 60_000).events)).toEqual([]);
    expect(relay.on).toBe(true);
    const out = charger.process(meter(T0 + 120_000, 500, 100.5), T0 + 120_000);
    await settle();
    expect(relay.on).toBe(false);
    expect(sessions(out.events)).toEqual([{ start: T0, end: T0 + 120_000, kwh: 0.5, reason: "kwh-limit" }]);
    expect(charger.state()).toMatchObject({ charging: false, relay: "off" });
  });

  it("stops at the duration limit even if no reading comes", async () => {
    const { relay, charger, meter } = rig({ meterTimeoutMs: 10 * 60_000 });
    charger.process(meter(T0, 0, 100), T0);
    await charger.execute("start", { max_minutes: 5 }, T0);
    charger.process(meter(T0 + 4 * 60_000, 100, 100.01), T0 + 4 * 60_000);
    expect(relay.on).toBe(true);
    const out = charger.tick(T0 + 5 * 60_000);
    await settle();
    expect(relay.on).toBe(false);
    expect(sessions(out.events)[0]).toMatchObject({ reason: "duration-limit" });
  });

  it("cuts off the moment the point draws more than its power limit", async () => {
    const { relay, charger, meter } = rig();
    charger.process(meter(T0, 0, 100), T0);
    await charger.execute("start", {}, T0);
    const out = charger.process(meter(T0 + 1000, 2300, 100.001), T0 + 1000);
    await settle();
    expect(relay.on).toBe(false);
    expect(sessions(out.events)[0]).toMatchObject({ reason: "power-limit" });
  });

  it("ends the session when the meter is lost (offline, or silent too long)", async () => {
    const a = rig();
    a.charger.process(a.meter(T0, 0, 100), T0);
    await a.charger.execute("start", {}, T0);
    const out = a.charger.process([{ point: "m1/online", ts: T0 + 1000, value: false, quality: "good" }, { point: "m1/power", ts: T0 + 1000, value: null, quality: "bad" }], T0 + 1000);
    await settle();
    expect(a.relay.on).toBe(false);
    expect(sessions(out.events)[0]).toMatchObject({ reason: "meter-lost" });

    const b = rig();
    b.charger.process(b.meter(T0, 0, 100), T0);
    await b.charger.execute("start", {}, T0);
    const silent = b.charger.tick(T0 + 31_000);
    await settle();
    expect(b.relay.on).toBe(false);
    expect(sessions(silent.events)[0]).toMatchObject({ reason: "meter-lost" });
  });

  it("keeps trying to switch off a relay that does not answer, and says so", async () => {
    const { relay, charger, meter } = rig();
    charger.process(meter(T0, 0, 100), T0);
    await charger.execute("start", {}, T0);
    relay.broken = true;
    charger.process(meter(T0 + 1000, 2300, 100), T0 + 1000);
    await settle();
    expect(charger.state()).toMatchObject({ charging: false, relay: "off-pending", fault: expect.stringMatching(/could not switch off relay-1/) });
    const writes = relay.writes;
    charger.tick(T0 + 2000);
    await settle();
    expect(relay.writes).toBeGreaterThan(writes);
    relay.broken = false;
    charger.tick(T0 + 3000);
    await settle();
    expect(relay.on).toBe(false);
    expect(charger.state()).toMatchObject({ relay: "off" });
    expect(charger.state().fault).toBeUndefined();
  });

  it("bounds the arguments a command may give", () => {
    const { charger } = rig();
    const start = charger.actions.get("start")!;
    expect(start.safeParse({ max_kwh: 3 }).success).toBe(false);
    expect(start.safeParse({ max_minutes: 121 }).success).toBe(false);
    expect(start.safeParse({ max_kwh: 1.5, max_minutes: 30 }).success).toBe(true);
  });

  it("records a session ended by a command or by shutdown", async () => {
    const { relay, charger, meter } = rig();
    charger.process(meter(T0, 0, 100), T0);
    await charger.execute("start", {}, T0);
    await charger.execute("stop", {}, T0 + 5000);
    expect(relay.on).toBe(false);
    expect(sessions(charger.tick(T0 + 6000).events)[0]).toMatchObject({ reason: "command", end: T0 + 5000 });
    await charger.execute("start", {}, T0 + 7000);
    expect(sessions((await charger.stop(T0 + 8000)).events)[0]).toMatchObject({ reason: "shutdown" });
    expect(relay.on).toBe(false);
  });

  it("a session that ends while the relay is switching on: a clear error, and the relay ends off", async () => {
    const relay = new HeldRelay();
    const charger = chargerOn(relay);
    charger.process(meter(T0, 0, 100), T0);
    const started = charger.execute("start", {}, T0).then(
      () => null,
      (err: Error) => err,
    );
    expect(relay.writes).toEqual([true]);
    // The meter goes offline while the switch-on is on the line: the session ends (meter lost).
    const out = charger.process([{ point: "m1/online", ts: T0 + 500, value: false, quality: "good" }], T0 + 500);
    expect(sessions(out.events)[0]).toMatchObject({ reason: "meter-lost" });
    relay.finishNext(); // the switch-on completes after the session ended
    await settle();
    while (relay.pending > 0) {
      relay.finishNext();
      await settle();
    }
    expect((await started)?.message).toMatch(/^point-1: the session ended \(meter-lost\) while the relay was switching on; the relay is off$/);
    expect(relay.on).toBe(false);
    expect(relay.writes.at(-1)).toBe(false);
    expect(charger.state()).toMatchObject({ charging: false, relay: "off" });
  });

  it("keeps one safe-state write in flight: ticks while a relay hangs do not pile up writes", async () => {
    const relay = new HeldRelay();
    const charger = chargerOn(relay);
    const starting = charger.start(); // the off at start hangs on the line
    for (let t = 1; t <= 10; t++) charger.tick(T0 + t * 1000);
    await settle();
    expect(relay.writes).toHaveLength(1);
    expect(relay.maxInFlight).toBe(1);
    relay.finishNext(new Error("timeout"));
    await starting;
    expect(charger.state()).toMatchObject({ relay: "off-pending", fault: expect.stringMatching(/could not switch off held relay: timeout/) });
    // Failed: the next tick tries again, once, and the ticks behind it wait for that one.
    for (let t = 11; t <= 20; t++) charger.tick(T0 + t * 1000);
    await settle();
    expect(relay.writes).toHaveLength(2);
    relay.finishNext();
    await settle();
    expect(charger.state()).toMatchObject({ relay: "off" });
    charger.tick(T0 + 21_000);
    expect(relay.writes).toHaveLength(2); // confirmed off: nothing owed
  });

  it("a start waits for an off that is still on the line, so the on lands after it", async () => {
    const relay = new HeldRelay();
    const charger = chargerOn(relay);
    const starting = charger.start();
    charger.process(meter(T0, 0, 100), T0);
    const started = charger.execute("start", {}, T0);
    await settle();
    expect(relay.writes).toEqual([false]);
    relay.finishNext();
    await starting;
    await settle();
    expect(relay.writes).toEqual([false, true]);
    relay.finishNext();
    expect(await started).toMatchObject({ charging: true, relay: "on" });
    expect(relay.maxInFlight).toBe(1);
  });
});
