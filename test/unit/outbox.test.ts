import { chmodSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Reading } from "../../src/model/reading.js";
import { Outbox, type OutboxOptions } from "../../src/store/outbox.js";
import { tempDir } from "../helpers/tmp.js";

const DAY = 86_400_000;

function readings(n: number, ts = Date.now(), point = "meter-1/power_total"): Reading[] {
  return Array.from({ length: n }, (_, i) => ({ point, ts: ts + i, value: i * 1.5, quality: "good" as const }));
}

function open(dir: string, over: Partial<OutboxOptions> = {}): Outbox {
  return Outbox.open({ path: join(dir, "outbox.db"), quota: 64 * 1024 * 1024, whenFull: "drop-oldest", maxAge: 30 * DAY, sync: "normal", ...over });
}

describe("Outbox", () => {
  it("gives strictly increasing sequence numbers, also across reopen", () => {
    const dir = tempDir();
    let box = open(dir);
    expect(box.append(readings(3))).toMatchObject({ first: 1, last: 3, stored: 3 });
    expect(box.append(readings(2))).toMatchObject({ first: 4, last: 5 });
    box.close();
    box = open(dir);
    expect(box.lastSeq).toBe(5);
    expect(box.append(readings(1))).toMatchObject({ first: 6, last: 6 });
    expect(box.readAfter(0, 100).map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    box.close();
  });

  it("never reuses a sequence number, even when every row was acknowledged and deleted", () => {
    const dir = tempDir();
    let box = open(dir);
    box.append(readings(10));
    expect(box.ack([[1, 10]])).toBe(10);
    expect(box.depth).toBe(0);
    box.close();
    box = open(dir);
    expect(box.firstSeq()).toBeNull();
    expect(box.append(readings(1)).first).toBe(11);
    box.close();
  });

  it("deletes only the acknowledged ranges", () => {
    const dir = tempDir();
    const box = open(dir);
    box.append(readings(10));
    box.ack([
      [2, 3],
      [7, 7],
    ]);
    expect(box.readAfter(0, 100).map((r) => r.seq)).toEqual([1, 4, 5, 6, 8, 9, 10]);
    expect(box.depth).toBe(7);
    expect(box.readAfter(4, 2).map((r) => r.seq)).toEqual([5, 6]);
    expect(box.readAfter(4, 100, 8).map((r) => r.seq)).toEqual([5, 6, 8]);
    box.close();
  });

  it("keeps values, types and quality exactly", () => {
    const dir = tempDir();
    const box = open(dir);
    const input: Reading[] = [
      { point: "a/num", ts: 1_700_000_000_123, value: 230.2, quality: "good" },
      { point: "a/int", ts: 1_700_000_000_124, value: -42, quality: "uncertain" },
      { point: "a/on", ts: 1_700_000_000_125, value: true, quality: "good" },
      { point: "a/off", ts: 1_700_000_000_126, value: false, quality: "good" },
      { point: "a/text", ts: 1_700_000_000_127, value: "float", quality: "good" },
      { point: "a/none", ts: 1_700_000_000_128, value: null, quality: "bad" },
      { point: "a/one", ts: 1_700_000_000_129, value: 1, quality: "good" },
    ];
    box.append(input);
    expect(box.readAfter(0, 100).map(({ seq: _s, ...r }) => r)).toEqual(input);
    box.close();
  });

  it("drop-oldest keeps the database within its quota and counts what it dropped", () => {
    const dir = tempDir();
    const quota = 512 * 1024;
    const box = open(dir, { quota });
    let stored = 0;
    for (let i = 0; i < 200; i++) stored += box.append(readings(500, Date.now() + i * 1000)).stored;
    box.checkpoint();
    const s = box.stats();
    expect(stored).toBe(100_000);
    expect(s.dropped.quota_oldest).toBeGreaterThan(0);
    expect(s.depth + s.dropped.quota_oldest).toBe(100_000);
    expect(s.usedBytes).toBeLessThanOrEqual(quota);
    // The file itself: quota plus a small margin (one tick's worth of pages).
    expect(statSync(join(dir, "outbox.db")).size).toBeLessThanOrEqual(quota * 1.15);
    // What is kept is the newest, in order.
    const kept = box.readAfter(0, 1_000_000);
    expect(kept[kept.length - 1]!.seq).toBe(100_000);
    expect(kept[0]!.seq).toBe(100_000 - s.depth + 1);
    box.close();
    // Counters survive a restart.
    const again = open(dir, { quota });
    expect(again.stats().dropped.quota_oldest).toBe(s.dropped.quota_oldest);
    again.close();
  });

  it("drop-newest refuses new readings when full and keeps the old ones", () => {
    const dir = tempDir();
    const quota = 256 * 1024;
    const box = open(dir, { quota, whenFull: "drop-newest" });
    let stored = 0;
    let refused = 0;
    for (let i = 0; i < 100; i++) {
      const r = box.append(readings(500));
      stored += r.stored;
      refused += r.refused;
    }
    const s = box.stats();
    expect(refused).toBeGreaterThan(0);
    expect(s.dropped.quota_newest).toBe(refused);
    expect(s.dropped.quota_oldest).toBe(0);
    expect(s.depth).toBe(stored);
    expect(box.firstSeq()).toBe(1);
    // Refused readings get no sequence number: the receiver sees no gap for them.
    expect(s.lastSeq).toBe(stored);
    // Once the broker takes some, there is room again.
    box.ack([[1, stored]]);
    expect(box.append(readings(10)).stored).toBe(10);
    box.close();
  });

  it("drops readings older than max_age and counts them", () => {
    const dir = tempDir();
    let now = 10 * DAY;
    const box = open(dir, { maxAge: DAY, now: () => now });
    box.append(readings(5, now - 2 * DAY));
    box.append(readings(5, now - DAY / 2));
    expect(box.expire()).toBe(5);
    expect(box.stats().dropped.max_age).toBe(5);
    expect(box.readAfter(0, 100).map((r) => r.seq)).toEqual([6, 7, 8, 9, 10]);
    now += DAY;
    expect(box.expire()).toBe(5);
    expect(box.depth).toBe(0);
    box.close();
  });

  it("reports depth, oldest age and bytes", () => {
    const dir = tempDir();
    let now = 1_000_000;
    const box = open(dir, { now: () => now });
    box.append(readings(4, now - 5000));
    now += 1000;
    const s = box.stats();
    expect(s).toMatchObject({ depth: 4, firstSeq: 1, lastSeq: 4, oldestTs: now - 6000, oldestAgeMs: 6000 });
    expect(s.fileBytes).toBeGreaterThan(0);
    box.close();
  });

  it("names the path when the directory cannot be written", () => {
    const dir = tempDir();
    if (process.getuid?.() === 0) {
      // root ignores permissions: a parent that is a regular file fails for everyone.
      open(dir).close();
      const path = join(dir, "outbox.db", "sub", "x.db");
      expect(() => open(dir, { path })).toThrow(/store\.path: cannot open .*x\.db/);
      return;
    }
    const ro = join(dir, "ro");
    mkdirSync(ro);
    chmodSync(ro, 0o500);
    expect(() => open(ro)).toThrow(/store\.path: cannot open .*permission denied/);
  });

  it("inspect refuses a missing outbox with a clear message", () => {
    const dir = tempDir();
    expect(() => Outbox.inspect(join(dir, "none.db"), { quota: 1e6, whenFull: "drop-oldest", maxAge: DAY, sync: "full" })).toThrow(
      /no outbox at .*none\.db/,
    );
  });
});
