import { describe, expect, it } from "vitest";
import { SimRelay } from "../../src/control/relay.js";
import { Streetlight } from "../../src/control/streetlight.js";
import { desiredState } from "../../src/control/streetlight-schedule.js";
import { silentLogger } from "../../src/ops/logger.js";

const milan = { latitude: 45.46, longitude: 9.19, timezone: "Europe/Rome", dimmable: false, part_night: { from: "00:30", to: "05:00", mode: "off" as const }, presence_boost: { level: 100, hold_min: 5 } };
const NOON = Date.parse("2026-06-21T10:00:00Z");
const NIGHT = Date.parse("2026-06-21T21:30:00Z"); // 23:30 in Rome: dark, before the part-night window
const PART_NIGHT = Date.parse("2026-06-22T00:00:00Z"); // 02:00 in Rome
const settle = () => new Promise((r) => setTimeout(r, 0));

function rig() {
  const relay = new SimRelay("solar-1 load_output");
  const light = new Streetlight({ name: "street-3", relay, schedule: milan, presencePoint: "pir-3/presence", maxOverrideS: 86_400, reassertMs: 600_000 }, silentLogger());
  return { relay, light };
}

describe("Streetlight", () => {
  it("takes its automatic state at start: off by day, on at night", async () => {
    const day = rig();
    day.relay.on = true;
    await day.light.start(NOON);
    expect(day.relay.on).toBe(false);
    const night = rig();
    await night.light.start(NIGHT);
    expect(night.relay.on).toBe(true);
    expect(night.light.state()).toMatchObject({ mode: "auto", on: true, reason: "night" });
  });

  it("follows the schedule as time passes, and re-asserts it now and then", async () => {
    const { relay, light } = rig();
    await light.start(NOON);
    const writes = relay.writes;
    let changes = 0;
    let was = relay.on;
    for (let t = NOON; t < NOON + 13 * 3_600_000; t += 60_000) {
      light.tick(t);
      await settle();
      expect(relay.on, new Date(t).toISOString()).toBe(desiredState(milan, t).on);
      if (relay.on !== was) changes++;
      was = relay.on;
    }
    expect(changes).toBe(2); // on after sunset, off at 00:30
    // Besides the changes, one write per re-assert period (10 min) in case the controller was reset.
    expect(relay.writes - writes).toBeGreaterThan(changes);
    expect(relay.writes - writes).toBeLessThanOrEqual(changes + 13 * 6);
  });

  it("a presence detection during part-night lights the lamp for the hold time", async () => {
    const { relay, light } = rig();
    await light.start(PART_NIGHT);
    expect(relay.on).toBe(false);
    light.process([{ point: "pir-3/presence", ts: PART_NIGHT + 1000, value: true, quality: "good" }], PART_NIGHT + 1000);
    await settle();
    expect(relay.on).toBe(true);
    light.tick(PART_NIGHT + 1000 + 5 * 60_000 + 1);
    await settle();
    expect(relay.on).toBe(false);
  });

  it("an override holds until it expires, then automatic mode resumes", async () => {
    const { relay, light } = rig();
    await light.start(NOON);
    const state = await light.execute("set", { on: true, duration_s: 600 }, NOON);
    expect(state).toMatchObject({ mode: "override", on: true });
    expect(relay.on).toBe(true);
    light.tick(NOON + 599_000);
    await settle();
    expect(relay.on).toBe(true);
    light.tick(NOON + 600_000);
    await settle();
    expect(relay.on).toBe(false);
    expect(light.state()).toMatchObject({ mode: "auto" });
    await light.execute("set", { on: true, duration_s: 600 }, NOON + 700_000);
    await light.execute("auto", {}, NOON + 710_000);
    expect(relay.on).toBe(false);
  });

  it("reports a relay that does not answer as a fault and the lamp state as unknown, and recovers", async () => {
    const { relay, light } = rig();
    relay.broken = true;
    await light.start(NIGHT);
    expect(light.state()).toMatchObject({ on: null, fault: expect.stringMatching(/could not switch on solar-1 load_output/) });
    const out = light.tick(NIGHT + 1000);
    expect(out.readings.find((r) => r.point === "street-3/on")).toMatchObject({ value: null, quality: "bad" });
    await settle();
    relay.broken = false;
    light.tick(NIGHT + 2000);
    await settle();
    expect(relay.on).toBe(true);
    expect(light.state().fault).toBeUndefined();
    await expect((async () => {
      relay.broken = true;
      return light.execute("set", { on: false, duration_s: 600 }, NIGHT + 3000);
    })()).rejects.toThrow(/could not switch off/);
  });

  it("bounds the override a command may ask for", () => {
    const { light } = rig();
    const set = light.actions.get("set")!;
    expect(set.safeParse({ on: true, duration_s: 86_401 }).success).toBe(false);
    expect(set.safeParse({ on: true, level: 150 }).success).toBe(false);
    expect(set.safeParse({ on: true }).success).toBe(true);
  });
});
