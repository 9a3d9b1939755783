import { copyFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type CommandResult, CommandRouter, MAX_COMMAND_BYTES, MAX_WAITING_PER_TARGET, rememberedIn } from "../../src/control/commands.js";
import { silentLogger } from "../../src/ops/logger.js";
import { Outbox } from "../../src/store/outbox.js";
import { FakeCharger } from "../helpers/fake-charger.js";
import { FakeLight } from "../helpers/fake-light.js";
import { tempDir } from "../helpers/tmp.js";

/** The outbox's table of command ids, in memory: id → stored JSON. */
function table(rows = new Map<string, string>()) {
  return { rows, recallCommand: (id: string) => rows.get(id), rememberCommand: (id: string, _ts: number, json: string) => void rows.set(id, json) };
}

function rig(now = () => 1_000_000, rows = new Map<string, string>()) {
  const light = new FakeLight("street-3");
  const results: CommandResult[] = [];
  const router = new CommandRouter([light], { ...rememberedIn(table(rows)), publish: (r) => results.push(r) }, silentLogger(), now);
  return { light, router, results, rows };
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
    [cmd({ id: "a", action: "set", args: [1] }), "envelope: args: expected an object, got an array"],
    [cmd({ id: "a", action: "dance", args: {} }), "unknown action 'dance' for streetlight street-3; expected one of: set, auto"],
    [cmd({ id: "a", action: "set", args: { on: "yes" } }), 'args.on: expected a boolean, got the string "yes"'],
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
    const ran = new Set<string>();
    await fc.assert(
      fc.asyncProperty(payloads, fc.constantFrom("street-3", "nope", "../x", "#"), async (payload, target) => {
        n++;
        const before = light.executed.length;
        const r = await router.handle(target, payload, "mqtt");
        // A payload that happens to be a fully valid, unexpired command to a declared target may run
        // (e.g. {"id":"a","action":"auto","args":{}}); everything else is rejected with a reason.
        if (r.status !== "ok") {
          expect(r.status).toBe("rejected");
          expect(r.reason).toBeTruthy();
          expect(light.executed.length).toBe(before);
        } else if (light.executed.length > before) {
          expect(target).toBe("street-3");
          ran.add(String(r.id));
        }
      }),
      { numRuns: 3000 },
    );
    expect(n).toBe(3000);
    expect(results.length).toBeGreaterThan(2500); // answered (repeats of an id are answered from memory)
    // Nothing was actuated but by a command answered ok, each id once.
    expect(light.executed.length).toBe(ran.size);
  });

  it.each(Object.getOwnPropertyNames(Object.prototype).concat("__proto__", "prototype"))("refuses '%s' as an action, and goes on", async (name) => {
    const { light, router } = rig();
    const r = await router.handle("street-3", cmd({ id: "a1", action: name }), "mqtt");
    expect(r).toMatchObject({ status: "rejected", reason: `unknown action '${name}' for streetlight street-3; expected one of: set, auto` });
    expect(light.executed).toEqual([]);
    expect((await router.handle("street-3", cmd({ id: "a2", action: "set", args: { on: true } }), "mqtt")).status).toBe("ok");
  });

  it.each(Object.getOwnPropertyNames(Object.prototype).concat("__proto__", "prototype"))("refuses '%s' as a target", async (name) => {
    const { light, router } = rig();
    const r = await router.handle(name, cmd({ id: "t1", action: "set", args: { on: true } }), "mqtt");
    expect(r).toMatchObject({ status: "rejected", reason: `unknown target '${name}' (declared actuators: street-3)` });
    expect(light.executed).toEqual([]);
  });

  it.each([
    ['{"id":"p1","action":"set","args":{"on":true,"__proto__":{"x":1}}}', "args.__proto__: unknown key"],
    ['{"id":"p2","action":"set","args":{"__proto__":{"on":true}}}', "args.__proto__: unknown key"],
    ['{"id":"p3","action":"auto","args":{"__proto__":null}}', "args.__proto__: unknown key"],
    ['{"id":"p4","action":"set","args":{"on":true,"constructor":{"prototype":{"x":1}}}}', "args.constructor: unknown key"],
    ['{"id":"p5","action":"set","args":{"on":true,"level":{"__proto__":1}}}', "args.level.__proto__: unknown key"],
    ['{"id":"p6","action":"set","__proto__":{"args":{"on":true}}}', "envelope: __proto__: unknown key"],
    ['{"id":"p7","action":"set","args":{"on":true,"toString":1}}', "args.toString: unknown key"],
    ['{"id":"p8","action":"set","args":{"on":true,"hasOwnProperty":1}}', "args.hasOwnProperty: unknown key"],
    ['{"id":"p9","action":"set","args":{"on":true,"valueOf":false}}', "args.valueOf: unknown key"],
  ])("refuses keys JavaScript treats specially: %s", async (payload, reason) => {
    const { light, router } = rig();
    const r = await router.handle("street-3", payload, "mqtt");
    expect(r).toMatchObject({ status: "rejected", reason });
    expect(light.executed).toEqual([]);
  });

  it.each([
    [{ args: [] }, "envelope: args: expected an object, got an empty array"],
    [{ args: null }, "envelope: args: expected an object, got null"],
    [{ args: "on" }, 'envelope: args: expected an object, got the string "on"'],
    [{ id: 7 }, "envelope: id: expected a string, got the number 7"],
    [{ action: true }, "envelope: action: expected a string, got the boolean true"],
    [{ args: { on: "true" } }, 'args.on: expected a boolean, got the string "true"'],
    [{ args: { on: "x".repeat(300) } }, `args.on: expected a boolean, got the string "${"x".repeat(40)}…"`],
    [{ args: { on: 1 } }, "args.on: expected a boolean, got the number 1"],
    [{ args: { on: true, level: 1.5 } }, "args.level: expected an integer, got the number 1.5"],
    [{ args: { on: true, level: [50] } }, "args.level: expected a number, got an array"],
    [{ args: { level: 5 } }, "args.on: required"],
    [{ args: {} }, "args.on: required"],
  ])("says what was expected and what was found: %j", async (over, reason) => {
    const { router } = rig();
    const r = await router.handle("street-3", cmd({ id: "w1", action: "set", args: { on: true }, ...over }), "mqtt");
    expect(r).toMatchObject({ status: "rejected", reason });
  });

  it("runs copies that arrive together once; each copy gets the first result", async () => {
    const { light, router, results, rows } = rig();
    const payload = cmd({ id: "dup", action: "set", args: { on: true } });
    const answers = await Promise.all([1, 2, 3].map(() => router.handle("street-3", payload, "mqtt")));
    expect(light.executed).toHaveLength(1);
    expect(answers[0]).toMatchObject({ id: "dup", status: "ok" });
    expect(answers).toEqual([answers[0], answers[0], answers[0]]);
    expect(results).toEqual(answers); // every copy answered on result
    expect(JSON.parse(rows.get("dup")!)).toEqual(answers[0]);
  });

  it("never changes an id's answer: a repeated charger start is answered ok again, not 'already charging'", async () => {
    const charger = new FakeCharger("bike-1");
    const rows = new Map<string, string>();
    const results: CommandResult[] = [];
    const router = new CommandRouter([charger], { ...rememberedIn(table(rows)), publish: (r) => results.push(r) }, silentLogger(), () => 5);
    const start = cmd({ id: "s1", action: "start", args: {} });
    const first = await router.handle("bike-1", start, "mqtt");
    const again = await Promise.all([router.handle("bike-1", start, "mqtt"), router.handle("bike-1", start, "mqtt")]);
    expect(first).toMatchObject({ status: "ok", state: { charging: true } });
    expect(again).toEqual([first, first]);
    expect(charger.executed).toHaveLength(1);
    expect(JSON.parse(rows.get("s1")!)).toEqual(first);
  });

  it("answers any later message with a known id with the first result: other target, other content, malformed, expired", async () => {
    const { light, router, rows } = rig();
    const first = await router.handle("street-3", cmd({ id: "k1", action: "set", args: { on: true } }), "mqtt");
    const stored = rows.get("k1");
    for (const [target, payload] of [
      ["street-9", cmd({ id: "k1", action: "set", args: { on: false } })],
      ["street-3", cmd({ id: "k1", action: "dance" })],
      ["street-3", cmd({ id: "k1", action: "set", args: { on: "no" } })],
      ["street-3", cmd({ id: "k1", action: "set", args: { on: false }, extra: 1 })],
      ["street-3", '{"id":"k1","action":"set","args":{"__proto__":{"on":false}}}'],
      ["street-3", cmd({ id: "k1", action: "auto", expires: 1 })],
    ] as const) {
      expect(await router.handle(target, payload, "mqtt")).toEqual(first);
    }
    expect(light.executed).toHaveLength(1);
    expect(rows.get("k1")).toBe(stored);
    // And the first answer of an id may be a refusal: it stays the answer (the contract: use a new id).
    const refused = await router.handle("street-3", cmd({ id: "k2", action: "set", args: { on: "yes" } }), "mqtt");
    expect(await router.handle("street-3", cmd({ id: "k2", action: "set", args: { on: true } }), "mqtt")).toEqual(refused);
    expect(light.executed).toHaveLength(1);
  });

  it("after a restart mid-execution, a resend is not executed again but answered error, and that answer stays", async () => {
    const rows = new Map([["r1", JSON.stringify({ pending: true, target: "street-3", action: "set", ts: 900_000 })]]);
    const { light, router, results } = rig(() => 1_000_000, rows);
    const r = await router.handle("street-3", cmd({ id: "r1", action: "set", args: { on: true } }), "mqtt");
    expect(r).toEqual({
      id: "r1",
      target: "street-3",
      action: "set",
      status: "error",
      reason: "the gateway restarted while this command was executing; it was not executed again — check the state",
      state: { on: false },
      ts: 1_000_000,
    });
    expect(light.executed).toEqual([]);
    expect(JSON.parse(rows.get("r1")!)).toEqual(r);
    expect(await router.handle("street-3", cmd({ id: "r1", action: "auto" }), "mqtt")).toEqual(r);
    expect(results).toEqual([r, r]);
  });

  it("reserves the id durably before the actuator is touched", async () => {
    const seen: string[] = [];
    const rows = new Map<string, string>();
    const light = new FakeLight("street-3");
    const execute = light.execute.bind(light);
    light.execute = async (action, args) => {
      seen.push(rows.get("e1")!);
      return execute(action, args);
    };
    const router = new CommandRouter([light], { ...rememberedIn(table(rows)), publish: () => undefined }, silentLogger(), () => 7);
    const r = await router.handle("street-3", cmd({ id: "e1", action: "set", args: { on: true } }), "mqtt");
    expect(seen.map((json) => JSON.parse(json) as unknown)).toEqual([{ pending: true, target: "street-3", action: "set", ts: 7 }]);
    expect(JSON.parse(rows.get("e1")!)).toEqual(r); // then the answer, as plain result JSON (what 0.1.0 reads)
  });

  it("reads the ids an outbox of release 0.1.0 remembered, and answers them again", async () => {
    const dir = tempDir();
    copyFileSync("test/fixtures/outbox-0.1.0.db", join(dir, "o.db"));
    const outbox = Outbox.open({ path: join(dir, "o.db"), quota: 64 * 1024 * 1024, whenFull: "drop-oldest", maxAge: 3650 * 86_400_000, sync: "full", now: () => 1_763_800_100_000 });
    try {
      const light = new FakeLight("street-3");
      const charger = new FakeCharger("charger-1");
      const router = new CommandRouter([light, charger], { ...rememberedIn(outbox), publish: () => undefined }, silentLogger(), () => 1_763_800_100_000);
      expect(await router.handle("street-3", cmd({ id: "cmd-1", action: "set", args: { on: false } }), "mqtt")).toEqual({
        id: "cmd-1",
        target: "street-3",
        action: "set",
        status: "ok",
        state: { mode: "override", on: true },
        ts: 1_763_800_020_000,
      });
      expect(await router.handle("charger-1", cmd({ id: "cmd-2", action: "start" }), "mqtt")).toMatchObject({ status: "error", reason: "charger-1 is already charging" });
      expect(light.executed).toEqual([]);
      expect(charger.executed).toEqual([]);
      const fresh = await router.handle("street-3", cmd({ id: "cmd-3", action: "set", args: { on: true } }), "mqtt");
      expect(JSON.parse(outbox.recallCommand("cmd-3")!)).toEqual(fresh);
    } finally {
      outbox.close();
    }
  });

  it("bounds the commands waiting per target: beyond the bound, busy, not remembered", async () => {
    const charger = new FakeCharger("bike-1");
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const execute = charger.execute.bind(charger);
    charger.execute = async (action, args) => {
      await gate;
      return execute(action, args);
    };
    const rows = new Map<string, string>();
    const router = new CommandRouter([charger], { ...rememberedIn(table(rows)), publish: () => undefined }, silentLogger(), () => 5);
    const sent = Array.from({ length: MAX_WAITING_PER_TARGET + 4 }, (_, i) => router.handle("bike-1", cmd({ id: `q${i}`, action: "stop" }), "mqtt"));
    const copy = router.handle("bike-1", cmd({ id: "q0", action: "stop" }), "mqtt");
    // Answered at once, while the first ones still wait.
    for (const r of await Promise.all(sent.slice(MAX_WAITING_PER_TARGET))) {
      expect(r).toMatchObject({ status: "rejected", reason: `busy: bike-1 has ${MAX_WAITING_PER_TARGET} commands waiting; not executed, send again later` });
    }
    expect(await copy).toMatchObject({ status: "rejected", reason: expect.stringMatching(/^busy: /) });
    expect(rows.has(`q${MAX_WAITING_PER_TARGET}`)).toBe(false);
    release();
    const done = await Promise.all(sent.slice(0, MAX_WAITING_PER_TARGET));
    expect(done.every((r) => r.status === "ok")).toBe(true);
    expect(charger.executed).toHaveLength(MAX_WAITING_PER_TARGET);
    // Busy was no answer to the id: sent again later, it runs.
    expect(await router.handle("bike-1", cmd({ id: `q${MAX_WAITING_PER_TARGET}`, action: "stop" }), "mqtt")).toMatchObject({ status: "ok" });
  });

  it("never rejects: a store, a logger, an actuator that throw become answers, and the router goes on", async () => {
    const light = new FakeLight("street-3");
    const charger = new FakeCharger("bike-1");
    const throwing = () => {
      throw new Error("disk I/O error");
    };
    const broken = Object.assign(silentLogger(), { info: throwing, warn: throwing, error: throwing });
    let failRecall = true;
    let failReserve = true;
    const published: CommandResult[] = [];
    const rows = new Map<string, string>();
    const memory = rememberedIn(table(rows));
    const router = new CommandRouter(
      [light, charger],
      {
        recall: (id) => (failRecall ? throwing() : memory.recall(id)),
        remember: (id, what) => ("executing" in what && failReserve ? throwing() : memory.remember(id, what)),
        publish: (r) => {
          published.push(r);
          throwing();
        },
      },
      broken,
    );
    const r1 = await router.handle("street-3", cmd({ id: "x1", action: "set", args: { on: true } }), "mqtt");
    expect(r1).toMatchObject({ id: null, status: "error", reason: "internal error, not executed: disk I/O error" });
    failRecall = false;
    const r2 = await router.handle("street-3", cmd({ id: "x1", action: "set", args: { on: true } }), "mqtt");
    expect(r2).toMatchObject({ id: "x1", status: "error", reason: "could not store the command before executing it (disk I/O error); not executed" });
    expect(light.executed).toEqual([]);
    failReserve = false;
    charger.plan = ["throw-non-error"];
    const r3 = await router.handle("bike-1", cmd({ id: "x2", action: "start" }), "mqtt");
    expect(r3).toMatchObject({ id: "x2", status: "error", reason: "unknown error", state: { charging: false } });
    expect(await router.handle("street-3", cmd({ id: "x1", action: "set", args: { on: true } }), "mqtt")).toMatchObject({ status: "ok" });
    expect(published.map((r) => r.status)).toEqual(["error", "error", "error", "ok"]);
  });
});
