/**
 * One write at a time per lamp: a tick's re-assert and a command's switch must not both be on the
 * line (a dead controller would get a write per second on top of the queued ones, and two writes
 * in flight can land in either order).
 */
import { describe, expect, it } from "vitest";
import { Streetlight } from "../../src/control/streetlight.js";
import { silentLogger } from "../../src/ops/logger.js";
import { HeldRelay } from "../helpers/held-relay.js";

const milan = { latitude: 45.46, longitude: 9.19, timezone: "Europe/Rome", dimmable: false };
const NOON = Date.parse("2026-06-21T10:00:00Z");
const NIGHT = Date.parse("2026-06-21T21:30:00Z");
const settle = () => new Promise((r) => setTimeout(r, 0));

function rig() {
  const relay = new HeldRelay();
  const light = new Streetlight({ name: "street-3", relay, schedule: milan, maxOverrideS: 86_400, reassertMs: 600_000 }, silentLogger());
  return { relay, light };
}

describe("Streetlight writes", () => {
  it("a command waits for the tick's write on the line, then switches as the command asks", async () => {
    const { relay, light } = rig();
    const starting = light.start(NOON);
    relay.finishNext();
    await starting;
    light.tick(NIGHT); // night: the schedule switches on; the write hangs
    await settle();
    expect(relay.writes).toEqual([false, true]);
    const done = light.execute("set", { on: false, duration_s: 600 }, NIGHT + 100);
    for (let t = 1; t <= 5; t++) light.tick(NIGHT + t * 1000); // the ticks behind it add nothing
    await settle();
    expect(relay.writes).toEqual([false, true]);
    relay.finishNext(); // the tick's on completes; only now the command's off goes out
    await settle();
    expect(relay.writes).toEqual([false, true, false]);
    expect(relay.maxInFlight).toBe(1);
    relay.finishNext();
    expect(await done).toMatchObject({ mode: "override", on: false });
    expect(relay.on).toBe(false);
  });

  it("a tick while a command's write is on the line does nothing", async () => {
    const { relay, light } = rig();
    const starting = light.start(NOON);
    relay.finishNext();
    await starting;
    const done = light.execute("set", { on: true, duration_s: 600 }, NOON + 100);
    await settle();
    for (let t = 1; t <= 5; t++) light.tick(NOON + t * 1000);
    await settle();
    expect(relay.writes).toEqual([false, true]);
    relay.finishNext();
    await done;
    expect(relay.maxInFlight).toBe(1);
    expect(light.state()).toMatchObject({ mode: "override", on: true });
  });
});
