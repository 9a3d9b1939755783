/**
 * At stop, no command moves an actuator after its safe state: the command path is closed first —
 * a command queued behind a slow one is answered rejected with its id and never executed — and
 * the actuators refuse to act once stopped.
 */
import { describe, expect, it } from "vitest";
import { ActuatorsPart } from "../../src/agent/parts/actuators.js";
import { Charger } from "../../src/control/charger.js";
import { type CommandResult, CommandRouter, type Remembered } from "../../src/control/commands.js";
import { Streetlight } from "../../src/control/streetlight.js";
import { SimRelay } from "../../src/control/relay.js";
import { silentLogger } from "../../src/ops/logger.js";
import { HeldRelay } from "../helpers/held-relay.js";
import { waitFor } from "../helpers/wait.js";

const tick = () => new Promise((r) => setImmediate(r));

function charger(relay: HeldRelay) {
  const c = new Charger({ name: "c1", relay, powerPoint: "m/p", energyPoint: "m/e", onlinePoint: "m/online", maxPowerW: 3000, maxKwh: 10, maxMinutes: 240, meterTimeoutMs: 60_000 }, silentLogger());
  const now = Date.now();
  c.process([{ point: "m/online", ts: now, value: true, quality: "good" }, { point: "m/p", ts: now, value: 0, quality: "good" }, { point: "m/e", ts: now, value: 1, quality: "good" }], now);
  return c;
}

function router(actuators: ConstructorParameters<typeof CommandRouter>[0]) {
  const memory = new Map<string, Remembered>();
  const published: CommandResult[] = [];
  const r = new CommandRouter(actuators, { recall: (id) => memory.get(id), remember: (id, w) => void memory.set(id, w), publish: (p) => void published.push(p) }, silentLogger());
  return { r, memory, published };
}

async function drain(relay: HeldRelay, until: Promise<unknown>): Promise<void> {
  let done = false;
  void until.then(() => (done = true));
  for (let i = 0; i < 200 && !done; i++) {
    while (relay.pending) relay.finishNext();
    await tick();
  }
}

describe("commands at stop", () => {
  it("a start queued behind a slow stop is refused, not run after the charger's safe state", async () => {
    const relay = new HeldRelay();
    const c = charger(relay);
    const { r, memory, published } = router([c]);
    // The off owed since start hangs on the line; a start waits behind it.
    const a = r.handle("c1", JSON.stringify({ id: "a", action: "stop" }), "mqtt");
    const b = r.handle("c1", JSON.stringify({ id: "b", action: "start" }), "mqtt");
    // On the line: the router loads its checks with the first command (a dynamic import), so
    // this takes more than one turn of the event loop.
    await waitFor("the stop on the line", () => relay.pending > 0);
    const part = new ActuatorsPart([c], { store: () => {} } as never, silentLogger(), () => r.close());
    const stopping = part.stop();
    await drain(relay, Promise.all([a, b, stopping]));
    await stopping;
    const [ra, rb] = await Promise.all([a, b]);
    expect(ra.status).toBe("ok");
    expect(rb).toMatchObject({ id: "b", status: "rejected", reason: "the gateway is stopping; send again later" });
    expect(memory.get("b")).toEqual({ answered: rb });
    expect(relay.on).toBe(false);
    expect(c.state()).toMatchObject({ charging: false, relay: "off" });
    // After the stop: answered, with the id, and nothing moves.
    const late = await r.handle("c1", JSON.stringify({ id: "late", action: "start" }), "mqtt");
    expect(late).toMatchObject({ id: "late", status: "rejected" });
    expect(published.at(-1)).toEqual(late);
    expect(relay.writes.filter((w) => w)).toEqual([]);
  });

  it("stopped actuators refuse to act, whoever asks", async () => {
    const relay = new HeldRelay();
    const c = charger(relay);
    const stop = c.stop();
    await drain(relay, stop);
    await expect(c.execute("start", {}, Date.now())).rejects.toThrow(/stopped/);
    const light = new Streetlight(
      { name: "s1", relay: new SimRelay(), schedule: { latitude: 45, longitude: 9, timezone: "Europe/Rome", dimmable: false, on: "sunset", off: "sunrise", on_offset_min: 0, off_offset_min: 0 }, maxOverrideS: 3600, reassertMs: 600_000 },
      silentLogger(),
    );
    await light.start();
    await light.stop();
    await expect(light.execute("set", { on: true, duration_s: 600 }, Date.now())).rejects.toThrow(/stopped/);
    expect(light.state()).toMatchObject({ mode: "auto" });
  });
});
