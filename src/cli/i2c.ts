/**
 * Technician commands for I²C: which addresses answer on a bus (laid out like i2cdetect, with
 * the likely chip), and one reading of one sensor with its units and CRC status. `--sim` runs
 * them against the simulated bench (the Sala Smart room on bus 1), so they can be tried anywhere.
 */
import type { Command } from "commander";
import { candidates, checkAddress, checkDriver, describeAddress, getDriver, knownDrivers, listDrivers } from "../../drivers/i2c/registry.js";
import { hex, type I2cDriver, type I2cSensor, SensorError, type SensorValue } from "../../drivers/i2c/types.js";
import { type I2cBus, I2cError, SCAN_FIRST, SCAN_LAST } from "../buses/i2c/bus.js";
import { NodeI2cBus } from "../buses/i2c/node-bus.js";
import { I2cQueue } from "../buses/i2c/queue.js";
import { simulatedBench } from "../simulators/i2c/bench.js";
import { ManualClock } from "../buses/i2c/clock.js";
import { UserError } from "../model/errors.js";
import { printJson } from "./output.js";

export interface I2cFlags {
  bus: string;
  sim?: boolean;
  json?: boolean;
}

export interface I2cReadFlags extends I2cFlags {
  driver: string;
  address?: string;
}

export interface ScanOutput {
  bus: string;
  simulated: boolean;
  found: Array<{ address: string; likely: string | null; note?: string }>;
}

export interface ReadOutput {
  bus: string;
  simulated: boolean;
  driver: string;
  model: string;
  address: string;
  info: Record<string, string>;
  values: SensorValue[];
  /** ok: every CRC matched; bad: some value is missing for it; none: the chip sends no CRC. */
  crc: "ok" | "bad" | "none";
}

export function parseBus(text: string): number {
  const n = /^\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isInteger(n) || n < 0 || n > 255) throw new UserError(`--bus: expected a bus number like 1 (the N of /dev/i2c-N), got '${text}'`);
  return n;
}

export function parseAddress(text: string): number {
  const t = text.trim();
  const n = /^0x[0-9a-f]{1,2}$/i.test(t) ? Number.parseInt(t.slice(2), 16) : /^\d+$/.test(t) ? Number(t) : Number.NaN;
  if (!Number.isInteger(n) || n < SCAN_FIRST || n > SCAN_LAST) throw new UserError(`--address: expected an I²C address 0x03–0x77 like 0x44, got '${text}'`);
  return n;
}

function driverOrThrow(id: string): I2cDriver {
  const issue = checkDriver(id);
  if (issue) throw new UserError(`--driver: ${issue}`);
  return getDriver(id)!;
}

/** A bus for one command: /dev/i2c-N, or the simulated bench (where a wait costs no time). */
function openBus(bus: number, sim: boolean | undefined, chip?: { driver: string; address: number }): I2cBus {
  return sim ? simulatedBench(bus, new ManualClock(), chip) : new NodeI2cBus(bus);
}

/** A missing bus or permission is a setup mistake (2); a device that does not answer is a failure (1). */
function userError(err: unknown): unknown {
  if (err instanceof I2cError) return new UserError(err.message, err.kind === "bus-missing" || err.kind === "permission" ? 2 : 1);
  if (err instanceof SensorError) return new UserError(err.message, 1);
  return err;
}

export async function i2cScan(flags: I2cFlags): Promise<ScanOutput> {
  const n = parseBus(flags.bus);
  const queue = new I2cQueue(openBus(n, flags.sim));
  try {
    const addresses = await queue.run((b) => b.scan());
    const found: ScanOutput["found"] = [];
    for (const a of addresses) {
      const likely = describeAddress(a);
      const probe = candidates(a).find((d) => d.identify);
      let note: string | undefined;
      if (probe?.identify) note = await probe.identify(queue.device(a)).catch((err: unknown) => `no answer to the ${probe.model} probe (${(err as Error).message})`);
      found.push({ address: hex(a), likely, ...(note ? { note } : {}) });
    }
    return { bus: queue.name, simulated: Boolean(flags.sim), found };
  } catch (err) {
    throw userError(err);
  } finally {
    await queue.close();
  }
}

/** The i2cdetect grid: rows of 16 addresses, `--` for silence, blanks outside 0x03–0x77. */
export function scanGrid(found: readonly number[]): string {
  const lines = [`     ${Array.from({ length: 16 }, (_, i) => i.toString(16).padStart(2)).join(" ")}`];
  for (let row = 0; row < 0x80; row += 16) {
    const cells = Array.from({ length: 16 }, (_, i) => {
      const a = row + i;
      if (a < SCAN_FIRST || a > SCAN_LAST) return "  ";
      return found.includes(a) ? a.toString(16).padStart(2, "0") : "--";
    });
    lines.push(`${row.toString(16).padStart(2, "0")}: ${cells.join(" ")}`.trimEnd());
  }
  return lines.join("\n");
}

function printScan(out: ScanOutput): void {
  const where = `${out.bus}${out.simulated ? " (simulated)" : ""}`;
  process.stdout.write(`${scanGrid(out.found.map((f) => Number.parseInt(f.address.slice(2), 16)))}\n\n`);
  if (out.found.length === 0) {
    process.stdout.write(`${where}: no address answers (check wiring: SDA, SCL, 3.3 V, GND, and pull-ups)\n`);
    return;
  }
  process.stdout.write(`${where}: ${out.found.length} address${out.found.length === 1 ? "" : "es"} answer\n`);
  for (const f of out.found) {
    const likely = f.likely ?? "unknown chip (no built-in driver)";
    process.stdout.write(`  ${f.address}  ${likely}${f.note ? ` (${f.note})` : ""}\n`);
  }
}

/** Reads until a value comes, for parts that measure periodically (SCD4x: first result after 5 s). */
async function readWhenReady(sensor: I2cSensor, driver: I2cDriver, wait: (ms: number) => Promise<void>): Promise<SensorValue[]> {
  const stepMs = 500;
  for (let waited = 0; ; waited += stepMs) {
    try {
      return await sensor.read();
    } catch (err) {
      if (!(err instanceof SensorError && err.kind === "not-ready") || waited >= driver.readyWithinMs) throw err;
      await wait(stepMs);
    }
  }
}

export async function i2cRead(flags: I2cReadFlags): Promise<ReadOutput> {
  const n = parseBus(flags.bus);
  const driver = driverOrThrow(flags.driver);
  const address = flags.address === undefined ? driver.addresses[0]! : parseAddress(flags.address);
  const issue = checkAddress(driver, address);
  if (issue) throw new UserError(`--address: ${issue}`);
  const queue = new I2cQueue(openBus(n, flags.sim, { driver: driver.id, address }));
  const device = queue.device(address);
  const sensor = driver.create(device);
  try {
    await sensor.init();
    const values = await readWhenReady(sensor, driver, (ms) => device.delay(ms));
    const crc = values.some((v) => v.crc === "bad") ? "bad" : values.some((v) => v.crc === "ok") ? "ok" : "none";
    return { bus: queue.name, simulated: Boolean(flags.sim), driver: driver.id, model: driver.model, address: hex(address), info: sensor.info(), values, crc };
  } catch (err) {
    throw userError(err);
  } finally {
    await sensor.shutdown().catch(() => {});
    await queue.close();
  }
}

function printRead(out: ReadOutput): void {
  const info = Object.entries(out.info).map(([k, v]) => ` · ${k.replace("_", " ")} ${v}`).join("");
  process.stdout.write(`${out.model} at ${out.bus}${out.simulated ? " (simulated)" : ""} ${out.address}${info}\n`);
  const width = Math.max(...out.values.map((v) => v.quantity.length));
  for (const v of out.values) {
    const text = v.value === null ? `— (${v.note ?? "no value"})` : `${v.value} ${v.unit}`;
    process.stdout.write(`  ${v.quantity.padEnd(width)}  ${text}\n`);
  }
  const bad = out.values.filter((v) => v.crc === "bad").length;
  const crc = out.crc === "none" ? "not used by this chip" : bad ? `${bad} of ${out.values.length} values failed their CRC (not shown)` : "every word checked, all match";
  process.stdout.write(`CRC: ${crc}\n`);
}

export function registerI2c(program: Command): void {
  const i2c = program
    .command("i2c")
    .description("scan an I²C bus and read the room sensors on it (SHT3x, SHT4x, SCD4x, BME280, BH1750)")
    .addHelpText(
      "after",
      `
Examples:
  edge-agent i2c scan --bus 1                        which addresses answer, and the likely chip
  edge-agent i2c read --bus 1 --driver sht4x         one reading, with units and CRC status
  edge-agent i2c read --bus 1 --driver bme280 --address 0x77
  edge-agent i2c scan --bus 1 --sim                  the same against a simulated room

Drivers: ${knownDrivers()}.
No /dev/i2c-1? Enable I²C: raspi-config (Interface Options), or dtparam=i2c_arm=on in config.txt.`,
    );

  i2c
    .command("scan")
    .description("find the addresses that answer on a bus and the chip each probably is")
    .requiredOption("--bus <n>", "bus number: the N of /dev/i2c-N (1 on a Raspberry Pi's header)")
    .option("--sim", "use the simulated bench (the Sala Smart room on bus 1)")
    .option("--json", "print as JSON")
    .action(async (flags: I2cFlags) => {
      const out = await i2cScan(flags);
      if (flags.json) printJson(out);
      else printScan(out);
      if (out.found.length === 0) process.exitCode = 1;
    });

  i2c
    .command("read")
    .description("read one sensor once: values with units, and whether every CRC matched")
    .requiredOption("--bus <n>", "bus number: the N of /dev/i2c-N")
    .requiredOption("--driver <id>", `sensor driver: ${knownDrivers()}`)
    .option("--address <a>", "7-bit address, e.g. 0x44 (default: the driver's usual one)")
    .option("--sim", "use the simulated bench (the requested chip is placed at the address)")
    .option("--json", "print as JSON")
    .action(async (flags: I2cReadFlags) => {
      const out = await i2cRead(flags);
      if (flags.json) printJson(out);
      else printRead(out);
      if (out.crc === "bad" || out.values.some((v) => v.value === null)) process.exitCode = 1;
    });

  i2c
    .command("drivers")
    .description("list the built-in sensor drivers, their addresses and quantities")
    .option("--json", "print as JSON")
    .action((flags: { json?: boolean }) => {
      const rows = listDrivers().map((d) => ({ id: d.id, vendor: d.vendor, model: d.model, addresses: d.addresses.map(hex), quantities: d.quantities, source: d.source }));
      if (flags.json) return printJson(rows);
      for (const d of rows) process.stdout.write(`${d.id.padEnd(7)} ${d.vendor} ${d.model}: ${d.quantities.join(", ")} at ${d.addresses.join(" or ")}\n`);
    });
}
