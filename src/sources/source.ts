import type { Reading } from "../model/reading.js";

/**
 * Something the agent polls at an interval: a simulated device, a Modbus line, an I²C bus.
 * `poll` returns the readings of one tick; a failing device yields readings of quality bad,
 * never a thrown error for the whole source.
 */
export interface Source {
  readonly name: string;
  /** Poll period in ms. */
  readonly interval: number;
  start?(): Promise<void>;
  poll(tickTs: number): Promise<Reading[]>;
  stop?(): Promise<void>;
  /** How the device is doing (online, counters, last error), for status and metrics. */
  health?(): unknown;
}
