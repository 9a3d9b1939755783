/**
 * A pushing source's own position (a bridged board's highest stored sequence of one boot),
 * committed in the same transaction as the readings it covers: (key, value).
 */
export type Cursor = readonly [key: string, value: number];

/** What a pushing source hands over with a tick's readings: positions to commit with them, and whom to tell how it went. */
export interface PollCommit {
  cursors: readonly Cursor[];
  /** Called once the tick's store is over: stored is true only when the transaction committed every reading. */
  settled(stored: boolean): void;
}
