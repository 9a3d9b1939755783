import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type CommandResult, CommandRouter, MAX_COMMAND_BYTES } from "../../src/control/commands.js";
import { silentLogger } from "../../src/ops/logger.js";
import { FakeLight } from "../helpers/fake-light.js";

function rig(now = () => 1_000_000) {
  const light = new FakeLight("street-3");
  const results: CommandResult[] = [];
  const memory = new Map<string, CommandResult>();
  const router = new CommandRouter([light], {
    recall: (id) => memory.get(id),
    record: (r) => {
      results.push(r);
      if (r.id) memory.set(r.id, r);
    },
  }, silentLogger(), now);
  return { light, router, results };
}

const cmd = (o: object) => JSON.stringify(o);

describe("CommandRouter", () => {
  it("executes a valid command once and answers with the state", async () => {
    const { light, router, results } = rig();
    const r = await router.handle("street-3", cmd({ id: "c1", action: "set", args: { on: true } }), "mqtt");
    expect(r).toEqual({ id: "c1", target: "street-3", action: "set", status: "ok", state: { on: true }, ts: 1_000_000 });
    expect(light.executed).toEqual([{ action: "set", args: { on: true, duration_s: 3600 } }]);
    expect(results).toHaveLength(1);
  });

  it("answers a repeated id again without executing it again", async () => {
    const { light, router, results } = rig();
    const first = await router.handle("street-3", cmd({ id: "same", action: "set", args: { on: true } }), "mqtt");
    const again = await router.handle("street-3", cmd({ id: "same", action: "set", args: { on: false } }), "mqtt");
    expect(again).toEqual(first);
    expect(light.executed).toHaveLength(1);
    expect(light.on).toBe(true);
    expect(results).toEqual([first, first]); // answered (published) again
  });

  it.each([
    ["{not json", "malformed JSON"],
    [cmd({ action: "set" }), "envelope: id: required"],
    [cmd({ id: "x y", action: "set" }), "envelope: id: expected 1–64 letters"],
    [cmd({ id: "a", action: "set", args: { on: true }, extra: 1 }), "envelope: extra: unknown key"],
    [cmd({ id: "a", action: "set", args: [1] }), "envelope: args: "],
    [cmd({ id: "a", action: "dance", args: {} }), "unknown action 'dance' for streetlight street-3; expected one of: set, auto"],
    [cmd({ id: "a", action: "set", args: { on: "yes" } }), "args.on: "],
    [cmd({ id: "a", action: "set", args: { on: true, level: 101 } }), "args.level: "],
    [cmd({ id: "a", action: "set", args: { on: true, duration_s: 10 } }), "args.duration_s: "],
    [cmd({ id: "a", action: "set", args: { on: true, voltage: 400 } }), "args.voltage: unknown key"],
    [cmd({ id: "a", action: "set", args: { on: true }, expires: 999_999 }), "expired at 1970-01-01T00:16:39.999Z"],
    ["x".repeat(MAX_COMMAND_BYTES + 1), `payload of ${MAX_COMMAND_BYTES + 1} bytes is larger than ${MAX_COMMAND_BYTES}`],
  ])("rejects %s with a reason, touching nothing", async (payload, reason) => {
    const { light, router } = rig();
    const r = await router.handle("street-3", payload, "mqtt");
    expect(r.status).toBe("rejected");
    expect(r.reason).toContain(reason);
    expect(light.executed).toEqual([]);
  });

  it("rejects commands to targets the config does not declare", async () => {
    const { light, router } = rig();
    const r = await router.handle("charger-9", cmd({ id: "a", action: "start" }), "mqtt");
    expect(r).toMatchObject({ status: "rejected", reason: "unknown target 'charger-9' (declared actuators: street-3)" });
    expect(light.executed).toEqual([]);
  });

  it("reports an actuator failure as error, with the state", async () => {
    const { light, router } = rig();
    light.fail = true;
    const r = await router.handle("street-3", cmd({ id: "f", action: "set", args: { on: true } }), "local");
    expect(r).toMatchObject({ status: "error", reason: "coil write not confirmed by read-back", state: { on: false } });
  });

  it("survives thousands of random and malformed payloads: no crash, no actuation, every one answered with a reason", async () => {
    const { light, router, results } = rig();
    const nearValid = fc.record(
      {
        id: fc.oneof(fc.string({ maxLength: 80 }), fc.integer(), fc.constant(null)),
        action: fc.oneof(fc.constantFrom("set", "auto", "start", ""), fc.string(), fc.integer()),
        args: fc.oneof(fc.object(), fc.array(fc.anything()), fc.constant(null), fc.record({ on: fc.anything(), level: fc.anything(), duration_s: fc.anything() })),
        expires: fc.oneof(fc.integer({ min: -1e12, max: 999_999 }), fc.string(), fc.constant(undefined)),
        junk: fc.anything(),
      },
      { requiredKeys: [] },
    );
    const payloads = fc.oneof(
      fc.string({ maxLength: 200 }).map((s) => s),
      fc.jsonValue().map((v) => JSON.stringify(v)),
      nearValid.map((v) => JSON.stringify(v)),
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString("latin1")),
    );
    let n = 0;
    await fc.assert(
      fc.asyncProperty(payloads, fc.constantFrom("street-3", "nope", "../x", "#"), async (payload, target) => {
        n++;
        const r = await router.handle(target, payload, "mqtt");
        // A payload that happens to be a fully valid, unexpired command to a declared target may run;
        // everything else is rejected with a reason.
        if (r.status !== "ok") {
          expect(r.status).toBe("rejected");
          expect(r.reason).toBeTruthy();
        }
      }),
      { numRuns: 3000 },
    );
    expect(n).toBe(3000);
    expect(results.length).toBeGreaterThan(2500); // answered (repeats of an id are answered from memory)
    // Random input essentially never forms a valid command: nothing was actuated.
    expect(light.executed).toEqual([]);
  });
});
