// Sensirion SHT3x-DIS datasheet (devices.md): single shot without clock stretching, 6-byte
// reply of two CRC-protected words; T = −45 + 175·S/65535 °C, RH = 100·S/65535 %.
import type { I2cDevice } from "../../src/buses/i2c/bus.js";
import { decodeWords, readSerial, word16 } from "./sensirion-crc.js";
import { badValue, type I2cDriver, type I2cSensor, type SensorOptions, type SensorValue, value } from "./types.js";

export const SHT3X = {
  addresses: [0x44, 0x45],
  /** Command and wait (datasheet maximum measurement time, ms) per repeatability. */
  measure: {
    high: { command: 0x2400, waitMs: 15 },
    medium: { command: 0x240b, waitMs: 6 },
    low: { command: 0x2416, waitMs: 4 },
  },
  readSerial: 0x3780,
  readStatus: 0xf32d,
  clearStatus: 0x3041,
  commandWaitMs: 1,
} as const;

export function sht3xTemperature(word: number): number {
  return -45 + (175 * word) / 65535;
}

export function sht3xHumidity(word: number): number {
  return (100 * word) / 65535;
}

/** A measurement reply → values; a word whose CRC fails gives a null value, never a number. */
export function decodeSht3x(reply: Buffer, temperature = sht3xTemperature, humidity = sht3xHumidity): SensorValue[] {
  const [t, rh] = decodeWords(reply);
  return [
    t == null ? badValue("temperature", "bad", "CRC mismatch") : value("temperature", temperature(t), "ok"),
    rh == null ? badValue("humidity", "bad", "CRC mismatch") : value("humidity", humidity(rh), "ok"),
  ];
}

class Sht3x implements I2cSensor {
  private serial: string | null = null;

  constructor(
    private readonly device: I2cDevice,
    private readonly options: SensorOptions,
  ) {}

  async init(): Promise<void> {
    this.serial = await readSerial(this.device, word16(SHT3X.readSerial), 2, SHT3X.commandWaitMs);
  }

  async read(): Promise<SensorValue[]> {
    const m = SHT3X.measure[this.options.precision ?? "high"];
    const reply = await this.device.run((io) => io.writeRead(word16(m.command), 6, m.waitMs));
    return decodeSht3x(reply);
  }

  async shutdown(): Promise<void> {}

  info(): Record<string, string> {
    return this.serial ? { serial: this.serial } : {};
  }
}

export const sht3x: I2cDriver = {
  id: "sht3x",
  vendor: "Sensirion",
  model: "SHT3x",
  description: "Temperature and relative humidity (SHT30, SHT31, SHT35)",
  source: "Sensirion SHT3x-DIS datasheet",
  addresses: SHT3X.addresses,
  quantities: ["temperature", "humidity"],
  options: ["precision"],
  readyWithinMs: 0,
  create: (device, options = {}) => new Sht3x(device, options),
};
