/**
 * The drop ledger: per stream, which sequence numbers the gateway dropped and why (`quota`,
 * `max-age`, `purged`, `replay-window`, `skipped`), as coalesced ranges — so a replay can tell
 * the platform that a gap is final, and why. Bounded: the LEDGER_RANGES lowest ranges of a stream
 * go first (their numbers then answer `unknown`). Written inside the transaction of the drop it
 * records.
 */
import type { DroppedRange, DropReason, SeqRange } from "../model/replay.js";
import type { StreamName } from "../model/status.js";
import type { Database, Statement } from "./sqlite.js";

/** Ranges kept per stream. */
export const LEDGER_RANGES = 10_000;

type LedgerRow = [first: number, last: number, reason: string];

export class DropLedger {
  private readonly s: {
    before: Statement;
    at: Statement;
    remove: Statement;
    insert: Statement;
    nthFromTop: Statement;
    prune: Statement;
    lookup: Statement;
    count: Statement;
  };

  constructor(
    db: Database,
    private readonly limit = LEDGER_RANGES,
  ) {
    this.s = {
      before: db.prepare("SELECT first, last, reason FROM dropped_ranges WHERE stream = ? AND first < ? ORDER BY first DESC LIMIT 1").raw(),
      at: db.prepare("SELECT first, last, reason FROM dropped_ranges WHERE stream = ? AND first = ?").raw(),
      remove: db.prepare("DELETE FROM dropped_ranges WHERE stream = ? AND first = ?"),
      insert: db.prepare("INSERT OR REPLACE INTO dropped_ranges (stream, first, last, reason, at) VALUES (?, ?, ?, ?, ?)"),
      nthFromTop: db.prepare("SELECT first FROM dropped_ranges WHERE stream = ? ORDER BY first DESC LIMIT 1 OFFSET ?").pluck(),
      prune: db.prepare("DELETE FROM dropped_ranges WHERE stream = ? AND first <= ?"),
      // From the last range starting at or below `lo` (ranges do not overlap) up to `hi`.
      lookup: db
        .prepare(
          "SELECT first, last, reason FROM dropped_ranges WHERE stream = @stream AND first <= @hi AND first >= coalesce((SELECT max(first) FROM dropped_ranges WHERE stream = @stream AND first <= @lo), 0) ORDER BY first",
        )
        .raw(),
      count: db.prepare("SELECT count(*) FROM dropped_ranges").pluck(),
    };
  }

  /** Records dropped ranges (sorted, disjoint), merged with a neighbour of the same reason. Call inside the drop's transaction. */
  record(stream: StreamName, ranges: readonly SeqRange[], reason: DropReason, at: number): void {
    if (ranges.length === 0) return;
    for (const [from, to] of ranges) {
      let first = from;
      let last = to;
      const prev = this.s.before.get(stream, first) as LedgerRow | undefined;
      if (prev && prev[1] + 1 === first && prev[2] === reason) {
        first = prev[0];
        this.s.remove.run(stream, prev[0]);
      }
      const next = this.s.at.get(stream, last + 1) as LedgerRow | undefined;
      if (next && next[2] === reason) {
        last = next[1];
        this.s.remove.run(stream, next[0]);
      }
      this.s.insert.run(stream, first, last, reason, at);
    }
    const cut = this.s.nthFromTop.get(stream, this.limit) as number | undefined;
    if (cut !== undefined) this.s.prune.run(stream, cut);
  }

  /** What the ledger says of lo..hi, clipped to it, in order. */
  lookup(stream: StreamName, lo: number, hi: number): DroppedRange[] {
    const out: DroppedRange[] = [];
    for (const [first, last, reason] of this.s.lookup.all({ stream, lo, hi }) as LedgerRow[]) {
      if (last < lo) continue;
      out.push({ from: Math.max(first, lo), to: Math.min(last, hi), reason: reason as DropReason });
    }
    return out;
  }

  /** Ranges held, all streams. */
  count(): number {
    return this.s.count.get() as number;
  }
}
