// ROHM BH1750FVI datasheet (devices.md; Linux drivers/iio/light/bh1750.c): one-time
// measurements, so every reading is a fresh one, and MTreg written before each (a replugged
// part forgets it). lux = counts / 1.2 × 69 / MTreg, halved in H-resolution mode 2.
import type { I2cDevice } from "../../src/buses/i2c/bus.js";
import { type I2cDriver, type I2cSensor, type SensorOptions, type SensorValue, hex, value } from "./types.js";

export const BH1750 = {
  addresses: [0x23, 0x5c],
  powerOn: 0x01,
  reset: 0x07,
  /** One-time opcode and maximum integration time at MTreg 69, ms, per resolution. */
  oneTime: {
    high: { opcode: 0x20, maxMs: 180 },
    high2: { opcode: 0x21, maxMs: 180 },
    low: { opcode: 0x23, maxMs: 24 },
  },
  mtreg: { default: 69, min: 31, max: 254 },
  countsPerLux: 1.2,
} as const;

export type Bh1750Resolution = keyof typeof BH1750.oneTime;

export function bh1750Lux(counts: number, mtreg: number = BH1750.mtreg.default, resolution: Bh1750Resolution = "high"): number {
  return (counts / BH1750.countsPerLux) * (BH1750.mtreg.default / mtreg) / (resolution === "high2" ? 2 : 1);
}

/** Integration wait, ms: the maximum time scales with MTreg. */
export function bh1750WaitMs(mtreg: number, resolution: Bh1750Resolution): number {
  return Math.ceil((BH1750.oneTime[resolution].maxMs * mtreg) / BH1750.mtreg.default);
}

class Bh1750 implements I2cSensor {
  private readonly mtreg: number;
  private readonly resolution: Bh1750Resolution;

  constructor(
    private readonly device: I2cDevice,
    options: SensorOptions,
  ) {
    this.mtreg = options.mtreg ?? BH1750.mtreg.default;
    this.resolution = options.resolution ?? "high";
    if (this.mtreg < BH1750.mtreg.min || this.mtreg > BH1750.mtreg.max || !Number.isInteger(this.mtreg)) {
      throw new RangeError(`${device.bus} ${hex(device.address)}: MTreg ${this.mtreg} outside ${BH1750.mtreg.min}–${BH1750.mtreg.max}`);
    }
  }

  async init(): Promise<void> {
    await this.device.run(async (io) => {
      await io.write([BH1750.powerOn]);
      await io.write([BH1750.reset]);
    });
  }

  async read(): Promise<SensorValue[]> {
    const mode = BH1750.oneTime[this.resolution];
    const counts = await this.device.run(async (io) => {
      await io.write([0x40 | (this.mtreg >> 5)]);
      await io.write([0x60 | (this.mtreg & 0x1f)]);
      await io.write([mode.opcode]);
      await io.delay(bh1750WaitMs(this.mtreg, this.resolution));
      return (await io.read(2)).readUInt16BE(0);
    });
    return [value("illuminance", bh1750Lux(counts, this.mtreg, this.resolution), "none")];
  }

  async shutdown(): Promise<void> {}

  info(): Record<string, string> {
    return { mtreg: String(this.mtreg), resolution: this.resolution };
  }
}

export const bh1750: I2cDriver = {
  id: "bh1750",
  vendor: "ROHM",
  model: "BH1750",
  description: "Ambient light (illuminance)",
  source: "ROHM BH1750FVI datasheet",
  addresses: BH1750.addresses,
  quantities: ["illuminance"],
  options: ["mtreg", "resolution"],
  readyWithinMs: 0,
  create: (device, options = {}) => new Bh1750(device, options),
};
