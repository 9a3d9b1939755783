/**
 * Sequence numbers that stay unique under `store.sync: normal`. There, the last commits may be
 * rolled back by a power cut (the WAL is synced only at checkpoints), and the numbers they used
 * would be handed out again: the receiver would then drop new readings as duplicates.
 *
 * So numbers are handed out in blocks reserved durably beforehand, in a small file beside the
 * outbox (`<outbox>.seq`), written with fsync and renamed into place — independent of SQLite's
 * WAL, so even the loss of every WAL frame since the last checkpoint cannot take a reservation
 * back. A clean stop (checkpoint done) marks the file clean; after an unclean one, every stream
 * resumes above its reserved block. The price: after a power cut, the unused rest of a block is
 * a gap the receiver sees (never a reused number).
 */
import { readFileSync, rmSync } from "node:fs";
import { writeFileDurably } from "./durable-file.js";

export interface SeqFileState {
  /** True only when the outbox was closed cleanly after this was written. */
  clean: boolean;
  /** Per stream: numbers up to this one may have been handed out. */
  reserved: Record<string, number>;
}

/** Smallest and largest block; the block doubles while reservations come within a second. */
export const MIN_BLOCK = 10_000;
export const MAX_BLOCK = 1_000_000;

export class SeqReservations {
  readonly path: string;

  constructor(dbPath: string) {
    this.path = `${dbPath}.seq`;
  }

  /** The state as last written, or null when there is no (readable) file. */
  read(): SeqFileState | null {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch {
      return null;
    }
    try {
      const data = JSON.parse(text) as { clean?: unknown; reserved?: unknown };
      const reserved: Record<string, number> = Object.create(null) as Record<string, number>;
      if (typeof data.reserved === "object" && data.reserved !== null) {
        for (const [k, v] of Object.entries(data.reserved)) if (Number.isSafeInteger(v) && (v as number) >= 0) reserved[k] = v as number;
      }
      return { clean: data.clean === true, reserved };
    } catch {
      // A torn file cannot happen (rename is atomic); anything else unreadable is not clean.
      return { clean: false, reserved: Object.create(null) as Record<string, number> };
    }
  }

  /** Writes the state durably: temp file, fsync, rename, fsync of the directory. */
  write(state: SeqFileState): void {
    writeFileDurably(this.path, `${JSON.stringify({ v: 1, clean: state.clean, reserved: state.reserved })}\n`);
  }

  remove(): void {
    rmSync(this.path, { force: true });
  }
}

/** The next block size: larger while reservations come fast, so a busy gateway fsyncs rarely. */
export function nextBlock(previous: number, sinceLastMs: number): number {
  if (sinceLastMs < 1000) return Math.min(MAX_BLOCK, previous * 2);
  return Math.max(MIN_BLOCK, Math.floor(previous / 2));
}
