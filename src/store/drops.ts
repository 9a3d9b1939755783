/**
 * Why readings were dropped without reaching the broker: the counters the outbox keeps (and
 * persists) per stream, and their total. A module of its own so that the CLI can sum them
 * without loading SQLite.
 */
import type { DropCounters } from "../model/status.js";
export type { DropCounters } from "../model/status.js";

export const DROP_REASONS: readonly (keyof DropCounters)[] = ["quota_oldest", "quota_newest", "max_age", "purged"];

export function noDrops(): DropCounters {
  return { quota_oldest: 0, quota_newest: 0, max_age: 0, purged: 0 };
}

/** All rows dropped, whatever the reason. */
export function droppedTotal(d: DropCounters): number {
  return DROP_REASONS.reduce((n, r) => n + (d[r] ?? 0), 0);
}

/** The counters of several streams added up, reason by reason. */
export function sumDrops(all: readonly DropCounters[]): DropCounters {
  const total = noDrops();
  for (const d of all) for (const r of DROP_REASONS) total[r] += d[r] ?? 0;
  return total;
}
