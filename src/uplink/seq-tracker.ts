/**
 * What a receiver knows about one gateway's sequence numbers: the ranges it has received, the
 * gaps between them and how many readings arrived more than once. Ranges are merged as they
 * arrive, so a million readings in a thousand messages cost a handful of intervals.
 */
export interface SeqReport {
  first: number | null;
  last: number | null;
  received: number;
  duplicates: number;
  gaps: Array<[number, number]>;
  missing: number;
}

export class SeqTracker {
  /** Disjoint, sorted, non-adjacent inclusive intervals. */
  private ranges: Array<[number, number]> = [];
  private dupes = 0;
  private total = 0;

  /** Records the range first..last (inclusive); returns how many of it were already seen. */
  add(first: number, last: number): number {
    if (last < first) throw new RangeError(`bad range ${first}..${last}`);
    let overlap = 0;
    let lo = first;
    let hi = last;
    const kept: Array<[number, number]> = [];
    let inserted = false;
    for (const [a, b] of this.ranges) {
      if (b < lo - 1) {
        kept.push([a, b]);
      } else if (a > hi + 1) {
        if (!inserted) {
          kept.push([lo, hi]);
          inserted = true;
        }
        kept.push([a, b]);
      } else {
        overlap += Math.max(0, Math.min(b, last) - Math.max(a, first) + 1);
        lo = Math.min(lo, a);
        hi = Math.max(hi, b);
      }
    }
    if (!inserted) kept.push([lo, hi]);
    this.ranges = kept;
    this.dupes += overlap;
    this.total += last - first + 1;
    return overlap;
  }

  has(seq: number): boolean {
    return this.ranges.some(([a, b]) => seq >= a && seq <= b);
  }

  report(): SeqReport {
    const gaps: Array<[number, number]> = [];
    for (let i = 1; i < this.ranges.length; i++) gaps.push([this.ranges[i - 1]![1] + 1, this.ranges[i]![0] - 1]);
    return {
      first: this.ranges[0]?.[0] ?? null,
      last: this.ranges[this.ranges.length - 1]?.[1] ?? null,
      received: this.total,
      duplicates: this.dupes,
      gaps,
      missing: gaps.reduce((n, [a, b]) => n + b - a + 1, 0),
    };
  }
}
