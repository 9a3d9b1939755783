/**
 * A PIR motion sensor in a meeting room, on a simulated GPIO pin: a device model, so it lives
 * with the simulators; the pin it drives is the simulated backend's (src/buses/gpio/).
 */
import type { Level } from "../../buses/gpio/gpio.js";
import type { SimGpioBackend } from "../../buses/gpio/sim-backend.js";

/**
 * Someone using a meeting room, as a PIR sees them: meetings of a few minutes with a motion
 * pulse every few seconds, then an empty room. For the demo; timers are unref'd.
 */
export class SimPresence {
  private timer: NodeJS.Timeout | null = null;
  private occupiedUntil = 0;
  private freeUntil = 0;

  constructor(
    private readonly backend: SimGpioBackend,
    private readonly pin: number,
    private readonly random: () => number = Math.random,
    private readonly activeLow = false,
  ) {}

  start(): void {
    this.freeUntil = Date.now() + 20_000;
    this.occupiedUntil = this.freeUntil + 60_000 + this.random() * 180_000;
    this.step();
  }

  private set(present: boolean): void {
    this.backend.setLevel(this.pin, (present !== this.activeLow ? 1 : 0) as Level);
  }

  private later(ms: number, fn: () => void): void {
    this.timer = setTimeout(fn, ms);
    this.timer.unref();
  }

  private step(): void {
    const now = Date.now();
    if (now >= this.occupiedUntil) {
      // Next cycle: empty for 1–3 min, then a meeting of 1–4 min.
      this.freeUntil = now + 60_000 + this.random() * 120_000;
      this.occupiedUntil = this.freeUntil + 60_000 + this.random() * 180_000;
    }
    if (now < this.freeUntil) {
      this.set(false);
      this.later(this.freeUntil - now, () => this.step());
      return;
    }
    // A pulse of 2–5 s (the module's hold time), then quiet for 3–20 s.
    this.set(true);
    this.later(2000 + this.random() * 3000, () => {
      this.set(false);
      this.later(3000 + this.random() * 17_000, () => this.step());
    });
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
