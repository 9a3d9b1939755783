/**
 * Gap replay (docs/mqtt-contract.md, "Replay"): the platform asks a gateway for a range of one
 * stream's sequence numbers again; the gateway resends what it still keeps, reports what is still
 * on its way, and says why the rest is missing. The vocabulary the store, the command target and
 * a receiver share.
 */
import type { SeqRange } from "./seq-ranges.js";
import type { StreamName } from "./status.js";

export type { SeqRange };

/** Why the gateway dropped numbers it had issued (kept per stream in its drop ledger). */
export type DropReason = "quota" | "max-age" | "purged" | "replay-window" | "skipped";

/** Why a replay cannot send numbers: a drop, no record at all, or above the last number issued. */
export type MissingReason = DropReason | "unknown" | "not-issued";

export const MISSING_REASONS: readonly MissingReason[] = ["quota", "max-age", "purged", "replay-window", "skipped", "unknown", "not-issued"];

/** What the ledger knows of a range: numbers dropped for a reason. */
export interface DroppedRange {
  from: number;
  to: number;
  reason: MissingReason;
}

/** The `state` of a replay command's result: every number of from..to in exactly one list. */
export interface ReplayAnswer {
  stream: StreamName;
  from: number;
  to: number;
  /** Put back into the outbox with their original numbers; on their way again. */
  resent: SeqRange[];
  /** Never acknowledged yet (waiting, in flight, or set aside as dead letters): they come on their own. */
  pending: SeqRange[];
  missing: DroppedRange[];
}
