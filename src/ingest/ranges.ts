/**
 * The ledger's arithmetic on sequence ranges (model/seq-ranges.ts, shared with the gateway's
 * outbox), in JavaScript so one transaction can decide what of a batch is new, and the ranges'
 * PostgreSQL spelling (`int8multirange`, half-open: `{[1,101),[150,201)}` is 1..100 and 150..200).
 */
import { coalesce, countOf, type SeqRange, subtract } from "../model/seq-ranges.js";

export type Range = SeqRange;
export { subtract };

/** `a ∪ b`, normalised. */
export function union(a: readonly Range[], b: readonly Range[]): Range[] {
  return coalesce([...a, ...b]);
}

/** `a ∩ b`. */
export function intersect(a: readonly Range[], b: readonly Range[]): Range[] {
  return subtract(a, subtract(a, b));
}

/** How many numbers the ranges hold. */
export const count = countOf;

/** The gaps inside the span of `received` that `settled` does not cover. */
export function openGaps(received: readonly Range[], settled: readonly Range[] = []): Range[] {
  if (received.length < 2) return [];
  const span: Range[] = [[received[0]![0], received[received.length - 1]![1]]];
  return subtract(subtract(span, received), settled);
}

/** PostgreSQL's text form of an int8multirange → ranges. Throws on anything else. */
export function parseMultirange(text: string | null): Range[] {
  if (text === null || text === "{}") return [];
  const m = /^\{(.*)\}$/.exec(text);
  if (!m) throw new Error(`not a multirange: ${text.slice(0, 40)}`);
  const out: Range[] = [];
  for (const part of m[1]!.matchAll(/([[(])(-?\d+),(-?\d+)([\])])/g)) {
    const lo = Number(part[2]) + (part[1] === "(" ? 1 : 0);
    const hi = Number(part[3]) - (part[4] === ")" ? 1 : 0);
    if (lo <= hi) out.push([lo, hi]);
  }
  return union(out, []);
}

/** Ranges → the literal PostgreSQL reads as an int8multirange. */
export function formatMultirange(ranges: readonly Range[]): string {
  return `{${ranges.map(([lo, hi]) => `[${lo},${hi + 1})`).join(",")}}`;
}
