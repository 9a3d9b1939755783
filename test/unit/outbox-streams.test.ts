/**
 * The outbox's promises beyond telemetry: the quota and max_age cover events, command results and
 * dead letters too, with drops counted per stream; dead letters can be listed, resent with their
 * own sequence numbers, and purged; an inspection never writes; a file of a newer format is refused.
 */
import { copyFileSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Reading } from "../../src/model/reading.js";
import { Database } from "../../src/store/sqlite.js";
import { FORMAT, Outbox, type OutboxOptions } from "../../src/store/outbox.js";
import { tempDir } from "../helpers/tmp.js";

const DAY = 86_400_000;

function open(dir: string, over: Partial<OutboxOptions> = {}): Outbox {
  return Outbox.open({ path: join(dir, "outbox.db"), quota: 64 * 1024 * 1024, whenFull: "drop-oldest", maxAge: 30 * DAY, sync: "full", ...over });
}

const rows = (n: number, point: string, ts = Date.now(), text = false): Reading[] =>
  Array.from({ length: n }, (_, i) => ({ point, ts: ts + i, value: text ? JSON.stringify({ id: `c-${i}`, status: "ok", pad: "x".repeat(80) }) : i, quality: "good" as const }));

const sha = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

describe("Outbox: every stream under the quota", () => {
  it("drop-oldest keeps the file within its quota when only events and results grow, and counts per stream", () => {
    const dir = tempDir();
    const quota = 256 * 1024;
    const box = open(dir, { quota });
    for (let i = 0; i < 60; i++) {
      box.stream("events").append(rows(200, "room-101/occupied"));
      box.stream("results").append(rows(20, "street-3", Date.now(), true));
    }
    const s = box.stats();
    expect(s.usedBytes).toBeLessThanOrEqual(quota);
    expect(s.streams.events.dropped.quota_oldest).toBeGreaterThan(0);
    expect(s.streams.events.depth + s.streams.events.dropped.quota_oldest).toBe(12_000);
    expect(s.streams.results.depth + s.streams.results.dropped.quota_oldest).toBe(1200);
    expect(s.streams.telemetry.dropped.quota_oldest).toBe(0);
    // The total is the sum of the streams.
    expect(s.dropped.quota_oldest).toBe(s.streams.events.dropped.quota_oldest + s.streams.results.dropped.quota_oldest);
    // What is kept is the newest of each stream.
    expect(box.stream("events").readAfter(0, 1e6).at(-1)!.seq).toBe(12_000);
    box.close();
    const again = open(dir, { quota });
    expect(again.stats().streams.events.dropped).toEqual(s.streams.events.dropped);
    again.close();
  });

  it("drops telemetry before events and results when they share a full store", () => {
    const dir = tempDir();
    const quota = 256 * 1024;
    const box = open(dir, { quota });
    box.stream("results").append(rows(5, "street-3", Date.now(), true));
    box.stream("events").append(rows(5, "room-101/occupied"));
    for (let i = 0; i < 50; i++) box.append(rows(500, "meter-1/power"));
    const s = box.stats();
    expect(s.usedBytes).toBeLessThanOrEqual(quota);
    expect(s.streams.telemetry.dropped.quota_oldest).toBeGreaterThan(0);
    expect(s.streams.results).toMatchObject({ depth: 5, dropped: { quota_oldest: 0 } });
    expect(s.streams.events).toMatchObject({ depth: 5, dropped: { quota_oldest: 0 } });
    box.close();
  });

  it("drop-newest refuses events and results too when full, and counts them", () => {
    const dir = tempDir();
    const quota = 128 * 1024;
    const box = open(dir, { quota, whenFull: "drop-newest" });
    let refusedEvents = 0;
    let refusedResults = 0;
    for (let i = 0; i < 40; i++) {
      refusedEvents += box.stream("events").append(rows(200, "room/occupied")).refused;
      refusedResults += box.stream("results").append(rows(10, "street-3", Date.now(), true)).refused;
    }
    const s = box.stats();
    expect(refusedEvents).toBeGreaterThan(0);
    expect(s.streams.events.dropped.quota_newest).toBe(refusedEvents);
    expect(s.streams.results.dropped.quota_newest).toBe(refusedResults);
    expect(s.usedBytes).toBeLessThanOrEqual(quota + 8 * 4096);
    box.close();
  });

  it("max_age applies to events, results and dead letters", () => {
    const dir = tempDir();
    let now = 100 * DAY;
    const box = open(dir, { maxAge: DAY, now: () => now });
    box.stream("events").append(rows(3, "e/x", now - 2 * DAY));
    box.stream("results").append(rows(2, "r", now - 2 * DAY, true));
    box.append(rows(4, "t/x", now - 2 * DAY));
    box.deadLetter("telemetry", 1, 2, "refused");
    expect(box.expire()).toBe(9);
    const s = box.stats();
    expect(s.streams.events.dropped.max_age).toBe(3);
    expect(s.streams.results.dropped.max_age).toBe(2);
    expect(s.streams.telemetry.dropped.max_age).toBe(4);
    expect(s.deadLetters.count).toBe(0);
    now += 1;
    box.close();
  });
});

describe("Outbox: dead letters", () => {
  it("sets refused rows aside, lists them with their reason, resends them with their own numbers, purges and counts", () => {
    const dir = tempDir();
    const box = open(dir);
    box.append(rows(10, "meter-1/power"));
    expect(box.deadLetter("telemetry", 3, 4, "refused by the broker: payload format invalid (0x99)")).toBe(2);
    expect(box.deadLetter("telemetry", 8, 8, "larger than the broker's maximum packet size")).toBe(1);
    expect(box.depth).toBe(7);
    expect(box.readAfter(0, 100).map((r) => r.seq)).toEqual([1, 2, 5, 6, 7, 9, 10]);
    const s = box.stats();
    expect(s.deadLetters.count).toBe(3);
    expect(s.streams.telemetry.deadLetters).toBe(3);
    expect(s.deadLetters.reasons).toEqual([
      { reason: "refused by the broker: payload format invalid (0x99)", count: 2 },
      { reason: "larger than the broker's maximum packet size", count: 1 },
    ]);
    const listed = box.deadLetters();
    expect(listed.map((d) => [d.stream, d.seq, d.point, d.value])).toEqual([
      ["telemetry", 3, "meter-1/power", 2],
      ["telemetry", 4, "meter-1/power", 3],
      ["telemetry", 8, "meter-1/power", 7],
    ]);
    // Resend part of them: back in the stream with the same numbers.
    expect(box.resendDeadLetters({ stream: "telemetry", seq: [3, 4] })).toEqual([{ stream: "telemetry", ranges: [[3, 4]], count: 2 }]);
    expect(box.readAfter(0, 100).map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 9, 10]);
    expect(box.depth).toBe(9);
    // Purge the rest: counted as a drop of that stream.
    expect(box.purgeDeadLetters()).toEqual([{ stream: "telemetry", count: 1 }]);
    expect(box.stats().streams.telemetry.dropped.purged).toBe(1);
    expect(box.stats().deadLetters.count).toBe(0);
    // A number that went to the dead letters is never handed out again, also after a restart.
    box.deadLetter("telemetry", 10, 10, "refused");
    box.close();
    const again = open(dir);
    again.ack([[1, 9]]);
    expect(again.append(rows(1, "meter-1/power")).first).toBe(11);
    again.close();
  });

  it("are dropped oldest first when the store is full, and counted", () => {
    const dir = tempDir();
    const quota = 256 * 1024;
    const box = open(dir, { quota });
    box.append(rows(3000, "meter-1/power"));
    box.deadLetter("telemetry", 1, 3000, "refused");
    for (let i = 0; i < 40; i++) box.append(rows(500, "meter-1/power"));
    const s = box.stats();
    expect(s.usedBytes).toBeLessThanOrEqual(quota);
    expect(s.deadLetters.count).toBeLessThan(3000);
    expect(s.streams.telemetry.dropped.quota_oldest).toBeGreaterThanOrEqual(3000 - s.deadLetters.count);
    box.close();
  });
});

describe("Outbox: formats and inspection", () => {
  it("inspect reads a running agent's outbox without writing anything (no checkpoint, no WAL truncation)", () => {
    const dir = tempDir();
    const path = join(dir, "outbox.db");
    const box = open(dir);
    box.append(rows(500, "meter-1/power"));
    box.stream("events").append(rows(3, "room/occupied"));
    const wal = statSync(`${path}-wal`).size;
    expect(wal).toBeGreaterThan(0);
    const before = { db: sha(path), wal: sha(`${path}-wal`) };
    const inspected = Outbox.inspect(path, { quota: 1e9, whenFull: "drop-oldest", maxAge: DAY, sync: "full" });
    expect(inspected.stats()).toMatchObject({ depth: 500, lastSeq: 500, streams: { events: { depth: 3 } } });
    inspected.close();
    expect({ db: sha(path), wal: sha(`${path}-wal`) }).toEqual(before);
    expect(statSync(`${path}-wal`).size).toBe(wal);
    // The agent goes on writing after the inspection.
    expect(box.append(rows(1, "meter-1/power")).first).toBe(501);
    box.close();
  });

  it("inspect reads a 0.1.0 file as it is: no migration, no new table", () => {
    const dir = tempDir();
    const path = join(dir, "old.db");
    copyFileSync("test/fixtures/outbox-0.1.0.db", path);
    const before = sha(path);
    const inspected = Outbox.inspect(path, { quota: 1e9, whenFull: "drop-oldest", maxAge: 3650 * DAY, sync: "full" });
    const s = inspected.stats();
    inspected.close();
    expect(s).toMatchObject({ format: 1, depth: 130, lastSeq: 161, deadLetters: { count: 0 } });
    expect(sha(path)).toBe(before);
  });

  it("opening a 0.1.0 file migrates it and keeps every pending item with its number and name", () => {
    const dir = tempDir();
    const path = join(dir, "old.db");
    copyFileSync("test/fixtures/outbox-0.1.0.db", path);
    const fixture = JSON.parse(readFileSync("test/fixtures/outbox-0.1.0.json", "utf8")) as {
      telemetry: unknown[];
      events: unknown[];
      results: unknown[];
      commands: Record<string, string>;
      lastSeq: Record<string, number>;
    };
    const box = Outbox.open({ path, quota: 1e9, whenFull: "drop-oldest", maxAge: 3650 * DAY, sync: "full", now: () => 1_763_800_060_000 });
    expect(box.openedFormat).toBe(1);
    expect(box.stats().format).toBe(FORMAT);
    expect(box.readAfter(0, 1000)).toEqual(fixture.telemetry);
    expect(box.stream("events").readAfter(0, 1000)).toEqual(fixture.events);
    expect(box.stream("results").readAfter(0, 1000)).toEqual(fixture.results);
    for (const [id, json] of Object.entries(fixture.commands)) expect(box.recallCommand(id)).toBe(json);
    expect(box.stats().dropped.max_age).toBe(1);
    // New numbers continue above the old ones in every stream.
    expect(box.append(rows(1, "meter-1/power", 1_763_800_050_000)).first).toBe(fixture.lastSeq.telemetry! + 1);
    expect(box.stream("events").append(rows(1, "room-101/occupied", 1_763_800_050_000)).first).toBe(fixture.lastSeq.events! + 1);
    // The new tables work on the migrated file.
    expect(box.deadLetter("telemetry", 32, 32, "refused")).toBe(1);
    box.append(rows(1, "node-1/t", 1_763_800_050_000), [["bridge:node-1:7", 1]]);
    expect(box.cursor("bridge:node-1:7")).toBe(1);
    box.close();
    const again = Outbox.open({ path, quota: 1e9, whenFull: "drop-oldest", maxAge: 3650 * DAY, sync: "full", now: () => 1_763_800_060_000 });
    expect(again.openedFormat).toBe(FORMAT);
    expect(again.stats().deadLetters.count).toBe(1);
    expect(again.cursor("bridge:node-1:7")).toBe(1);
    again.close();
  });

  it("refuses a file written by a newer format, naming the path, and leaves it as it was", () => {
    const dir = tempDir();
    open(dir).close();
    const path = join(dir, "outbox.db");
    const db = new Database(path);
    db.prepare("UPDATE meta SET value = ? WHERE key = 'format'").run(FORMAT + 1);
    db.close();
    const before = sha(path);
    expect(() => open(dir)).toThrow(new RegExp(`store\\.path: this outbox was written by a newer edge-agent \\(format ${FORMAT + 1}`));
    expect(sha(path)).toBe(before);
  });

  it("refuses a file that is not an outbox", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "outbox.db"), "hello, this is not SQLite at all".repeat(40));
    expect(() => open(dir)).toThrow(/store\.path: cannot open .*not an outbox database|file is not a database/);
  });
});
