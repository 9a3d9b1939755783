/**
 * Gap replay in the outbox: with store.replay_window, acknowledged rows are kept (not part of the
 * depth or the oldest unsent figures), are the first to go under the quota, expire after the
 * window, and a replay puts them back with their original numbers — once. Numbers the gateway
 * dropped are in a drop ledger (coalesced, bounded) with the reason a replay answers.
 */
import { copyFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Reading } from "../../src/model/reading.js";
import type { ReplayAnswer, SeqRange } from "../../src/model/replay.js";
import { DropLedger } from "../../src/store/drop-ledger.js";
import { FORMAT, Outbox, type OutboxOptions } from "../../src/store/outbox.js";
import { Database } from "../../src/store/sqlite.js";
import { tempDir } from "../helpers/tmp.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function open(dir: string, over: Partial<OutboxOptions> = {}): Outbox {
  return Outbox.open({ path: join(dir, "outbox.db"), quota: 64 * 1024 * 1024, whenFull: "drop-oldest", maxAge: 30 * DAY, sync: "full", replayWindow: 6 * HOUR, ...over });
}

/** Readings of every kind: numbers, booleans, texts, nulls with bad quality. */
const rows = (n: number, ts = Date.now()): Reading[] =>
  Array.from({ length: n }, (_, i): Reading => {
    if (i % 4 === 1) return { point: "meter-1/online", ts: ts + i, value: i % 8 === 1, quality: "good" };
    if (i % 4 === 2) return { point: "street-3/mode", ts: ts + i, value: i % 8 === 2 ? "auto" : "override", quality: "uncertain" };
    if (i % 4 === 3) return { point: "room-101/co2", ts: ts + i, value: null, quality: "bad" };
    return { point: "meter-1/power", ts: ts + i, value: 1500 + i / 2, quality: "good" };
  });

/** Every number of from..to in exactly one list, lists sorted and coalesced. */
function expectPartition(a: ReplayAnswer): void {
  const seen = new Map<number, string>();
  const lists: Array<[string, SeqRange[]]> = [
    ["resent", a.resent],
    ["pending", a.pending],
    ["missing", a.missing.map((m) => [m.from, m.to])],
  ];
  for (const [name, list] of lists) {
    list.forEach(([lo, hi], i) => {
      expect(lo, `${name} range ${lo}..${hi}`).toBeLessThanOrEqual(hi);
      if (i > 0) expect(lo, `${name} sorted and coalesced`).toBeGreaterThan(list[i - 1]![1] + (name === "missing" ? 0 : 1));
      for (let s = lo; s <= hi; s++) {
        expect(seen.get(s), `seq ${s} in ${name} and ${seen.get(s)}`).toBeUndefined();
        seen.set(s, name);
      }
    });
  }
  for (let s = a.from; s <= a.to; s++) expect(seen.has(s), `seq ${s} answered`).toBe(true);
  expect(seen.size).toBe(a.to - a.from + 1);
  // Missing entries next to each other differ in reason (else they would be one).
  a.missing.forEach((m, i) => {
    const prev = a.missing[i - 1];
    if (prev && prev.to + 1 === m.from) expect(m.reason).not.toBe(prev.reason);
  });
}

describe("Outbox: rows kept for replay", () => {
  it("keeps acknowledged rows apart: depth, oldest unsent and the send path see only unsent rows", () => {
    const dir = tempDir();
    let now = 10 * DAY;
    const box = open(dir, { now: () => now });
    box.append(rows(10, now - 1000));
    box.ack([[1, 10]]);
    now += 1000;
    const s = box.stats();
    expect(s).toMatchObject({ depth: 0, firstSeq: null, oldestTs: null, oldestAgeMs: null, lastSeq: 10, kept: 10, replayWindowMs: 6 * HOUR, format: FORMAT });
    expect(s.streams.telemetry).toMatchObject({ depth: 0, kept: 10 });
    expect(box.readAfter(0, 100)).toEqual([]);
    expect(box.firstSeq()).toBeNull();
    // Kept rows count toward the quota: they are in the file.
    expect(s.usedBytes).toBeGreaterThan(0);
    box.append(rows(3, now));
    expect(box.stats()).toMatchObject({ depth: 3, firstSeq: 11, kept: 10 });
    box.close();
    // And they survive a restart.
    const again = open(dir, { now: () => now });
    expect(again.stats()).toMatchObject({ depth: 3, kept: 10 });
    again.close();
  });

  it("without a replay window, acknowledged rows go at once (and a replay cannot say more than unknown)", () => {
    const dir = tempDir();
    const box = open(dir, { replayWindow: 0 });
    box.append(rows(10));
    box.ack([[1, 10]]);
    expect(box.stats()).toMatchObject({ depth: 0, kept: 0 });
    const a = box.replay("telemetry", 1, 12);
    expect(a).toEqual({ stream: "telemetry", from: 1, to: 12, resent: [], pending: [], missing: [{ from: 1, to: 10, reason: "unknown" }, { from: 11, to: 12, reason: "not-issued" }] });
    box.close();
  });

  it("a replay puts kept rows back with their original numbers and content, and only once", () => {
    const dir = tempDir();
    const box = open(dir);
    const stored = rows(20);
    box.append(stored);
    const before = box.readAfter(0, 100);
    box.ack([[1, 20]]);
    const a = box.replay("telemetry", 5, 9);
    expect(a).toEqual({ stream: "telemetry", from: 5, to: 9, resent: [[5, 9]], pending: [], missing: [] });
    expect(box.stats()).toMatchObject({ depth: 5, firstSeq: 5, kept: 15 });
    // The same numbers, points, times, values (booleans, texts, nulls) and qualities as first stored.
    expect(box.readAfter(0, 100)).toEqual(before.slice(4, 9));
    // Again while they wait to be sent: reported pending, no row twice.
    const b = box.replay("telemetry", 5, 9);
    expect(b).toEqual({ stream: "telemetry", from: 5, to: 9, resent: [], pending: [[5, 9]], missing: [] });
    expect(box.stats()).toMatchObject({ depth: 5, kept: 15 });
    // Sent again and acknowledged: kept again, and a later replay sends them once more.
    box.ack([[5, 9]]);
    expect(box.stats()).toMatchObject({ depth: 0, kept: 20 });
    expect(box.replay("telemetry", 1, 20).resent).toEqual([[1, 20]]);
    expect(box.readAfter(0, 100)).toEqual(before);
    box.close();
  });

  it("answers resent, pending and missing in number order, coalesced, with not-issued above the last number", () => {
    const dir = tempDir();
    const box = open(dir);
    box.append(rows(30));
    box.ack([[1, 10]]); // kept
    box.ack([[21, 25]]); // kept (live went first)
    box.deadLetter("telemetry", 13, 13, "refused by the broker: payload format invalid (0x99)");
    const a = box.replay("telemetry", 5, 40);
    expect(a).toEqual({
      stream: "telemetry",
      from: 5,
      to: 40,
      resent: [[5, 10], [21, 25]],
      // Unsent rows and the dead letter (it waits on the gateway for an operator) are pending.
      pending: [[11, 20], [26, 30]],
      missing: [{ from: 31, to: 40, reason: "not-issued" }],
    });
    expectPartition(a);
    expect(box.replay("telemetry", 50, 60).missing).toEqual([{ from: 50, to: 60, reason: "not-issued" }]);
    box.close();
  });

  it("replays events and command results the same way, each stream on its own numbers", () => {
    const dir = tempDir();
    const box = open(dir);
    const result = { id: "c-1", target: "street-3", action: "set", status: "ok", state: { on: true }, ts: 1 };
    box.stream("results").append([{ point: "street-3", ts: 1, value: JSON.stringify(result), quality: "good" }]);
    box.stream("events").append(rows(3));
    box.append(rows(5));
    const res = box.stream("results").readAfter(0, 10);
    box.stream("results").ack([[1, 1]]);
    box.stream("events").ack([[1, 3]]);
    expect(box.stats().streams).toMatchObject({ results: { depth: 0, kept: 1 }, events: { depth: 0, kept: 3 }, telemetry: { depth: 5, kept: 0 } });
    expect(box.replay("results", 1, 2)).toEqual({ stream: "results", from: 1, to: 2, resent: [[1, 1]], pending: [], missing: [{ from: 2, to: 2, reason: "not-issued" }] });
    expect(box.stream("results").readAfter(0, 10)).toEqual(res);
    expect(box.replay("events", 2, 3).resent).toEqual([[2, 3]]);
    expect(box.stats().streams).toMatchObject({ results: { depth: 1, kept: 0 }, events: { depth: 2, kept: 1 }, telemetry: { depth: 5, kept: 0 } });
    box.close();
  });

  it("kept rows are the first to go when the quota is reached, recorded as quota but not counted as lost", () => {
    const dir = tempDir();
    const quota = 512 * 1024;
    const box = open(dir, { quota });
    let seq = 0;
    // Delivered readings fill most of the quota…
    while (box.stats().usedBytes < quota * 0.8) {
      box.append(rows(500));
      box.ack([[seq + 1, seq + 500]]);
      seq += 500;
    }
    const keptBefore = box.stats().kept;
    expect(keptBefore).toBe(seq);
    // …then the broker is away and unsent readings pile up past it.
    for (let i = 0; i < 20; i++) box.append(rows(500));
    const s = box.stats();
    expect(s.usedBytes).toBeLessThanOrEqual(quota);
    expect(s.kept).toBeLessThan(keptBefore);
    // No unsent reading went while kept rows were there to go first.
    expect(s.kept).toBeGreaterThan(0);
    expect(s.dropped.quota_oldest).toBe(0);
    expect(s.depth).toBe(10_000);
    // The evicted kept rows are the oldest, and a replay says why they are missing.
    const a = box.replay("telemetry", 1, seq);
    expectPartition(a);
    expect(a.missing).toEqual([{ from: 1, to: keptBefore - s.kept, reason: "quota" }]);
    expect(a.resent).toEqual([[keptBefore - s.kept + 1, seq]]);
    box.close();
  });

  it("unsent rows dropped under the quota once nothing is kept: counted, and answered missing with reason quota", () => {
    const dir = tempDir();
    const quota = 256 * 1024;
    const box = open(dir, { quota });
    for (let i = 0; i < 40; i++) box.append(rows(500));
    const s = box.stats();
    expect(s.dropped.quota_oldest).toBeGreaterThan(0);
    const firstKept = s.firstSeq!;
    const a = box.replay("telemetry", 1, 20_000);
    expect(a.missing).toEqual([{ from: 1, to: firstKept - 1, reason: "quota" }]);
    expect(a.pending).toEqual([[firstKept, 20_000]]);
    // Many drops, one coalesced range in the ledger.
    expect(s.droppedRanges).toBe(1);
    box.close();
  });

  it("expires kept rows once the window after their acknowledgement has passed (reason replay-window)", () => {
    const dir = tempDir();
    let now = 10 * DAY;
    const box = open(dir, { replayWindow: HOUR, now: () => now });
    box.append(rows(10, now - 5 * HOUR)); // read long ago: the window counts from the acknowledgement
    box.ack([[1, 5]]);
    now += 30 * 60_000;
    box.ack([[6, 10]]);
    box.expire();
    expect(box.stats().kept).toBe(10);
    now += 31 * 60_000; // 1..5 acknowledged 61 min ago, 6..10 31 min ago
    expect(box.expire()).toBe(0); // nothing unsent was lost
    expect(box.stats()).toMatchObject({ kept: 5, dropped: { max_age: 0, quota_oldest: 0 } });
    now += HOUR;
    box.expire();
    expect(box.stats().kept).toBe(0);
    expect(box.replay("telemetry", 1, 10).missing).toEqual([{ from: 1, to: 10, reason: "replay-window" }]);
    box.close();
  });

  it("turning the window off lets the kept rows go at the next open", () => {
    const dir = tempDir();
    const box = open(dir);
    box.append(rows(10));
    box.ack([[1, 10]]);
    box.close();
    const off = open(dir, { replayWindow: 0 });
    expect(off.stats().kept).toBe(0);
    expect(off.replay("telemetry", 1, 10).missing).toEqual([{ from: 1, to: 10, reason: "replay-window" }]);
    off.close();
  });

  it("records max_age drops of unsent rows, dead letters and kept rows, and purged dead letters", () => {
    const dir = tempDir();
    let now = 100 * DAY;
    const box = open(dir, { maxAge: DAY, replayWindow: 7 * DAY, now: () => now });
    box.append(rows(10, now - 2 * DAY)); // 1..10 too old
    box.append(rows(10, now)); // 11..20
    box.ack([[1, 3]]);
    box.expire();
    box.deadLetter("telemetry", 11, 12, "refused");
    box.deadLetter("telemetry", 15, 15, "refused");
    box.purgeDeadLetters({ stream: "telemetry", seq: [11, 12] });
    const a = box.replay("telemetry", 1, 20);
    expect(a).toEqual({
      stream: "telemetry",
      from: 1,
      to: 20,
      resent: [],
      pending: [[13, 20]],
      // Kept 1..3 and unsent 4..10 went for max_age: one range.
      missing: [
        { from: 1, to: 10, reason: "max-age" },
        { from: 11, to: 12, reason: "purged" },
      ],
    });
    // Only unsent rows count as lost: 7 too old, 2 purged.
    expect(box.stats().dropped).toMatchObject({ max_age: 7, purged: 2 });
    // A dead letter expiring is recorded too.
    now += 2 * DAY;
    box.expire();
    expect(box.replay("telemetry", 15, 15).missing).toEqual([{ from: 15, to: 15, reason: "max-age" }]);
    box.close();
  });

  it("records the numbers skipped after an unclean stop under sync: normal", () => {
    const dir = tempDir();
    const box = open(dir, { sync: "normal" });
    box.append(rows(5));
    box.checkpoint();
    // The files as a power cut leaves them: the reservation file says "not clean".
    const cut = tempDir();
    for (const f of ["outbox.db", "outbox.db.seq"]) copyFileSync(join(dir, f), join(cut, f));
    box.close();
    const after = open(cut, { sync: "normal" });
    expect(after.skipped).toHaveLength(1);
    const { from, to } = after.skipped[0]!;
    expect(from).toBe(6);
    const a = after.replay("telemetry", 1, to + 5);
    expect(a).toEqual({
      stream: "telemetry",
      from: 1,
      to: to + 5,
      resent: [],
      pending: [[1, 5]],
      missing: [
        { from: 6, to, reason: "skipped" },
        { from: to + 1, to: to + 5, reason: "not-issued" },
      ],
    });
    after.close();
  });

  it("ends an answer early rather than send an unbounded list of ranges", () => {
    const dir = tempDir();
    const box = open(dir);
    box.append(rows(100));
    for (let s = 1; s <= 100; s += 2) box.ack([[s, s]]); // odd kept, even unsent
    const a = box.replay("telemetry", 1, 100, 10);
    expect(a.to).toBe(10);
    expect(a.resent).toEqual([[1, 1], [3, 3], [5, 5], [7, 7], [9, 9]]);
    expect(a.pending).toEqual([[2, 2], [4, 4], [6, 6], [8, 8], [10, 10]]);
    expectPartition(a);
    // What is past the answer's end stays kept.
    expect(box.stats()).toMatchObject({ kept: 45, depth: 55 });
    box.close();
  });

  it("refuses a range that is not one (the command's checks come first; this is the store's own guard)", () => {
    const box = open(tempDir());
    for (const [from, to] of [[0, 5], [5, 4], [Number.NaN, 5], [1, Number.POSITIVE_INFINITY], [1.5, 2], [-3, 2], [1, 2 ** 60]] as const) {
      expect(() => box.replay("telemetry", from, to), `${from}..${to}`).toThrow(RangeError);
    }
    box.close();
  });

  it("every number of a replay is answered exactly once, whatever happened to the rows (property)", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ op: fc.constant("append" as const), n: fc.integer({ min: 1, max: 20 }) }),
            fc.record({ op: fc.constant("ack" as const), at: fc.integer({ min: 1, max: 200 }), n: fc.integer({ min: 1, max: 15 }) }),
            fc.record({ op: fc.constant("dead" as const), at: fc.integer({ min: 1, max: 200 }) }),
            fc.record({ op: fc.constant("purge" as const), at: fc.integer({ min: 1, max: 200 }) }),
            fc.record({ op: fc.constant("replay" as const), at: fc.integer({ min: 1, max: 200 }), n: fc.integer({ min: 0, max: 60 }) }),
          ),
          { maxLength: 30 },
        ),
        fc.integer({ min: 1, max: 220 }),
        fc.integer({ min: 0, max: 80 }),
        (ops, from, span) => {
          const box = Outbox.open({ path: ":memory:", quota: 64 * 1024 * 1024, whenFull: "drop-oldest", maxAge: 30 * DAY, sync: "full", replayWindow: HOUR });
          try {
            for (const o of ops) {
              if (o.op === "append") box.append(rows(o.n));
              else if (o.op === "ack") box.ack([[o.at, o.at + o.n - 1]]);
              else if (o.op === "dead") box.deadLetter("telemetry", o.at, o.at, "refused");
              else if (o.op === "purge") box.purgeDeadLetters({ stream: "telemetry", seq: [o.at, o.at] });
              else expectPartition(box.replay("telemetry", o.at, o.at + o.n));
            }
            const depth = box.depth;
            const kept = box.stats().kept;
            const a = box.replay("telemetry", from, from + span);
            expectPartition(a);
            const resent = a.resent.reduce((n, [lo, hi]) => n + hi - lo + 1, 0);
            expect(box.depth).toBe(depth + resent);
            expect(box.stats().kept).toBe(kept - resent);
            // Every resent number is back in the stream, once.
            const back = new Set(box.readAfter(0, 10_000).map((r) => r.seq));
            for (const [lo, hi] of a.resent) for (let s = lo; s <= hi; s++) expect(back.has(s)).toBe(true);
            // The same range again: nothing is resent twice.
            expect(box.replay("telemetry", from, from + span).resent).toEqual([]);
          } finally {
            box.close();
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe("drop ledger", () => {
  function ledger(limit?: number): { ledger: DropLedger; db: InstanceType<typeof Database> } {
    const dir = tempDir();
    open(dir).close();
    const db = new Database(join(dir, "outbox.db"));
    return { ledger: new DropLedger(db, limit), db };
  }

  it("coalesces ranges of the same reason that touch, in any order, and keeps others apart", () => {
    const { ledger: l, db } = ledger();
    l.record("telemetry", [[10, 19]], "quota", 1);
    l.record("telemetry", [[20, 29]], "quota", 2);
    l.record("telemetry", [[1, 9]], "quota", 3);
    l.record("telemetry", [[40, 49]], "quota", 4);
    l.record("telemetry", [[30, 39]], "quota", 5); // fills the hole: one range 1..49
    l.record("telemetry", [[50, 59]], "max-age", 6);
    l.record("events", [[60, 69]], "max-age", 7);
    expect(l.lookup("telemetry", 1, 100)).toEqual([
      { from: 1, to: 49, reason: "quota" },
      { from: 50, to: 59, reason: "max-age" },
    ]);
    expect(l.lookup("events", 1, 100)).toEqual([{ from: 60, to: 69, reason: "max-age" }]);
    expect(l.lookup("telemetry", 45, 52)).toEqual([
      { from: 45, to: 49, reason: "quota" },
      { from: 50, to: 52, reason: "max-age" },
    ]);
    expect(l.count()).toBe(3);
    db.close();
  });

  it("is bounded: past its limit the lowest ranges of a stream are forgotten (then unknown)", () => {
    const { ledger: l, db } = ledger(100);
    for (let i = 0; i < 250; i++) l.record("telemetry", [[i * 10 + 1, i * 10 + 5]], i % 2 ? "quota" : "max-age", i);
    l.record("events", [[1, 1]], "purged", 0);
    expect(l.count()).toBe(101);
    const kept = l.lookup("telemetry", 1, 10_000);
    expect(kept).toHaveLength(100);
    expect(kept[0]).toEqual({ from: 1501, to: 1505, reason: "max-age" });
    expect(l.lookup("events", 1, 10)).toEqual([{ from: 1, to: 1, reason: "purged" }]);
    db.close();
  });

  it("holds 10,000 ranges per stream by default, through the outbox", () => {
    const box = Outbox.open({ path: ":memory:", quota: 64 * 1024 * 1024, whenFull: "drop-oldest", maxAge: 30 * DAY, sync: "full", replayWindow: HOUR });
    box.append(rows(25_000));
    // 12,000 separate dead letters purged: 12,000 ranges, of which the newest 10,000 stay.
    for (let s = 2; s <= 24_000; s += 2) box.deadLetter("telemetry", s, s, "refused");
    box.purgeDeadLetters({ stream: "telemetry" });
    expect(box.stats().droppedRanges).toBe(10_000);
    const a = box.replay("telemetry", 3999, 4003);
    expect(a.missing).toEqual([
      { from: 4000, to: 4000, reason: "unknown" },
      { from: 4002, to: 4002, reason: "purged" },
    ]);
    box.close();
  });
});

describe("outbox format 4", () => {
  it("a format-3 file (test/fixtures/outbox-format3.db) opens, migrates, and keeps its backlog, dead letter, cursor and numbers", () => {
    const dir = tempDir();
    copyFileSync("test/fixtures/outbox-format3.db", join(dir, "outbox.db"));
    const before = Outbox.inspect(join(dir, "outbox.db"), { quota: 1e9, whenFull: "drop-oldest", maxAge: 1e13, sync: "full" });
    // Read-only, an older file shows what it has (nothing kept, no ledger) without being changed.
    expect(before.stats()).toMatchObject({ format: 3, depth: 129, kept: 0, droppedRanges: 0 });
    before.close();
    // At the time the fixture was written: a board's cursor that stopped moving 90 days ago is forgotten.
    const box = open(dir, { maxAge: 3650 * DAY, now: () => 1_763_800_120_000 });
    expect(box.openedFormat).toBe(3);
    expect(box.stats()).toMatchObject({ format: 4, depth: 129, lastSeq: 161, deadLetters: { count: 1 } });
    expect(box.cursor("bridge:room-101:boot-7f3a")).toBe(4711);
    expect(box.readAfter(0, 1000).map((r) => r.seq)).toEqual([...Array.from({ length: 88 }, (_, i) => 32 + i), ...Array.from({ length: 41 }, (_, i) => 121 + i)]);
    // The new tables work on the migrated file: acknowledged rows are kept and replayed.
    box.ack([[32, 41]]);
    expect(box.replay("telemetry", 30, 42)).toEqual({
      stream: "telemetry",
      from: 30,
      to: 42,
      resent: [[32, 41]],
      pending: [[42, 42]],
      missing: [{ from: 30, to: 31, reason: "unknown" }],
    });
    box.close();
    expect(existsSync(join(dir, "outbox.db"))).toBe(true);
  });
});
