/**
 * A simulated Sensirion SHT4x (SHT4x datasheet): one-byte commands, measurements at three
 * precisions, heater pulses, serial number, soft reset. While it measures it acknowledges
 * nothing; a read with no result pending is not acknowledged.
 */
import { type Environment, SimSensirionChip, clampWord, sensirionTemperatureWord } from "./chip.js";

// Measurement time, datasheet maximum (ms): high, medium, low precision; heater pulses of 1 s
// and 0.1 s end with a high-precision measurement.
const MEASURE: Record<number, number> = {
  0xfd: 8.3,
  0xf6: 4.5,
  0xe0: 1.6,
  0x39: 1100,
  0x32: 110,
  0x2f: 1100,
  0x24: 110,
  0x1e: 1100,
  0x15: 110,
};
const SERIAL = 0x89;
const SOFT_RESET = 0x94;
const SOFT_RESET_MS = 1;

export class SimSht4x extends SimSensirionChip {
  readonly model = "SHT4x";
  temperature = 22;
  humidity = 45;
  serial = 0x0f1e2d3c;

  set(values: Partial<Environment>): void {
    if (values.temperature !== undefined) this.temperature = values.temperature;
    if (values.humidity !== undefined) this.humidity = values.humidity;
  }

  protected powerOn(): void {
    this.busyUntil = 0;
    this.pending = null;
  }

  protected onWrite(bytes: number[]): boolean {
    if (this.busy() || bytes.length !== 1) return false;
    const cmd = bytes[0]!;
    const ms = MEASURE[cmd];
    if (ms !== undefined) {
      this.busyUntil = this.now() + ms;
      // RH = −6 + 125·S/65535: the sensor's range reaches past 0–100 %, the driver clamps.
      this.pending = this.words([
        sensirionTemperatureWord(this.temperature),
        clampWord(Math.round(((this.humidity + 6) / 125) * 65535)),
      ]);
      return true;
    }
    if (cmd === SERIAL) {
      this.pending = this.words([this.serial >>> 16, this.serial & 0xffff]);
      return true;
    }
    if (cmd === SOFT_RESET) {
      this.powerOn();
      this.busyUntil = this.now() + SOFT_RESET_MS;
      return true;
    }
    return false;
  }
}
