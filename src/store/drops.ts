/**
 * Why readings were dropped without reaching the broker: the counters the outbox keeps (and
 * persists), and their total. A module of its own so that the CLI can sum them without loading SQLite.
 */
export interface DropCounters {
  /** Oldest readings deleted to make room (policy drop-oldest). */
  quota_oldest: number;
  /** New readings refused because the store was full (policy drop-newest). */
  quota_newest: number;
  /** Readings deleted because they were older than max_age. */
  max_age: number;
}

export const DROP_REASONS: readonly (keyof DropCounters)[] = ["quota_oldest", "quota_newest", "max_age"];

/** All readings dropped, whatever the reason. */
export function droppedTotal(d: DropCounters): number {
  return DROP_REASONS.reduce((n, r) => n + d[r], 0);
}
