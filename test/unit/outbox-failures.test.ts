/**
 * The outbox when the disk says no: a transaction that fails (disk full, an I/O error mid-batch)
 * must leave nothing behind in memory that the file does not hold — above all no cached point id
 * that a later point would reuse, which would send readings under another point's name.
 */
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Reading } from "../../src/model/reading.js";
import type { Database } from "../../src/store/sqlite.js";
import { Outbox, type OutboxOptions, STREAMS, type StreamName } from "../../src/store/outbox.js";
import { tempDir } from "../helpers/tmp.js";

const DAY = 86_400_000;

function open(dir: string, over: Partial<OutboxOptions> = {}): Outbox {
  return Outbox.open({ path: join(dir, "outbox.db"), quota: 64 * 1024 * 1024, whenFull: "drop-oldest", maxAge: 30 * DAY, sync: "full", ...over });
}

/** The connection under the outbox, to inject what a real disk does (tests only). */
function dbOf(box: Outbox): Database {
  return (box as unknown as { db: Database }).db;
}

function pageCount(box: Outbox): number {
  return dbOf(box).pragma("page_count", { simple: true }) as number;
}

const T0 = Date.now();
const reading = (point: string, i: number, ts = T0 + i): Reading => ({ point, ts, value: i, quality: "good" });

describe("Outbox under failing transactions", () => {
  it("after SQLITE_FULL, a later new point never reuses a rolled-back point id", () => {
    const dir = tempDir();
    const box = open(dir);
    box.append([reading("room/a", 1), reading("room/b", 2)]);
    // The disk is full: the file may not grow by a single page.
    dbOf(box).pragma(`max_page_count = ${pageCount(box)}`);
    const many = Array.from({ length: 2000 }, (_, i) => reading(`meter/b_${i}`, i));
    expect(() => box.append(many)).toThrow(/full/i);
    expect(box.lastSeq).toBe(2);
    // Space again; a new name arrives, then one of the names of the failed batch.
    dbOf(box).pragma("max_page_count = 1073741823");
    box.append([reading("room/c", 3)]);
    box.append([reading("meter/b_0", 4), reading("room/a", 5)]);
    const back = box.readAfter(0, 100).map((r) => [r.seq, r.point]);
    expect(back).toEqual([
      [1, "room/a"],
      [2, "room/b"],
      [3, "room/c"],
      [4, "meter/b_0"],
      [5, "room/a"],
    ]);
    box.close();
    // And the same from the file, as the next start sees it.
    const again = open(dir);
    expect(again.readAfter(0, 100).map((r) => r.point)).toEqual(["room/a", "room/b", "room/c", "meter/b_0", "room/a"]);
    again.close();
  });

  it("under random I/O errors mid-batch, every committed reading keeps its name and number, and nothing else is stored", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            stream: fc.constantFrom<StreamName>(...STREAMS),
            points: fc.array(fc.constantFrom("a/x", "a/y", "b/x", "c/z", "d/w", "__proto__/x", "constructor/y"), { minLength: 1, maxLength: 6 }),
            failAt: fc.option(fc.nat(5), { nil: undefined }),
          }),
          { minLength: 1, maxLength: 25 },
        ),
        (batches) => {
          const dir = tempDir();
          const box = open(dir);
          const db = dbOf(box);
          // An I/O error raised by SQLite in the middle of the batch: the nth insert of it fails.
          db.exec("CREATE TEMP TABLE inject (n INTEGER)");
          for (const t of ["readings", "events", "results"]) {
            db.exec(`CREATE TEMP TRIGGER fail_${t} BEFORE INSERT ON main.${t} WHEN (SELECT n FROM inject) = 0 BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`);
            db.exec(`CREATE TEMP TRIGGER count_${t} AFTER INSERT ON main.${t} BEGIN UPDATE inject SET n = n - 1; END`);
          }
          const expected = new Map<StreamName, Array<[number, string]>>(STREAMS.map((s) => [s, []]));
          let i = 0;
          for (const b of batches) {
            db.exec("DELETE FROM inject");
            if (b.failAt !== undefined && b.failAt < b.points.length) db.prepare("INSERT INTO inject VALUES (?)").run(b.failAt);
            const rows = b.points.map((p) => reading(p, i++));
            const store = box.stream(b.stream);
            const before = store.lastSeq;
            let ok = true;
            try {
              store.append(rows);
            } catch (err) {
              ok = false;
              expect((err as Error).message).toMatch(/disk I\/O error/);
            }
            expect(ok).toBe(b.failAt === undefined || b.failAt >= b.points.length);
            if (ok) rows.forEach((r, j) => expected.get(b.stream)!.push([before + j + 1, r.point]));
            else expect(store.lastSeq).toBe(before);
          }
          for (const s of STREAMS) {
            expect(box.stream(s).readAfter(0, 1000).map((r) => [r.seq, r.point])).toEqual(expected.get(s));
          }
          box.close();
          const again = open(dir);
          for (const s of STREAMS) {
            expect(again.stream(s).readAfter(0, 1000).map((r) => [r.seq, r.point])).toEqual(expected.get(s));
          }
          again.close();
        },
      ),
      { numRuns: 40 },
    );
  });

  it("a failed drop-counter write does not leave a counter the file does not have", () => {
    const dir = tempDir();
    let now = 10 * DAY;
    const box = open(dir, { maxAge: DAY, now: () => now });
    box.append([reading("a/x", 1, now - 1000)]);
    now += 2 * DAY;
    // The meta table refuses writes (as a full disk would).
    dbOf(box).exec("CREATE TEMP TRIGGER no_meta BEFORE UPDATE ON main.meta BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END");
    dbOf(box).exec("CREATE TEMP TRIGGER no_meta_i BEFORE INSERT ON main.meta BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END");
    expect(() => box.expire()).toThrow(/I\/O/);
    expect(box.stats().dropped.max_age).toBe(0);
    box.close();
  });
});
