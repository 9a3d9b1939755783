/**
 * A simulated Sensirion SHT3x (SHT3x-DIS datasheet): single-shot measurements without clock
 * stretching, status register, serial number, soft reset. While it measures it acknowledges
 * nothing, and a read with no result pending is not acknowledged either.
 */
import { type Environment, SimSensirionChip, clampWord, sensirionTemperatureWord } from "./chip.js";

// Single shot, no clock stretching: measurement time (datasheet maximum, ms) per repeatability.
const MEASURE: Record<number, number> = { 0x2400: 15, 0x240b: 6, 0x2416: 4 };
const STATUS = 0xf32d;
const CLEAR_STATUS = 0x3041;
const SERIAL = 0x3780;
const SOFT_RESET = 0x30a2;
const SOFT_RESET_MS = 1.5;
// Status bits: alert pending (15) and system reset detected (4) are set at power-on.
const STATUS_AT_POWER_ON = 0x8010;
const STATUS_COMMAND_FAILED = 0x0002;

export class SimSht3x extends SimSensirionChip {
  readonly model = "SHT3x";
  temperature = 22;
  humidity = 45;
  serial = 0x1a2b3c4d;
  private status = STATUS_AT_POWER_ON;

  set(values: Partial<Environment>): void {
    if (values.temperature !== undefined) this.temperature = values.temperature;
    if (values.humidity !== undefined) this.humidity = values.humidity;
  }

  protected powerOn(): void {
    this.status = STATUS_AT_POWER_ON;
    this.busyUntil = 0;
    this.pending = null;
  }

  protected onWrite(bytes: number[]): boolean {
    if (this.busy()) return false;
    if (bytes.length !== 2) {
      this.status |= STATUS_COMMAND_FAILED;
      return true;
    }
    const cmd = (bytes[0]! << 8) | bytes[1]!;
    const ms = MEASURE[cmd];
    if (ms !== undefined) {
      this.busyUntil = this.now() + ms;
      this.pending = this.words([
        sensirionTemperatureWord(this.temperature),
        clampWord(Math.round((this.humidity / 100) * 65535)),
      ]);
    } else if (cmd === STATUS) this.pending = this.words([this.status]);
    else if (cmd === CLEAR_STATUS) this.status &= ~0x8c10;
    else if (cmd === SERIAL) this.pending = this.words([this.serial >>> 16, this.serial & 0xffff]);
    else if (cmd === SOFT_RESET) {
      this.powerOn();
      this.busyUntil = this.now() + SOFT_RESET_MS;
      return true;
    } else {
      // The part acknowledges an unknown command and flags it in the status register.
      this.status |= STATUS_COMMAND_FAILED;
      return true;
    }
    this.status &= ~STATUS_COMMAND_FAILED;
    return true;
  }
}
