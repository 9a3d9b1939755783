// Sensirion SHT4x datasheet (devices.md): one-byte commands, 6-byte reply of two CRC-protected
// words; T = −45 + 175·S/65535 °C, RH = −6 + 125·S/65535 % clamped to 0–100. Waits as in
// Sensirion's embedded-i2c-sht4x driver.
import type { I2cDevice } from "../../src/buses/i2c/bus.js";
import { readSerial } from "./sensirion-crc.js";
import { decodeSht3x, sht3xTemperature } from "./sht3x.js";
import { type I2cDriver, type I2cSensor, type SensorOptions, type SensorValue } from "./types.js";

export const SHT4X = {
  addresses: [0x44, 0x45],
  measure: {
    high: { command: 0xfd, waitMs: 10 },
    medium: { command: 0xf6, waitMs: 5 },
    low: { command: 0xe0, waitMs: 2 },
  },
  readSerial: 0x89,
  softReset: 0x94,
  softResetMs: 10,
  commandWaitMs: 1,
} as const;

export const sht4xTemperature = sht3xTemperature;

/** Unclamped, as the datasheet formula gives it (the vectors check this). */
export function sht4xHumidityRaw(word: number): number {
  return -6 + (125 * word) / 65535;
}

export function sht4xHumidity(word: number): number {
  return Math.min(100, Math.max(0, sht4xHumidityRaw(word)));
}

export function decodeSht4x(reply: Buffer): SensorValue[] {
  return decodeSht3x(reply, sht4xTemperature, sht4xHumidity);
}

class Sht4x implements I2cSensor {
  private serial: string | null = null;

  constructor(
    private readonly device: I2cDevice,
    private readonly options: SensorOptions,
  ) {}

  async init(): Promise<void> {
    await this.device.run(async (io) => {
      await io.write([SHT4X.softReset]);
      await io.delay(SHT4X.softResetMs);
    });
    this.serial = await readSerial(this.device, [SHT4X.readSerial], 2, SHT4X.commandWaitMs);
  }

  async read(): Promise<SensorValue[]> {
    const m = SHT4X.measure[this.options.precision ?? "high"];
    const reply = await this.device.run((io) => io.writeRead([m.command], 6, m.waitMs));
    return decodeSht4x(reply);
  }

  async shutdown(): Promise<void> {}

  info(): Record<string, string> {
    return this.serial ? { serial: this.serial } : {};
  }
}

export const sht4x: I2cDriver = {
  id: "sht4x",
  vendor: "Sensirion",
  model: "SHT4x",
  description: "Temperature and relative humidity (SHT40, SHT41, SHT45)",
  source: "Sensirion SHT4x datasheet",
  addresses: SHT4X.addresses,
  quantities: ["temperature", "humidity"],
  options: ["precision"],
  readyWithinMs: 0,
  create: (device, options = {}) => new Sht4x(device, options),
};
