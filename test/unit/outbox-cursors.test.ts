/**
 * Cursors: a pushing source (a bridged board) records how far it has stored in the same
 * transaction as the readings, so after a crash a resent reading is recognised. A cursor moves
 * only when its transaction committed; a file of format 2 gains the table on upgrade.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Reading } from "../../src/model/reading.js";
import { FORMAT, Outbox, type OutboxOptions } from "../../src/store/outbox.js";
import { Database } from "../../src/store/sqlite.js";
import { tempDir } from "../helpers/tmp.js";

const DAY = 86_400_000;
const open = (dir: string, over: Partial<OutboxOptions> = {}) =>
  Outbox.open({ path: join(dir, "outbox.db"), quota: 64 * 1024 * 1024, whenFull: "drop-oldest", maxAge: 30 * DAY, sync: "full", ...over });
const rows = (n: number, point = "node-1/t"): Reading[] => Array.from({ length: n }, (_, i) => ({ point, ts: Date.now() + i, value: i, quality: "good" as const }));

describe("Outbox cursors", () => {
  it("commit with the readings and survive a reopen", () => {
    const dir = tempDir();
    const box = open(dir);
    expect(box.cursor("bridge:a:1")).toBeUndefined();
    box.append(rows(3), [["bridge:a:1", 3]]);
    box.append(rows(2), [["bridge:a:1", 5], ["bridge:b:9", 1]]);
    expect(box.cursor("bridge:a:1")).toBe(5);
    box.close();
    const again = open(dir);
    expect(again.cursor("bridge:a:1")).toBe(5);
    expect(again.cursor("bridge:b:9")).toBe(1);
    expect(again.depth).toBe(5);
    again.close();
  });

  it("do not move when the transaction rolls back, and neither do the readings", () => {
    const dir = tempDir();
    const box = open(dir);
    box.append(rows(1), [["k", 1]]);
    // A cursor the table refuses (NOT NULL) makes the whole transaction fail.
    expect(() => box.append(rows(4), [["k", 2], ["bad", null as unknown as number]])).toThrow();
    expect(box.cursor("k")).toBe(1);
    expect(box.cursor("bad")).toBeUndefined();
    expect(box.depth).toBe(1);
    expect(box.lastSeq).toBe(1);
    box.append(rows(1), [["k", 3]]);
    expect(box.cursor("k")).toBe(3);
    expect(box.readAfter(0, 10).map((r) => r.seq)).toEqual([1, 2]);
    box.close();
  });

  it("move on their own when there is nothing new to store (every reading was a duplicate)", () => {
    const dir = tempDir();
    const box = open(dir);
    box.append([], [["k", 7]]);
    expect(box.cursor("k")).toBe(7);
    expect(box.depth).toBe(0);
    box.close();
    expect(open(dir).cursor("k")).toBe(7);
  });

  it("keep keys from outside apart from JavaScript's own names", () => {
    const box = open(tempDir());
    for (const key of ["__proto__", "constructor", "toString"]) box.append([], [[key, 1]]);
    expect(box.cursor("__proto__")).toBe(1);
    expect(box.cursor("hasOwnProperty")).toBeUndefined();
    expect(({} as Record<string, unknown>).constructor).toBe(Object);
    box.close();
  });

  it("that stopped moving 90 days ago are forgotten by the housekeeping", () => {
    const dir = tempDir();
    let now = 1_763_800_000_000;
    const box = open(dir, { now: () => now, maxAge: 3650 * DAY });
    box.append([], [["old", 1]]);
    now += 60 * DAY;
    box.append([], [["recent", 1]]);
    now += 40 * DAY;
    box.expire();
    expect(box.cursor("old")).toBeUndefined();
    expect(box.cursor("recent")).toBe(1);
    box.close();
  });

  it("a file of format 2 gains the table when it is opened", () => {
    const dir = tempDir();
    const box = open(dir);
    box.append(rows(2));
    box.close();
    const db = new Database(join(dir, "outbox.db"));
    db.exec("DROP TABLE cursors; UPDATE meta SET value = 2 WHERE key = 'format'");
    db.close();
    const again = open(dir);
    expect(again.openedFormat).toBe(2);
    expect(again.stats().format).toBe(FORMAT);
    again.append(rows(1), [["k", 1]]);
    expect(again.cursor("k")).toBe(1);
    expect(again.depth).toBe(3);
    again.close();
  });
});
