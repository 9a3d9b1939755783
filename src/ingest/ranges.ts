/**
 * Sets of sequence numbers as sorted, disjoint, non-adjacent inclusive ranges — the ledger's
 * arithmetic, in JavaScript so one transaction can decide what of a batch is new — and their
 * PostgreSQL spelling (`int8multirange`, half-open: `{[1,101),[150,201)}` is 1..100 and 150..200).
 */
export type Range = [lo: number, hi: number];

/** `a ∪ b`, normalised. */
export function union(a: readonly Range[], b: readonly Range[]): Range[] {
  const all = [...a, ...b].sort((x, y) => x[0] - y[0]);
  const out: Range[] = [];
  for (const [lo, hi] of all) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

/** `a − b`: the numbers of `a` that are not in `b` (both normalised). */
export function subtract(a: readonly Range[], b: readonly Range[]): Range[] {
  const out: Range[] = [];
  let j = 0;
  for (const [lo0, hi] of a) {
    let lo = lo0;
    while (j < b.length && b[j]![1] < lo) j++;
    let k = j;
    while (lo <= hi) {
      const cut = b[k];
      if (!cut || cut[0] > hi) {
        out.push([lo, hi]);
        break;
      }
      if (cut[0] > lo) out.push([lo, cut[0] - 1]);
      lo = Math.max(lo, cut[1] + 1);
      k++;
    }
  }
  return out;
}

/** `a ∩ b`. */
export function intersect(a: readonly Range[], b: readonly Range[]): Range[] {
  return subtract(a, subtract(a, b));
}

/** How many numbers the ranges hold. */
export function count(ranges: readonly Range[]): number {
  let n = 0;
  for (const [lo, hi] of ranges) n += hi - lo + 1;
  return n;
}

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
