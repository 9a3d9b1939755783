import { describe, expect, it } from "vitest";
import { type Part, PartStartError, Parts, part } from "../../src/agent/parts.js";
import { UserError } from "../../src/model/errors.js";
import { silentLogger } from "../../src/ops/logger.js";

function recorder() {
  const log: string[] = [];
  const make = (name: string, o: { startFails?: unknown; stopFails?: boolean; stopHangs?: boolean } = {}): Part =>
    part(
      name,
      () => {
        log.push(`start ${name}`);
        if (o.startFails !== undefined) throw o.startFails;
      },
      async () => {
        log.push(`stop ${name}`);
        if (o.stopFails) throw new Error(`${name} broke`);
        if (o.stopHangs) await new Promise(() => {});
      },
    );
  return { log, make };
}

describe("Parts", () => {
  it("starts in order and stops in reverse, safety parts first, each stop on its own", async () => {
    const { log, make } = recorder();
    const parts = new Parts(silentLogger());
    await parts.start(make("outbox"), { essential: true });
    await parts.start(make("uplink"));
    await parts.start(make("sources"));
    await parts.start(make("actuators"), { safety: true });
    await parts.start(make("metrics", { stopFails: true }));
    await parts.start(make("feed", { stopHangs: true }), { stopTimeoutMs: 50 });
    expect(parts.status().map((p) => p.state)).toEqual(["running", "running", "running", "running", "running", "running"]);
    await parts.stop();
    expect(log.filter((l) => l.startsWith("stop"))).toEqual(["stop actuators", "stop feed", "stop metrics", "stop sources", "stop uplink", "stop outbox"]);
  });

  it("an optional part that fails to start is left out and reported; the others run", async () => {
    const { make } = recorder();
    const parts = new Parts(silentLogger());
    expect(await parts.start(make("live feed", { startFails: new Error("port 8080 in use") }))).toBe(false);
    expect(await parts.start(make("metrics"))).toBe(true);
    expect(parts.status()).toEqual([
      { name: "live feed", state: "failed", error: "port 8080 in use" },
      { name: "metrics", state: "running", error: null },
    ]);
  });

  it("an essential part that fails names itself; a user's mistake goes up as it is (its exit code kept)", async () => {
    const { make } = recorder();
    const parts = new Parts(silentLogger());
    await expect(parts.start(make("uplink", { startFails: new Error("boom") }), { essential: true })).rejects.toThrow(new PartStartError("uplink", new Error("boom")));
    await expect(parts.start(make("outbox", { startFails: new UserError("store.path: cannot open /x") }), { essential: true })).rejects.toBeInstanceOf(UserError);
  });
});
