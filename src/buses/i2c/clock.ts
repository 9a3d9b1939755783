/**
 * The clock of a simulated bus, which the chips on it measure with. Tests use a ManualClock: nothing happens until the
 * test advances it, and a driver's wait advances it at once, so no test sleeps for real.
 */
import { sleepAtLeast } from "./bus.js";

export interface SimClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

/** Real time, for the demo and simulated sources in a running agent. */
export function realClock(): SimClock {
  return {
    now: () => performance.now(),
    sleep: sleepAtLeast,
  };
}

export class ManualClock implements SimClock {
  constructor(private t = 0) {}

  now(): number {
    return this.t;
  }

  advance(ms: number): void {
    this.t += ms;
  }

  /** A driver's wait: the time passes at once. */
  async sleep(ms: number): Promise<void> {
    this.t += ms;
  }
}
