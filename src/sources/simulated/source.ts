/**
 * A source that invents plausible values (sine, ramp, random walk, square, constant) so the spine
 * runs before any hardware driver exists, and the demo runs with no hardware at all.
 */
import type { SimulatedPointConfig, SimulatedSourceConfig } from "./type.js";
import type { Reading } from "../../model/reading.js";
import type { Source } from "../source.js";

export function waveValue(p: SimulatedPointConfig, t: number, previous: number | undefined, random: () => number): number {
  const span = p.max - p.min;
  const phase = (((t % p.period) + p.period) % p.period) / p.period;
  switch (p.wave) {
    case "sine":
      return p.min + (span * (1 + Math.sin(2 * Math.PI * phase))) / 2;
    case "ramp":
      return p.min + span * phase;
    case "square":
      return phase < 0.5 ? p.max : p.min;
    case "constant":
      return p.min;
    case "random-walk": {
      const step = p.step ?? span / 20;
      const start = previous ?? p.min + span / 2;
      return Math.min(p.max, Math.max(p.min, start + (random() * 2 - 1) * step));
    }
  }
}

export class SimulatedSource implements Source {
  readonly name: string;
  readonly interval: number;
  private readonly last = new Map<string, number>();

  constructor(
    private readonly cfg: SimulatedSourceConfig,
    private readonly random: () => number = Math.random,
  ) {
    this.name = cfg.name;
    this.interval = cfg.interval;
  }

  async poll(tickTs: number): Promise<Reading[]> {
    return this.cfg.points.map((p) => {
      const raw = waveValue(p, tickTs, this.last.get(p.name), this.random);
      this.last.set(p.name, raw);
      const f = 10 ** p.decimals;
      return { point: `${this.name}/${p.name}`, ts: tickTs, value: Math.round(raw * f) / f, quality: "good" as const };
    });
  }
}

/** The agent's factory for `type: simulated` (SourceModule). */
export function create(cfg: SimulatedSourceConfig): Source[] {
  return [new SimulatedSource(cfg)];
}
