/**
 * Debounce and edge filtering shared by every backend: a change counts once the level has held
 * for the debounce time; then a watcher hears it if it is an edge of the kind asked for. The
 * timestamp is when the level changed, not when the debounce ended.
 */
import type { Edge, Level } from "./gpio.js";

export interface EdgeFilterOptions {
  edge: Edge;
  debounceMs: number;
  initial: Level;
  onEdge: (value: Level, ts: number) => void;
  now?: () => number;
}

export class EdgeFilter {
  private stable: Level;
  private pending: Level;
  private changedAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly now: () => number;
  /** Raw changes seen and edges reported: a chattering contact shows as many more of the first. */
  readonly counts = { changes: 0, edges: 0 };

  constructor(private readonly opts: EdgeFilterOptions) {
    this.stable = opts.initial;
    this.pending = opts.initial;
    this.now = opts.now ?? Date.now;
  }

  get level(): Level {
    return this.stable;
  }

  /** A level seen on the pin (logical). */
  input(level: Level): void {
    if (level === this.pending) return;
    this.counts.changes++;
    this.pending = level;
    this.changedAt = this.now();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.opts.debounceMs <= 0) this.settle();
    else this.timer = setTimeout(() => this.settle(), this.opts.debounceMs);
  }

  private settle(): void {
    this.timer = null;
    if (this.pending === this.stable) return; // bounced back: nothing happened
    this.stable = this.pending;
    const e = this.opts.edge;
    if (e === "both" || (e === "rising" && this.stable === 1) || (e === "falling" && this.stable === 0)) {
      this.counts.edges++;
      this.opts.onEdge(this.stable, this.changedAt);
    }
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
