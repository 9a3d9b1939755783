import type { Relay } from "../../src/control/relay.js";

/** A relay whose writes stay on the line until the test lets each one finish (a line that hangs). */
export class HeldRelay implements Relay {
  readonly describe = "held relay";
  on = false;
  /** Every write asked for, in order. */
  readonly writes: boolean[] = [];
  /** The most writes that were on the line at the same time. */
  maxInFlight = 0;
  private readonly waiting: Array<(error?: Error) => void> = [];

  set(on: boolean): Promise<void> {
    this.writes.push(on);
    return new Promise((resolve, reject) => {
      this.waiting.push((error) => {
        if (error) return reject(error);
        this.on = on;
        resolve();
      });
      this.maxInFlight = Math.max(this.maxInFlight, this.waiting.length);
    });
  }

  get pending(): number {
    return this.waiting.length;
  }

  /** Lets the oldest write on the line complete (or fail with `error`). */
  finishNext(error?: Error): void {
    const finish = this.waiting.shift();
    if (!finish) throw new Error("no write in flight");
    finish(error);
  }
}
