/**
 * A simulated ROHM BH1750FVI (datasheet; Linux drivers/iio/light/bh1750.c): one-byte opcodes,
 * continuous and one-time modes, the measurement time register (MTreg) written as high and low
 * bits, and a 2-byte result. The part never refuses a read: before a measurement completes it
 * hands out whatever the data register holds (0 after power-on or reset), which is why the
 * driver must wait the integration time.
 */
import { type Environment, SimChip } from "./chip.js";

type Resolution = "high" | "high2" | "low";

// Opcode → resolution; maximum integration time at MTreg 69 (datasheet: H 180 ms, L 24 ms).
const CONTINUOUS: Record<number, Resolution> = { 0x10: "high", 0x11: "high2", 0x13: "low" };
const ONE_TIME: Record<number, Resolution> = { 0x20: "high", 0x21: "high2", 0x23: "low" };
const MAX_MS: Record<Resolution, number> = { high: 180, high2: 180, low: 24 };
const POWER_DOWN = 0x00;
const POWER_ON = 0x01;
const RESET = 0x07;
const MTREG_DEFAULT = 69;

export class SimBh1750 extends SimChip {
  readonly model = "BH1750";
  illuminance = 300;
  private poweredOn = false;
  private mtreg = MTREG_DEFAULT;
  private data = 0;
  private measuring: { resolution: Resolution; oneTime: boolean; endsAt: number; mtreg: number } | null = null;

  set(values: Partial<Environment>): void {
    if (values.illuminance !== undefined) this.illuminance = values.illuminance;
  }

  /** The MTreg the part holds now (tests check a replug resets it). */
  get measurementTime(): number {
    return this.mtreg;
  }

  protected powerOn(): void {
    this.poweredOn = false; // the part starts in power down
    this.mtreg = MTREG_DEFAULT;
    this.data = 0;
    this.measuring = null;
  }

  private counts(resolution: Resolution, mtreg: number): number {
    const c = this.illuminance * 1.2 * (mtreg / MTREG_DEFAULT) * (resolution === "high2" ? 2 : 1);
    return Math.min(0xffff, Math.max(0, Math.round(c)));
  }

  private settle(): void {
    const m = this.measuring;
    if (!m || this.fault === "never-ready") return;
    const now = this.now();
    if (now < m.endsAt) return;
    if (m.oneTime) {
      this.data = this.counts(m.resolution, m.mtreg);
      this.measuring = null;
      this.poweredOn = false; // one-time modes power down after the measurement
      return;
    }
    // Continuous: a new result at the end of every integration.
    const period = this.integrationMs(m.resolution, m.mtreg);
    this.data = this.counts(m.resolution, m.mtreg);
    const elapsed = Math.floor((now - m.endsAt) / period) + 1;
    m.endsAt += elapsed * period;
  }

  private integrationMs(resolution: Resolution, mtreg: number): number {
    return (MAX_MS[resolution] * mtreg) / MTREG_DEFAULT;
  }

  protected onWrite(bytes: number[]): boolean {
    this.settle();
    if (bytes.length !== 1) return false;
    const op = bytes[0]!;
    const now = this.now();
    if (op === POWER_DOWN) {
      this.poweredOn = false;
      this.measuring = null;
    } else if (op === POWER_ON) this.poweredOn = true;
    else if (op === RESET) {
      if (this.poweredOn) this.data = 0; // not accepted in power down
    } else if ((op & 0xf8) === 0x40) this.mtreg = ((op & 0x07) << 5) | (this.mtreg & 0x1f);
    else if ((op & 0xe0) === 0x60) this.mtreg = (this.mtreg & 0xe0) | (op & 0x1f);
    else if (CONTINUOUS[op] || ONE_TIME[op]) {
      const resolution = (CONTINUOUS[op] ?? ONE_TIME[op])!;
      this.poweredOn = true;
      this.measuring = { resolution, oneTime: ONE_TIME[op] !== undefined, endsAt: now + this.integrationMs(resolution, this.mtreg), mtreg: this.mtreg };
    } else return false;
    return true;
  }

  protected onRead(length: number): Buffer | null {
    this.settle();
    if (length < 1) return Buffer.alloc(0);
    return Buffer.from([(this.data >> 8) & 0xff, this.data & 0xff]);
  }
}
