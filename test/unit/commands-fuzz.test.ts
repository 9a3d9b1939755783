/**
 * The command router under property-based fuzzing: hostile names (every Object.prototype member
 * as action, target and argument key, `__proto__` as a JSON key), odd numbers and wrong types,
 * copies of one id sent together, and valid commands interleaved on several actuators, some of
 * which throw or take their time. Whatever comes: every message gets exactly one answer, the
 * router never rejects, no id runs twice, and an id's answer never changes.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type CommandResult, CommandRouter, type Remembered, rememberedIn } from "../../src/control/commands.js";
import { silentLogger } from "../../src/ops/logger.js";
import { FakeCharger, type Outcome } from "../helpers/fake-charger.js";
import { FakeLight } from "../helpers/fake-light.js";

const PROTO = Object.getOwnPropertyNames(Object.prototype).concat("__proto__", "prototype");
const TARGETS = ["street-1", "street-2", "bike-1"];

/** JSON text built by hand: an object literal cannot hold an own `__proto__` key, JSON can. */
function obj(entries: ReadonlyArray<readonly [string, string]>): string {
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`;
}

const oddNumber = fc.constantFrom("1e400", "-1e400", "-0", "1e308", "-1e308", "9007199254740993", "0.1", "-1", "0", "60", "3600", "86401", "5", "1.5", "100", "101");
const value: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom("true", "false", "null", "[]", "{}", '"true"', '"NaN"', '"Infinity"', '""', '{"__proto__":{"on":true}}', '[{"constructor":1}]'),
  oddNumber,
  fc.double().map((d) => (Number.isFinite(d) ? JSON.stringify(d) : "1e999")),
  fc.integer().map(String),
  fc.string({ maxLength: 12 }).map((t) => JSON.stringify(t)),
);
const argKey = fc.constantFrom(...PROTO, "on", "level", "duration_s", "max_kwh", "max_minutes", "on", "level");
const args = fc.oneof(
  fc.uniqueArray(fc.tuple(argKey, value), { maxLength: 4, selector: ([k]) => k }).map(obj),
  fc.constantFrom('{"on":true}', '{"on":false,"duration_s":600}', "{}", '{"max_kwh":1}', '{"max_minutes":30}', "[]", "null", '"on"'),
);
const id = fc.oneof(fc.constantFrom("a", "b", "c", "d", "e", "f"), fc.constantFrom("", "x y", "#", "a".repeat(65), ...PROTO));
const action = fc.constantFrom(...PROTO, "set", "auto", "start", "stop", "set", "start", "");
const envelope = fc
  .record({ id, action, args: fc.option(args, { nil: undefined }), extra: fc.option(fc.constantFrom(...PROTO, "expires", "junk"), { nil: undefined }), idAsNumber: fc.boolean() })
  .map((m) => {
    const entries: Array<readonly [string, string]> = [
      ["id", m.idAsNumber && m.id === "a" ? "7" : JSON.stringify(m.id)],
      ["action", JSON.stringify(m.action)],
    ];
    if (m.args !== undefined) entries.push(["args", m.args]);
    if (m.extra !== undefined) entries.push([m.extra, m.extra === "expires" ? "1" : "{}"]);
    return obj(entries);
  });
const payload = fc.oneof({ weight: 8, arbitrary: envelope }, { weight: 1, arbitrary: fc.string({ maxLength: 40 }) }, { weight: 1, arbitrary: fc.constantFrom("{", "[]", "null", '"x"', "1e400", '{"id":"a"}') });
const target = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...TARGETS) }, { weight: 1, arbitrary: fc.constantFrom(...PROTO, "", "street-9") });

const validId = fc.oneof(fc.constantFrom("a", "b", "c"), fc.nat(40).map((n) => `c-${n}`));
const valid = fc.oneof(
  fc.record({ target: fc.constantFrom("street-1", "street-2"), id: validId, body: fc.constantFrom('"action":"set","args":{"on":true}', '"action":"set","args":{"on":false,"duration_s":600}', '"action":"set","args":{"on":true,"level":50}', '"action":"auto"') }),
  fc.record({ target: fc.constant("bike-1"), id: validId, body: fc.constantFrom('"action":"start"', '"action":"start","args":{"max_kwh":1}', '"action":"stop","args":{}') }),
).map((c) => ({ target: c.target, payload: `{"id":${JSON.stringify(c.id)},${c.body}}` }));

/** A message, how many copies of it go out together, and whether it waits for the ones before. */
const message = fc.record({
  sent: fc.oneof(valid, fc.record({ target, payload })),
  copies: fc.integer({ min: 1, max: 3 }),
  together: fc.boolean(),
});

function rig(plans: { street: boolean[]; bike: Outcome[] }) {
  const lights = [new FakeLight("street-1"), new FakeLight("street-2")];
  const charger = new FakeCharger("bike-1");
  charger.plan = [...plans.bike];
  const failures = [...plans.street];
  for (const light of lights) {
    const execute = light.execute.bind(light);
    light.execute = async (a, b) => {
      light.fail = failures.shift() ?? false;
      await new Promise((r) => setImmediate(r)); // a write takes a turn of the event loop
      return execute(a, b);
    };
  }
  const rows = new Map<string, string>();
  const memory = rememberedIn({ recallCommand: (k) => rows.get(k), rememberCommand: (k, _ts, json) => void rows.set(k, json) });
  const reservations = new Map<string, number>();
  const answersStored = new Map<string, CommandResult[]>();
  const published: CommandResult[] = [];
  const router = new CommandRouter(
    [...lights, charger],
    {
      recall: (k) => memory.recall(k),
      remember: (k, what: Remembered) => {
        if ("executing" in what) reservations.set(k, (reservations.get(k) ?? 0) + 1);
        else answersStored.set(k, [...(answersStored.get(k) ?? []), what.answered]);
        memory.remember(k, what);
      },
      publish: (r) => published.push(r),
    },
    silentLogger(),
    () => 1_000_000,
  );
  const executions = () => lights.reduce((n, l) => n + l.executed.length, 0) + charger.executed.length;
  return { router, charger, reservations, answersStored, published, executions };
}

describe("CommandRouter under fuzzing", () => {
  it("always answers each message once, never rejects, never runs an id twice, never changes an answer", async () => {
    const seen = { executed: 0, repeats: 0, errors: 0, proto: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.array(message, { minLength: 1, maxLength: 25 }),
        fc.array(fc.boolean(), { maxLength: 10 }),
        fc.array(fc.constantFrom<Outcome>("ok", "throw", "throw-non-error", "slow"), { maxLength: 10 }),
        async (messages, street, bike) => {
          const { router, charger, reservations, answersStored, published, executions } = rig({ street, bike });
          const calls: Array<Promise<{ ok: true; r: CommandResult } | { ok: false; err: unknown }>> = [];
          let sent = 0;
          for (const m of messages) {
            // A message that is not "together" waits for everything sent before it: interleavings of both kinds.
            if (!m.together) await Promise.all(calls);
            for (let i = 0; i < m.copies; i++) {
              sent++;
              let p: Promise<CommandResult>;
              try {
                p = router.handle(m.sent.target, m.sent.payload, "mqtt");
              } catch (err) {
                p = Promise.reject(err as Error);
              }
              calls.push(p.then((r) => ({ ok: true as const, r }), (err: unknown) => ({ ok: false as const, err })));
            }
          }
          const outcomes = await Promise.all(calls);
          const failed = outcomes.filter((o) => !o.ok);
          expect(failed).toEqual([]);
          const answers = outcomes.map((o) => (o.ok ? o.r : null));
          // Every message answered once, and what it returned is what was published.
          expect(published).toHaveLength(sent);
          expect(new Set(published)).toEqual(new Set(answers));
          for (const r of answers) expect(r!.status === "ok" || typeof r!.reason === "string").toBe(true);
          // No id reserved twice, and everything executed was reserved first: at most once per id.
          for (const [k, n] of reservations) expect(n, `id ${k} reserved ${n} times`).toBe(1);
          expect(executions()).toBe(reservations.size);
          expect(charger.maxRunning).toBeLessThanOrEqual(1);
          // An id has one stored answer, and every answer given for it (busy aside) is that one.
          for (const [k, stored] of answersStored) expect(stored, `answers stored for ${k}`).toHaveLength(1);
          seen.executed += executions();
          seen.repeats += answers.length - new Set(answers).size;
          seen.errors += answers.filter((r) => r!.status === "error").length;
          seen.proto += answers.filter((r) => /__proto__|constructor|toString|unknown (action|target) '(__|has|is|prop|val)/.test(r!.reason ?? "")).length;
          for (const r of answers) {
            if (r!.id === null || r!.reason?.startsWith("busy: ") || !answersStored.has(r!.id)) continue;
            expect(r).toEqual(answersStored.get(r!.id)![0]);
          }
        },
      ),
      { numRuns: 400 },
    );
    // The generators reach what they are for: commands that run (and fail), repeats, hostile names.
    expect(seen.executed).toBeGreaterThan(300);
    expect(seen.repeats).toBeGreaterThan(300);
    expect(seen.errors).toBeGreaterThan(100);
    expect(seen.proto).toBeGreaterThan(200);
  });
});
