/**
 * Rows kept for replay (`store.replay_window`): when the broker acknowledged a row, it moves from
 * its stream's table to the stream's `<table>_kept` (with the time of the acknowledgement) instead
 * of going, so that a replay can put it back with its original number. A table of its own keeps
 * the stream's table holding only unsent rows: the send path, the depth and the oldest unsent
 * figures stay as they were. Kept rows count toward the quota and are the first to go when it is
 * reached. Every method here runs inside a transaction of the caller.
 */
import { type SeqRange, toRanges } from "../model/seq-ranges.js";
import { rangesSql } from "./ranges.js";
import type { Database, Statement } from "./sqlite.js";

/** Rows read at a time when expiring (in sequence order). */
const CHUNK = 1000;

export class KeptRows {
  /** Rows kept now (follows the file: changed by the caller once its transaction committed). */
  count: number;
  private readonly s: {
    keep: Statement;
    ranges: Statement;
    requeue: Statement;
    remove: Statement;
    nthSeq: Statement;
    rangesBelow: Statement;
    deleteBelow: Statement;
    chunk: Statement;
  };

  constructor(
    db: Database,
    /** The stream's table, and its kept rows' table. */
    table: string,
    readonly keptTable: string,
  ) {
    const k = keptTable;
    this.s = {
      keep: db.prepare(`INSERT OR REPLACE INTO ${k} (seq, p, ts, v, q, at) SELECT seq, p, ts, v, q, ? FROM ${table} WHERE seq >= ? AND seq <= ?`),
      ranges: db.prepare(rangesSql(k, "seq >= ? AND seq <= ?")).raw(),
      requeue: db.prepare(`INSERT OR REPLACE INTO ${table} (seq, p, ts, v, q) SELECT seq, p, ts, v, q FROM ${k} WHERE seq >= ? AND seq <= ?`),
      remove: db.prepare(`DELETE FROM ${k} WHERE seq >= ? AND seq <= ?`),
      nthSeq: db.prepare(`SELECT seq FROM ${k} ORDER BY seq LIMIT 1 OFFSET ?`).pluck(),
      rangesBelow: db.prepare(rangesSql(k, "seq < ?")).raw(),
      deleteBelow: db.prepare(`DELETE FROM ${k} WHERE seq < ?`),
      chunk: db.prepare(`SELECT seq, ts, at FROM ${k} WHERE seq > ? ORDER BY seq LIMIT ${CHUNK}`).raw(),
    };
    this.count = db.prepare(`SELECT count(*) FROM ${k}`).pluck().get() as number;
  }

  /** Copies the stream's rows first..last here, acknowledged at `at`; returns how many. (The caller deletes them there.) */
  keep(first: number, last: number, at: number): number {
    return this.s.keep.run(at, first, last).changes;
  }

  /** The kept numbers within lo..hi. */
  ranges(lo: number, hi: number): SeqRange[] {
    return this.s.ranges.all(lo, hi) as SeqRange[];
  }

  /** Moves lo..hi back into the stream's table (original numbers); returns how many rows moved. */
  requeue(lo: number, hi: number): number {
    this.s.requeue.run(lo, hi);
    return this.s.remove.run(lo, hi).changes;
  }

  /** Deletes the `n` lowest-numbered kept rows; returns their ranges and count. */
  dropOldest(n: number): { ranges: SeqRange[]; count: number } {
    if (n <= 0 || this.count === 0) return { ranges: [], count: 0 };
    const boundary = n >= this.count ? Number.MAX_SAFE_INTEGER : ((this.s.nthSeq.get(n) as number | undefined) ?? Number.MAX_SAFE_INTEGER);
    const ranges = this.s.rangesBelow.all(boundary) as SeqRange[];
    return { ranges, count: this.s.deleteBelow.run(boundary).changes };
  }

  /**
   * Deletes rows whose reading time (`ts`) or acknowledgement time (`at`) is before `cutoff`, in
   * sequence order, stopping at the first chunk with none: rows are stored, and mostly
   * acknowledged, in that order (a backlog acknowledged after live rows holds those a little
   * longer, never shorter).
   */
  expire(column: "ts" | "at", cutoff: number): { ranges: SeqRange[]; count: number } {
    const col = column === "ts" ? 1 : 2;
    const old: number[] = [];
    let after = 0;
    for (;;) {
      const chunk = this.s.chunk.all(after) as Array<[number, number, number]>;
      if (chunk.length === 0) break;
      const before = old.length;
      for (const row of chunk) if (row[col]! < cutoff) old.push(row[0]);
      if (old.length === before) break;
      after = chunk[chunk.length - 1]![0];
    }
    const ranges = toRanges(old);
    let count = 0;
    for (const [a, b] of ranges) count += this.s.remove.run(a, b).changes;
    return { ranges, count };
  }
}
