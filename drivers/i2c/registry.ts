/** Every I²C sensor driver the agent knows, keyed by the id configs and the CLI use. */
import { bh1750 } from "./bh1750.js";
import { bme280 } from "./bme280.js";
import { scd4x } from "./scd4x.js";
import { sht3x } from "./sht3x.js";
import { sht4x } from "./sht4x.js";
import { hex, type I2cDriver, type Quantity } from "./types.js";

// Keys are spelled out (not derived from the ids) so the registry test can catch a mismatch.
const DRIVERS: Readonly<Record<string, I2cDriver>> = { sht3x, sht4x, scd4x, bme280, bh1750 };

export function listDrivers(): I2cDriver[] {
  return Object.values(DRIVERS);
}

export function getDriver(id: string): I2cDriver | undefined {
  return Object.hasOwn(DRIVERS, id) ? DRIVERS[id] : undefined;
}

export function driverIds(): string[] {
  return Object.keys(DRIVERS);
}

/** `sht3x, sht4x, scd4x (SCD40, SCD41), bme280, bh1750` for error messages. */
export function knownDrivers(): string {
  return listDrivers()
    .map((d) => (d.model.includes("(") ? `${d.id} ${d.model.slice(d.model.indexOf("("))}` : d.id))
    .join(", ");
}

/** `unknown driver 'x'; known: …` or null. */
export function checkDriver(id: string): string | null {
  return getDriver(id) ? null : `unknown driver '${id}'; known: ${knownDrivers()}`;
}

/** null, or why `address` is not one of the driver's. */
export function checkAddress(driver: I2cDriver, address: number): string | null {
  if (driver.addresses.includes(address)) return null;
  return `${hex(address)} is not an address of ${driver.id} (allowed: ${driver.addresses.map(hex).join(", ")})`;
}

/** The quantities a sensor entry publishes: the driver's, or the `only` subset. */
export function sensorQuantities(driver: I2cDriver, only?: readonly Quantity[]): Quantity[] {
  return driver.quantities.filter((q) => !only || only.includes(q));
}

/** The drivers whose part can sit at an address, for a scan. */
export function candidates(address: number): I2cDriver[] {
  return listDrivers().filter((d) => d.addresses.includes(address));
}

/** What a scan can say about an address before probing: `SHT3x or SHT4x`, `SCD4x`; null if unknown. */
export function describeAddress(address: number): string | null {
  const models = candidates(address).map((d) => d.model.replace(/ \(.*\)$/, ""));
  return models.length ? models.join(" or ") : null;
}
