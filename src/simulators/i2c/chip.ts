/**
 * What every simulated chip shares: being present or not, faults a test can inject, and the
 * I²C handshake (a transfer is acknowledged or not). Subclasses model the registers and
 * commands of one part.
 *
 * Faults:
 * - absent: nothing is acknowledged, the chip keeps its state (a loose SDA wire);
 * - bad-crc: the CRC of word `badCrcWord` of every reply is flipped (Sensirion parts);
 * - never-ready: a measurement never completes (SCD4x data-ready stays 0, BME280 stays measuring);
 * - unplug()/plug(): absent, then present again after a power-on reset (the state is lost).
 */
import { encodeWords } from "../../../drivers/i2c/sensirion-crc.js";
import type { SimClock } from "../../buses/i2c/clock.js";
import type { I2cTarget } from "../../buses/i2c/sim-bus.js";

export type ChipFault = "none" | "absent" | "bad-crc" | "never-ready";

/** The physical values around a chip (°C, %RH, ppm, hPa, lx); each chip takes what it measures. */
export interface Environment {
  temperature: number;
  humidity: number;
  co2: number;
  pressure: number;
  illuminance: number;
}

export abstract class SimChip implements I2cTarget {
  fault: ChipFault = "none";
  badCrcWord = 0;
  private powered = true;

  constructor(
    readonly address: number,
    protected readonly clock: SimClock,
  ) {}

  /** The part's name: `SHT4x`. */
  abstract readonly model: string;

  /** Sets the physical values the chip will measure (those it does not measure are ignored). */
  abstract set(values: Partial<Environment>): void;

  get present(): boolean {
    return this.powered && this.fault !== "absent";
  }

  unplug(): void {
    this.powered = false;
  }

  plug(): void {
    if (this.powered) return;
    this.powered = true;
    this.powerOn();
  }

  /** Does the chip acknowledge its address right now (a scan's quick write)? */
  acknowledges(): boolean {
    return this.present && !this.busy();
  }

  /** A write transaction; false is a NACK. */
  write(bytes: Uint8Array): boolean {
    if (!this.present) return false;
    return this.onWrite([...bytes]);
  }

  /** A read transaction; null is a NACK. */
  read(length: number): Buffer | null {
    if (!this.present) return null;
    const data = this.onRead(length);
    if (data === null) return null;
    const out = Buffer.alloc(length, 0xff); // a read past the reply gets idle-high bytes
    data.copy(out, 0, 0, Math.min(length, data.length));
    return out;
  }

  protected now(): number {
    return this.clock.now();
  }

  /** Words with their CRCs, one of them damaged under the bad-crc fault. */
  protected words(words: readonly number[]): Buffer {
    const out = encodeWords(words);
    if (this.fault === "bad-crc" && this.badCrcWord < words.length) out[this.badCrcWord * 3 + 2] ^= 0xff;
    return out;
  }

  /** The chip is executing something and ignores its address (NACK). */
  protected busy(): boolean {
    return false;
  }

  protected abstract powerOn(): void;
  protected abstract onWrite(bytes: number[]): boolean;
  protected abstract onRead(length: number): Buffer | null;
}

/**
 * A Sensirion part (SHT3x, SHT4x, SCD4x): after a command it is busy for the execution time
 * (no acknowledge), then hands over the reply it prepared once; a read with none is a NACK.
 */
export abstract class SimSensirionChip extends SimChip {
  protected busyUntil = 0;
  protected pending: Buffer | null = null;

  protected override busy(): boolean {
    return this.now() < this.busyUntil;
  }

  protected onRead(): Buffer | null {
    if (this.busy() || !this.pending) return null;
    const reply = this.pending;
    this.pending = null;
    return reply;
  }
}

/** °C → the 16-bit temperature word of Sensirion parts: T = −45 + 175·S/65535. */
export function sensirionTemperatureWord(celsius: number): number {
  return clampWord(Math.round(((celsius + 45) / 175) * 65535));
}

export function clampWord(n: number): number {
  return Math.min(0xffff, Math.max(0, n));
}
