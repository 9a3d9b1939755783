/**
 * The gateway's `outbox` target through the command path: a replay command is checked (hostile
 * arguments refused with the field named, before the outbox is touched), executed once per id
 * (repeats and concurrent copies answered with the first result), and built only when the first
 * command for it comes.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { outboxTarget } from "../../src/agent/outbox-target.js";
import { type CommandResult, CommandRouter, rememberedIn } from "../../src/control/commands.js";
import type { Reading } from "../../src/model/reading.js";
import type { ReplayAnswer, SeqRange } from "../../src/model/replay.js";
import { silentLogger } from "../../src/ops/logger.js";
import { Outbox } from "../../src/store/outbox.js";
import { FakeLight } from "../helpers/fake-light.js";
import { tempDir } from "../helpers/tmp.js";

const HOUR = 3_600_000;

const readings = (n: number): Reading[] => Array.from({ length: n }, (_, i) => ({ point: "meter-1/power", ts: 1_000_000 + i, value: i, quality: "good" as const }));

function rig(targets = [new FakeLight("street-3")]) {
  const box = Outbox.open({ path: join(tempDir(), "outbox.db"), quota: 64 * 1024 * 1024, whenFull: "drop-oldest", maxAge: 3650 * 24 * HOUR, sync: "full", replayWindow: 6 * HOUR });
  box.append(readings(300));
  box.ack([[1, 200]]);
  const results: CommandResult[] = [];
  const sent: Array<[string, SeqRange[]]> = [];
  let builds = 0;
  const router = new CommandRouter(targets, { ...rememberedIn(box), publish: (r) => results.push(r) }, silentLogger());
  const defined = router.defer("outbox", async () => {
    builds++;
    return outboxTarget(box, (stream, ranges) => sent.push([stream, ranges]), silentLogger());
  });
  return { box, router, results, sent, defined, builds: () => builds };
}

const replay = (id: string, args: unknown) => JSON.stringify({ id, action: "replay", args });

describe("outbox target: replay", () => {
  it("answers with the replay and hands the resent ranges to the uplink", async () => {
    const { box, router, sent } = rig();
    const r = await router.handle("outbox", replay("replay-telemetry-100-200-1", { stream: "telemetry", from: 100, to: 200 }), "mqtt");
    expect(r).toMatchObject({ id: "replay-telemetry-100-200-1", target: "outbox", action: "replay", status: "ok" });
    const state = r.state as unknown as ReplayAnswer;
    expect(state).toEqual({ stream: "telemetry", from: 100, to: 200, resent: [[100, 200]], pending: [], missing: [] });
    expect(sent).toEqual([["telemetry", [[100, 200]]]]);
    expect(box.stats()).toMatchObject({ depth: 201, kept: 99 });
    // The answer is the result message's state, as JSON.
    expect(JSON.parse(JSON.stringify(r)).state).toEqual(state);
    box.close();
  });

  it("is built at its first command only, and listed among the targets", async () => {
    const { box, router, builds } = rig();
    expect(router.targets()).toEqual(["street-3", "outbox"]);
    expect(builds()).toBe(0);
    await router.handle("street-3", JSON.stringify({ id: "l1", action: "auto" }), "mqtt");
    expect(builds()).toBe(0);
    await Promise.all([1, 2, 3].map((i) => router.handle("outbox", replay(`r${i}`, { stream: "events", from: 1, to: 2 }), "mqtt")));
    expect(builds()).toBe(1);
    box.close();
  });

  it("is not defined over a configured target of the same name", () => {
    const { box, defined } = rig([new FakeLight("outbox")]);
    expect(defined).toBe(false);
    box.close();
  });

  it.each([
    ["a missing stream", { from: 1, to: 2 }, "args.stream: expected one of: telemetry, events, results"],
    ["an unknown stream", { stream: "logs", from: 1, to: 2 }, "args.stream: expected one of: telemetry, events, results"],
    ["a stream of the wrong type", { stream: 1, from: 1, to: 2 }, "args.stream: "],
    ["a missing from", { stream: "telemetry", to: 2 }, "args.from: required"],
    ["a from as text", { stream: "telemetry", from: "100", to: 200 }, 'args.from: expected a sequence number (a whole number from 1)'],
    ["NaN as text", { stream: "telemetry", from: "NaN", to: 200 }, "args.from: expected a sequence number"],
    ["a fraction", { stream: "telemetry", from: 1.5, to: 200 }, "args.from: "],
    ["zero", { stream: "telemetry", from: 0, to: 2 }, "args.from: "],
    ["a negative from", { stream: "telemetry", from: -5, to: 2 }, "args.from: "],
    ["a negative to", { stream: "telemetry", from: 1, to: -1 }, "args.to: "],
    ["a huge number", { stream: "telemetry", from: 1, to: 1e300 }, "args.to: "],
    ["a number past 2^53", { stream: "telemetry", from: 2 ** 53, to: 2 ** 53 + 2 }, "args.from: "],
    ["null", { stream: "telemetry", from: null, to: 2 }, "args.from: expected a sequence number"],
    ["an array", { stream: "telemetry", from: [1], to: 2 }, "args.from: expected a sequence number"],
    ["from above to", { stream: "telemetry", from: 200, to: 100 }, "args.to: must be at least from (200), got 100"],
    ["a million numbers", { stream: "telemetry", from: 1, to: 1_000_001 }, "args.to: at most 1000000 numbers at once"],
    ["an unknown key", { stream: "telemetry", from: 1, to: 2, all: true }, "args.all: unknown key"],
  ])("refuses %s, naming the field, and replays nothing", async (_what, args, reason) => {
    const { box, router, sent } = rig();
    const r = await router.handle("outbox", replay("bad-1", args), "mqtt");
    expect(r.status).toBe("rejected");
    expect(r.reason).toContain(reason);
    expect(sent).toEqual([]);
    expect(box.stats()).toMatchObject({ depth: 100, kept: 200 });
    box.close();
  });

  it("accepts exactly a million numbers (to − from = 999,999)", async () => {
    const { box, router } = rig();
    const r = await router.handle("outbox", replay("big-1", { stream: "telemetry", from: 1, to: 1_000_000 }), "mqtt");
    expect(r.status).toBe("ok");
    expect(r.state).toMatchObject({ resent: [[1, 200]], pending: [[201, 300]], missing: [{ from: 301, to: 1_000_000, reason: "not-issued" }] });
    box.close();
  });

  it.each([
    ["__proto__", '{"id":"p1","action":"replay","args":{"stream":"telemetry","from":1,"to":2,"__proto__":{"to":9}}}', "args.__proto__: unknown key"],
    ["constructor", '{"id":"p2","action":"replay","args":{"stream":"telemetry","from":1,"to":2,"constructor":{"prototype":{}}}}', "args.constructor: unknown key"],
    ["prototype in the envelope", '{"id":"p3","action":"replay","prototype":1,"args":{"stream":"telemetry","from":1,"to":2}}', "envelope: prototype: unknown key"],
    ["NaN (not JSON)", '{"id":"p4","action":"replay","args":{"stream":"telemetry","from":NaN,"to":2}}', "malformed JSON"],
    ["an unknown action", '{"id":"p5","action":"purge","args":{}}', "unknown action 'purge' for outbox outbox; expected one of: replay"],
  ])("refuses a hostile message (%s) before the outbox is touched", async (_what, payload, reason) => {
    const { box, router, sent } = rig();
    const r = await router.handle("outbox", payload, "mqtt");
    expect(r).toMatchObject({ status: "rejected", reason });
    expect(sent).toEqual([]);
    expect(box.stats()).toMatchObject({ depth: 100, kept: 200 });
    box.close();
  });

  it("a repeated id is answered with its first result and not replayed again", async () => {
    const { box, router, sent, results } = rig();
    const first = await router.handle("outbox", replay("rep-1", { stream: "telemetry", from: 1, to: 50 }), "mqtt");
    box.ack([[1, 50]]); // sent again and acknowledged meanwhile: kept again
    const again = await router.handle("outbox", replay("rep-1", { stream: "telemetry", from: 1, to: 50 }), "mqtt");
    expect(again).toEqual(first);
    expect(sent).toHaveLength(1);
    expect(box.stats()).toMatchObject({ kept: 200 });
    // A new id for the same range replays again.
    const other = await router.handle("outbox", replay("rep-2", { stream: "telemetry", from: 1, to: 50 }), "mqtt");
    expect(other.state).toMatchObject({ resent: [[1, 50]] });
    expect(results).toHaveLength(3);
    box.close();
  });

  it("concurrent copies and concurrent replays of one range: executed once, no row twice", async () => {
    const { box, router, sent } = rig();
    const copies = await Promise.all(Array.from({ length: 10 }, () => router.handle("outbox", replay("same", { stream: "telemetry", from: 101, to: 150 }), "mqtt")));
    expect(new Set(copies.map((c) => JSON.stringify(c))).size).toBe(1);
    expect(sent).toHaveLength(1);
    const others = await Promise.all(Array.from({ length: 8 }, (_, i) => router.handle("outbox", replay(`other-${i}`, { stream: "telemetry", from: 120, to: 160 }), "mqtt")));
    // 120..150 are back already: pending for all of them; 151..160 resent by exactly one.
    // One at a time on the target: the first puts 151..160 back, the others find all of it pending.
    const answers = others.map((o) => o.state as unknown as ReplayAnswer);
    expect(answers[0]).toMatchObject({ resent: [[151, 160]], pending: [[120, 150]], missing: [] });
    for (const a of answers.slice(1)) expect(a).toMatchObject({ resent: [], pending: [[120, 160]], missing: [] });
    expect(box.stats()).toMatchObject({ depth: 100 + 60, kept: 140 });
    const stored = box.readAfter(0, 1000).map((r) => r.seq);
    expect(new Set(stored).size).toBe(stored.length);
    box.close();
  });
});
