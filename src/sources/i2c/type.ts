/** `type: i2c`: the sensors of one room on one I²C bus ("Sala Smart"). */
import { z } from "zod";
import { checkAddress, checkDriver, getDriver, knownDrivers, sensorQuantities } from "../../../drivers/i2c/registry.js";
import { pointName, QUANTITIES } from "../../../drivers/i2c/types.js";
import { name, type Path, type Report } from "../../config/fields.js";
import type { SourceFacts } from "../../config/source-type.js";
import { DAY, duration, SECOND } from "../../config/units.js";
import type { SourceType } from "../type.js";

const ADDRESS_ERROR = 'expected a 7-bit I²C address 0x03–0x77, like 0x44 or "0x44"';

const addressNumber = () => z.int({ error: ADDRESS_ERROR }).min(0x03, { error: ADDRESS_ERROR }).max(0x77, { error: ADDRESS_ERROR });

const i2cAddress = z
  .union(
    [
      addressNumber(),
      z
        .string()
        .regex(/^0x[0-9a-fA-F]{1,2}$/, { error: ADDRESS_ERROR })
        .transform((text) => Number.parseInt(text.slice(2), 16))
        .pipe(addressNumber()),
    ],
    { error: ADDRESS_ERROR },
  )
  .meta({ description: "7-bit I²C address, written 0x44 or \"0x44\"; default: the driver's usual one." });

const i2cSensor = z.strictObject({
  driver: z.string({ error: "expected a driver id" }).meta({ description: `Sensor driver: ${knownDrivers()} (edge-agent i2c read --help).` }),
  address: i2cAddress.optional(),
  prefix: name("prefix").optional().meta({
    description: "Point names become <prefix>_<quantity>; needed when two sensors of a source measure the same quantity.",
  }),
  only: z.array(z.enum(QUANTITIES)).min(1).optional().meta({ description: "Publish only these quantities of the sensor." }),
  precision: z.enum(["high", "medium", "low"]).optional().meta({ description: "sht3x, sht4x: measurement repeatability (default high)." }),
  mtreg: z.int().min(31).max(254).optional().meta({ description: "bh1750: measurement time register, 31–254 (default 69)." }),
  resolution: z.enum(["high", "high2", "low"]).optional().meta({ description: "bh1750: 1 lx (high), 0.5 lx (high2) or 4 lx (low); default high." }),
});

const schema = z
  .strictObject({
    type: z.literal("i2c"),
    name: name("source name"),
    bus: z.int().min(0).max(255).default(1).meta({ description: "The N of /dev/i2c-N: 1 on a Raspberry Pi's header (pins 3 and 5)." }),
    interval: duration({ min: SECOND, max: DAY }).default(10_000),
    simulated: z.boolean().default(false).meta({ description: "Use a simulated bus with chip models and moving values (demo, tests)." }),
    sensors: z.array(i2cSensor).min(1, { error: "needs at least one sensor" }),
  })
  .meta({ description: "Sensors on one I²C bus; points are <name>/<quantity>: temperature, humidity, co2, pressure, illuminance." });

export type I2cSourceConfig = z.output<typeof schema>;
export type I2cSensorConfig = z.output<typeof i2cSensor>;

/** The point names an i2c sensor entry publishes (empty for an unknown driver). */
export function i2cSensorPoints(sensor: Pick<I2cSensorConfig, "driver" | "only" | "prefix">): string[] {
  const driver = getDriver(sensor.driver);
  if (!driver) return [];
  return sensorQuantities(driver, sensor.only).map((q) => pointName(q, sensor.prefix));
}

/** Drivers, addresses and options exist and fit; no two sensors of the source publish the same point or share an address. */
function checkSensors(src: I2cSourceConfig, at: Path, report: Report): void {
  const points = new Map<string, number>();
  const addresses = new Map<number, number>();
  src.sensors.forEach((sensor, j) => {
    const here = [...at, "sensors", j];
    const driver = getDriver(sensor.driver);
    if (!driver) {
      report([...here, "driver"], checkDriver(sensor.driver) ?? `unknown driver '${sensor.driver}'`);
      return;
    }
    const address = sensor.address ?? driver.addresses[0]!;
    const addressIssue = checkAddress(driver, address);
    if (addressIssue) report([...here, "address"], addressIssue);
    for (const option of ["precision", "mtreg", "resolution"] as const) {
      if (sensor[option] !== undefined && !driver.options.includes(option)) {
        report([...here, option], `not an option of ${driver.id}${driver.options.length ? ` (it has: ${driver.options.join(", ")})` : ""}`);
      }
    }
    const foreign = (sensor.only ?? []).filter((q) => !driver.quantities.includes(q));
    if (foreign.length) report([...here, "only"], `${driver.id} does not measure ${foreign.join(", ")} (it measures ${driver.quantities.join(", ")})`);
    const sameAddress = addresses.get(address);
    if (sameAddress !== undefined) {
      report([...here, "address"], `address 0x${address.toString(16)} is also sensors[${sameAddress}] (${src.sensors[sameAddress]!.driver}) on this bus`);
    } else addresses.set(address, j);
    for (const p of i2cSensorPoints(sensor)) {
      const first = points.get(p);
      if (first !== undefined) {
        report(here, `point '${src.name}/${p}' is also produced by sensors[${first}] (${src.sensors[first]!.driver}); give one of them a prefix (or an only: list)`);
      } else points.set(p, j);
    }
  });
}

export const i2c: SourceType<I2cSourceConfig> = {
  type: "i2c",
  schema,
  check(cfg, at, ctx) {
    ctx.claimName(cfg.name, [...at, "name"]);
    checkSensors(cfg, at, ctx.report);
  },
  facts(cfg, at) {
    // Sources on one real bus share it (one queue); an address on it belongs to one of them
    // (twice within one source is this type's own check).
    const claims: SourceFacts["claims"] = [];
    const seen = new Set<number>();
    if (!cfg.simulated) {
      cfg.sensors.forEach((s, j) => {
        const address = s.address ?? getDriver(s.driver)?.addresses[0];
        if (address === undefined || seen.has(address)) return;
        seen.add(address);
        claims.push({ key: `i2c:${cfg.bus}:${address}`, path: [...at, "sensors", j, "address"], what: `address 0x${address.toString(16)} on bus ${cfg.bus}` });
      });
    }
    return {
      prefixes: [{ name: cfg.name, path: [...at, "name"] }],
      points: cfg.sensors.flatMap((s) => i2cSensorPoints(s).map((p) => ({ id: `${cfg.name}/${p}` }))),
      claims,
      devices: [],
    };
  },
  summary: (cfg) => ({ points: cfg.sensors.reduce((n, s) => n + i2cSensorPoints(s).length, 0) }),
};
