// Sensirion SCD4x datasheet (devices.md): 16-bit commands; replies of CRC-protected words.
// Periodic measurement is started once and gives a new result every 5 s; data is read only
// when get_data_ready_status says so, because read_measurement with no new data is not
// acknowledged. stop_periodic_measurement takes 500 ms, during which the part answers nothing.
import type { I2cDevice } from "../../src/buses/i2c/bus.js";
import { decodeWords, readSerial, word16 } from "./sensirion-crc.js";
import { sht3xHumidity, sht3xTemperature } from "./sht3x.js";
import { badValue, hex, type I2cDriver, type I2cSensor, SensorError, type SensorValue, value } from "./types.js";

export const SCD4X = {
  addresses: [0x62],
  startPeriodic: 0x21b1,
  readMeasurement: { command: 0xec05, waitMs: 1 },
  dataReady: { command: 0xe4b8, waitMs: 1 },
  stopPeriodic: { command: 0x3f86, waitMs: 500 },
  serial: { command: 0x3682, waitMs: 1 },
  periodMs: 5000,
  /** get_data_ready_status: data is ready when any of bits 0–10 is set. */
  readyMask: 0x07ff,
} as const;

/** The same conversions as the SHT3x (SCD4x datasheet). */
export const scd4xTemperature = sht3xTemperature;
export const scd4xHumidity = sht3xHumidity;

/** A read_measurement reply (9 bytes) → CO₂, temperature, humidity; a bad word gives null. */
export function decodeScd4x(reply: Buffer): SensorValue[] {
  const [co2, t, rh] = decodeWords(reply);
  const bad = (q: "co2" | "temperature" | "humidity") => badValue(q, "bad", "CRC mismatch");
  return [
    co2 == null ? bad("co2") : value("co2", co2, "ok"),
    t == null ? bad("temperature") : value("temperature", scd4xTemperature(t), "ok"),
    rh == null ? bad("humidity") : value("humidity", scd4xHumidity(rh), "ok"),
  ];
}

export function scd4xReady(status: number): boolean {
  return (status & SCD4X.readyMask) !== 0;
}

class Scd4x implements I2cSensor {
  private serial: string | null = null;

  constructor(private readonly device: I2cDevice) {}

  private where(): string {
    return `${this.device.bus} ${hex(this.device.address)}`;
  }

  async init(): Promise<void> {
    // The part may still be measuring from before a restart: configuration and the serial
    // number are only answered when idle.
    await this.device.run((io) => io.write(word16(SCD4X.stopPeriodic.command)));
    await this.device.delay(SCD4X.stopPeriodic.waitMs);
    this.serial = await readSerial(this.device, word16(SCD4X.serial.command), 3, SCD4X.serial.waitMs);
    await this.device.run((io) => io.write(word16(SCD4X.startPeriodic)));
  }

  async read(): Promise<SensorValue[]> {
    return this.device.run(async (io) => {
      const [status] = decodeWords(await io.writeRead(word16(SCD4X.dataReady.command), 3, SCD4X.dataReady.waitMs));
      if (status == null) throw new SensorError("crc", `${this.where()}: CRC mismatch in the data-ready status`);
      if (!scd4xReady(status)) throw new SensorError("not-ready", `${this.where()}: no new measurement yet`);
      return decodeScd4x(await io.writeRead(word16(SCD4X.readMeasurement.command), 9, SCD4X.readMeasurement.waitMs));
    });
  }

  async shutdown(): Promise<void> {
    await this.device.run((io) => io.write(word16(SCD4X.stopPeriodic.command)));
  }

  info(): Record<string, string> {
    return this.serial ? { serial: this.serial } : {};
  }
}

export const scd4x: I2cDriver = {
  id: "scd4x",
  vendor: "Sensirion",
  model: "SCD4x (SCD40, SCD41)",
  description: "CO₂ (photoacoustic NDIR), with temperature and relative humidity",
  source: "Sensirion SCD4x datasheet",
  addresses: SCD4X.addresses,
  quantities: ["co2", "temperature", "humidity"],
  options: [],
  // More than two periods: one late result is normal, two in a row are not.
  readyWithinMs: 2.5 * SCD4X.periodMs,
  create: (device) => new Scd4x(device),
};
