/** The vocabulary every part of the agent speaks. */

export type Quality = "good" | "bad" | "uncertain";
export const QUALITIES: readonly Quality[] = ["good", "bad", "uncertain"];

export type Value = number | boolean | string | null;

/** One measured value of one point at one moment. */
export interface Reading {
  /** `<source>/<point>`, e.g. `meter-1/power_total`. */
  point: string;
  /** Unix time in milliseconds. */
  ts: number;
  /** null only when the quality is not good and no value could be read. */
  value: Value;
  quality: Quality;
}

/** A reading as it sits in the outbox: with its per-gateway sequence number. */
export interface StoredReading extends Reading {
  seq: number;
}
