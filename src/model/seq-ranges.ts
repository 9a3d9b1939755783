/**
 * Sequence numbers as sorted, disjoint, coalesced inclusive ranges (`[[3,5],[9,10]]`): what the
 * outbox's drop ledger keeps, a replay answers, and the uplink sends again — the arithmetic a
 * receiver of the contract needs too.
 */

/** Inclusive sequence range `[first, last]`; lists of them are sorted, disjoint and coalesced. */
export type SeqRange = [first: number, last: number];

/** Ascending numbers → ranges: [3,4,5,9,10] → [[3,5],[9,10]]. */
export function toRanges(seqs: readonly number[]): SeqRange[] {
  const out: SeqRange[] = [];
  for (const s of seqs) {
    const last = out[out.length - 1];
    if (last && s === last[1] + 1) last[1] = s;
    else out.push([s, s]);
  }
  return out;
}

/** Any ranges → sorted, with overlapping and adjacent ones merged. */
export function coalesce(ranges: ReadonlyArray<readonly [number, number]>): SeqRange[] {
  const sorted = ranges.map(([a, b]): SeqRange => [a, b]).sort((x, y) => x[0] - y[0]);
  const out: SeqRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push(r);
  }
  return out;
}

/** The numbers of `a` that are not in `b` (both sorted and disjoint). */
export function subtract(a: readonly SeqRange[], b: readonly SeqRange[]): SeqRange[] {
  const out: SeqRange[] = [];
  let j = 0;
  for (const [first, last] of a) {
    let lo = first;
    while (j < b.length && b[j]![1] < lo) j++;
    for (let k = j; lo <= last; k++) {
      const cut = b[k];
      if (!cut || cut[0] > last) {
        out.push([lo, last]);
        break;
      }
      if (cut[0] > lo) out.push([lo, cut[0] - 1]);
      lo = Math.max(lo, cut[1] + 1);
    }
  }
  return out;
}

/** How many numbers the ranges hold. */
export function countOf(ranges: readonly SeqRange[]): number {
  let n = 0;
  for (const [a, b] of ranges) n += b - a + 1;
  return n;
}
