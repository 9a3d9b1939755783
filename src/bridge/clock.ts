/**
 * A board's monotonic clock mapped to UTC (docs/firmware-bridge.md, section 6). Each exchange
 * gives t1 (gateway UTC at send), t2 and t3 (board clock at receipt and at reply), t4 (gateway
 * UTC at receipt), all in microseconds. The samples with the least round-trip delay are the
 * ones whose offset is least spoiled by an asymmetric path; the offset is fitted as a line over
 * board time, so a crystal's drift is followed.
 */

export interface TimeSample {
  t1: number;
  t2: number;
  t3: number;
  t4: number;
}

export interface OffsetDelay {
  /** θ = board clock − UTC, µs. */
  offset: number;
  /** δ = time on the wire, both ways, µs. */
  delay: number;
}

export function offsetDelay(s: TimeSample): OffsetDelay {
  return { offset: (s.t2 - s.t1 + (s.t3 - s.t4)) / 2, delay: s.t4 - s.t1 - (s.t3 - s.t2) };
}

export interface ClockEstimate {
  /** θ now (at the latest sample's board time), µs. */
  offsetUs: number;
  /** How much faster the board's clock runs than UTC, in parts per million. */
  driftPpm: number;
  lastDelayUs: number;
  minDelayUs: number;
  samples: number;
}

export interface BoardClockOptions {
  /** Samples kept (the newest). Default 16: with the default 60 s exchange, a quarter of an hour. */
  maxSamples?: number;
  /** Largest drift believed; a fit beyond it (noise over a short span) is clamped. Default 1000 ppm. */
  maxDriftPpm?: number;
  /** Shortest span of board time over which a slope is fitted, µs. Default 30 s. */
  minSpanUs?: number;
}

interface Kept extends OffsetDelay {
  /** Board time of the sample: the midpoint of t2 and t3. */
  at: number;
}

export class BoardClock {
  private readonly samples: Kept[] = [];
  private readonly maxSamples: number;
  private readonly maxDrift: number;
  private readonly minSpan: number;
  private lastDelay = 0;
  /** θ(t) = a + b · (t − t0) */
  private fit: { a: number; b: number; t0: number } | undefined;

  constructor(options: BoardClockOptions = {}) {
    this.maxSamples = Math.max(2, options.maxSamples ?? 16);
    this.maxDrift = (options.maxDriftPpm ?? 1000) * 1e-6;
    this.minSpan = options.minSpanUs ?? 30e6;
  }

  /** Adds an exchange; an impossible one (reply before request, a negative delay) is refused as an error value. */
  add(s: TimeSample): OffsetDelay | { error: string } {
    if (![s.t1, s.t2, s.t3, s.t4].every(Number.isFinite)) return { error: "time sample with a non-finite timestamp" };
    if (s.t3 < s.t2) return { error: `time reply with t3 ${s.t3} before t2 ${s.t2}` };
    const od = offsetDelay(s);
    if (od.delay < 0) return { error: `time sample with a negative delay (${od.delay} µs): a clock stepped` };
    this.samples.push({ ...od, at: (s.t2 + s.t3) / 2 });
    if (this.samples.length > this.maxSamples) this.samples.shift();
    this.lastDelay = od.delay;
    this.refit();
    return od;
  }

  /** UTC (µs since 1970) of a board time (µs since its boot); undefined before the first sample. */
  toUtc(boardUs: number): number | undefined {
    const f = this.fit;
    if (!f) return undefined;
    return boardUs - (f.a + f.b * (boardUs - f.t0));
  }

  estimate(): ClockEstimate | undefined {
    const f = this.fit;
    if (!f) return undefined;
    const last = this.samples[this.samples.length - 1]!;
    return {
      offsetUs: f.a + f.b * (last.at - f.t0),
      driftPpm: f.b * 1e6,
      lastDelayUs: this.lastDelay,
      minDelayUs: Math.min(...this.samples.map((k) => k.delay)),
      samples: this.samples.length,
    };
  }

  /** Least squares over the best quarter of the samples by delay (at least three). */
  private refit(): void {
    const byDelay = [...this.samples].sort((x, y) => x.delay - y.delay);
    const best = byDelay.slice(0, Math.max(3, Math.ceil(byDelay.length / 4)));
    const t0 = best.reduce((s, k) => s + k.at, 0) / best.length;
    const mean = best.reduce((s, k) => s + k.offset, 0) / best.length;
    let sxx = 0;
    let sxy = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for (const k of best) {
      sxx += (k.at - t0) ** 2;
      sxy += (k.at - t0) * (k.offset - mean);
      lo = Math.min(lo, k.at);
      hi = Math.max(hi, k.at);
    }
    if (best.length < 2 || hi - lo < this.minSpan || sxx === 0) {
      // Too short a span for a slope: the offset of the best sample, and the slope already known.
      const b = this.fit?.b ?? 0;
      this.fit = { a: byDelay[0]!.offset, b, t0: byDelay[0]!.at };
      return;
    }
    const b = Math.max(-this.maxDrift, Math.min(this.maxDrift, sxy / sxx));
    this.fit = { a: mean, b, t0 };
  }
}
