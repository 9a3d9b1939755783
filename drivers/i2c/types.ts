/**
 * I²C sensor drivers: what a driver is (registry data plus a factory) and what it reports.
 * A driver is handed an I2cDevice (one address on a queued bus) and never opens anything.
 */
import type { I2cDevice } from "../../src/buses/i2c/bus.js";

export type Quantity = "temperature" | "humidity" | "co2" | "pressure" | "illuminance";
export const QUANTITIES: readonly Quantity[] = ["temperature", "humidity", "co2", "pressure", "illuminance"];

export const UNITS: Readonly<Record<Quantity, string>> = {
  temperature: "°C",
  humidity: "%",
  co2: "ppm",
  pressure: "hPa",
  illuminance: "lx",
};

/** Decimals a reading keeps: about the sensors' resolution, no float noise. */
export const DECIMALS: Readonly<Record<Quantity, number>> = {
  temperature: 2,
  humidity: 2,
  co2: 0,
  pressure: 2,
  illuminance: 1,
};

export interface SensorValue {
  quantity: Quantity;
  unit: string;
  /** null when the value could not be trusted (a CRC mismatch, a skipped conversion): never a wrong number. */
  value: number | null;
  /** Sensirion words carry a CRC: "ok" or "bad". Chips without one: "none". */
  crc: "ok" | "bad" | "none";
  /** Why value is null. */
  note?: string;
}

/**
 * crc: a whole reply (not just one value) failed its CRC; not-ready: no new result yet;
 * identity: the chip at the address is not the part configured; reset: the chip lost its
 * settings (power loss, replug) since init — initialise it again.
 */
export type SensorErrorKind = "crc" | "not-ready" | "identity" | "reset";

export class SensorError extends Error {
  constructor(
    readonly kind: SensorErrorKind,
    message: string,
  ) {
    super(message);
    this.name = "SensorError";
  }
}

export interface I2cSensor {
  /** Brings the chip into its working state (reset, calibration, periodic measurement). */
  init(): Promise<void>;
  /** One set of values. Throws I2cError (bus) or SensorError (the chip's answer). */
  read(): Promise<SensorValue[]>;
  /** Leaves the chip idle (SCD4x: stops periodic measurement). */
  shutdown(): Promise<void>;
  /** What init learned: serial number, chip id. */
  info(): Record<string, string>;
}

export type SensorOption = "precision" | "mtreg" | "resolution";

export interface SensorOptions {
  /** SHT3x/SHT4x: repeatability/precision of a measurement (default high). */
  precision?: "high" | "medium" | "low";
  /** BH1750: measurement time register, 31–254 (default 69). */
  mtreg?: number;
  /** BH1750: high (1 lx), high2 (0.5 lx), low (4 lx); default high. */
  resolution?: "high" | "high2" | "low";
}

export interface I2cDriver {
  /** Registry key used in configs and on the CLI: `sht4x`. */
  id: string;
  vendor: string;
  /** `SHT4x`, `SCD4x (SCD40, SCD41)` */
  model: string;
  description: string;
  /** Where the facts come from (datasheet), one short line. */
  source: string;
  /** Addresses the part can be strapped to; the first is the default. */
  addresses: readonly number[];
  quantities: readonly Quantity[];
  /** Options a config may set for this driver. */
  options: readonly SensorOption[];
  /** How long a "not ready" is normal since the last value or init (SCD4x: a result every 5 s). */
  readyWithinMs: number;
  /** What a scan can add after probing (the BME280's chip id). */
  identify?(device: I2cDevice): Promise<string>;
  create(device: I2cDevice, options?: SensorOptions): I2cSensor;
}

/** `0x44` (drivers import only interfaces from the buses, so they keep their own). */
export function hex(address: number): string {
  return `0x${address.toString(16).padStart(2, "0")}`;
}

/** Keeps the decimals a quantity deserves. */
export function tidy(quantity: Quantity, value: number): number {
  const f = 10 ** DECIMALS[quantity];
  return Math.round(value * f) / f;
}

/** The point name of a quantity: `temperature`, or `<prefix>_temperature`. */
export function pointName(quantity: Quantity, prefix?: string): string {
  return prefix ? `${prefix}_${quantity}` : quantity;
}

export function value(quantity: Quantity, v: number, crc: SensorValue["crc"]): SensorValue {
  return { quantity, unit: UNITS[quantity], value: tidy(quantity, v), crc };
}

export function badValue(quantity: Quantity, crc: SensorValue["crc"], note: string): SensorValue {
  return { quantity, unit: UNITS[quantity], value: null, crc, note };
}
