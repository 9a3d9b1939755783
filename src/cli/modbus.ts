/**
 * Technician commands for Modbus: read a device (by profile or raw registers) or show how it
 * would be read (--plan), write with read-back, scan a line for units, list the built-in profiles.
 */
import { createInterface } from "node:readline/promises";
import { type Command, Option } from "commander";
import { devicePoints, getProfile, listProfiles, profileIds } from "../../drivers/modbus/registry.js";
import type { DataType, ModbusPoint, ModbusProfile, Table, WordOrder } from "../../drivers/modbus/types.js";
import { isBitTable, registerCount } from "../../drivers/modbus/types.js";
import { describeTransport, ModbusError, type ModbusTransport } from "../buses/modbus/link.js";
import type { ModbusLine } from "../buses/modbus/line.js";
import { UserError } from "../model/errors.js";
import { silentLogger } from "../ops/logger.js";
import { ModbusDevice } from "../sources/modbus/device.js";
import { planReads, PROTOCOL_LIMITS } from "../sources/modbus/planner.js";
import { readLimits } from "../sources/modbus/source.js";
import { planMs, readMs, wireModel } from "../sources/modbus/wire-cost.js";
import { writeVerified } from "../sources/modbus/write.js";
import { registerScan } from "./modbus-scan.js";
import { addTargetOptions, openLine, parseInteger, parseTimeout, parseTransport, type TargetFlags } from "./modbus-target.js";
import { printJson } from "./output.js";

const TABLES: Table[] = ["input", "holding", "coil", "discrete"];
const TYPES: DataType[] = ["uint16", "int16", "uint32", "int32", "float32", "float64", "bool", "string"];
const ORDERS: WordOrder[] = ["ABCD", "CDAB", "BADC", "DCBA"];

export function profileOrThrow(id: string): ModbusProfile {
  const p = getProfile(id);
  if (!p) throw new UserError(`--profile: unknown profile '${id}'; built in: ${profileIds().join(", ")}`);
  return p;
}

interface ReadFlags extends TargetFlags {
  unit: string;
  profile?: string;
  only?: string;
  table?: string;
  address?: string;
  count?: string;
  type?: string;
  order?: string;
  scale?: string;
  plan?: boolean;
  json?: boolean;
}

export interface ReadOutput {
  target: string;
  unit: number;
  requests: number;
  /** Reads per poll once the device's holes are known (what the agent will send). */
  plannedRequests: number;
  /** Their estimated time on the wire per poll (ms). */
  wireMsPerPoll: number;
  naiveRequests: number;
  ms: number;
  values: Array<{ point: string; table: Table; address: number; value: number | boolean | string | null; unit?: string; error?: string }>;
}

async function withLine<T>(transport: ModbusTransport, fn: (line: ModbusLine) => Promise<T>): Promise<T> {
  const line = await openLine(transport);
  try {
    return await fn(line);
  } finally {
    await line.release();
  }
}

export interface PlanOutput {
  target: string;
  unit: number;
  /** The transport's cost model: `9600 8N1`, `tcp`. */
  wire: string;
  requests: Array<{ table: Table; address: number; count: number; points: string[]; ms: number }>;
  requestsPerCycle: number;
  /** Estimated time of a cycle's requests on the wire (ms). */
  wireMsPerPoll: number;
  naiveRequests: number;
  naiveWireMsPerPoll: number;
}

const roundMs = (ms: number) => Math.round(ms * 10) / 10;

/** How the agent would read these points on this transport, before it learns anything: no I/O. */
export function modbusPlan(flags: ReadFlags): PlanOutput {
  const unit = parseInteger("--unit", flags.unit, 1, 247);
  const points = readPoints(flags);
  const transport = parseTransport(flags);
  const wire = wireModel(transport);
  const plan = planReads(points, readLimits(flags.profile, {}), undefined, wire);
  return {
    target: describeTransport(transport),
    unit,
    wire: wire.label,
    requests: plan.map((r) => ({ table: r.table, address: r.address, count: r.count, points: r.points.map((p) => p.name), ms: roundMs(readMs(wire, r.table, r.count)) })),
    requestsPerCycle: plan.length,
    wireMsPerPoll: roundMs(planMs(wire, plan)),
    naiveRequests: points.length,
    naiveWireMsPerPoll: roundMs(points.reduce((ms, p) => ms + readMs(wire, p.table, registerCount(p)), 0)),
  };
}

/** Reads every point of a profile (planned into few requests) or a raw register range. */
export async function modbusRead(flags: ReadFlags): Promise<ReadOutput> {
  const unit = parseInteger("--unit", flags.unit, 1, 247);
  const timeout = parseTimeout(flags.timeout);
  const points = readPoints(flags);
  const transport = parseTransport(flags);
  const target = describeTransport(transport);
  return withLine(transport, async (line) => {
    const device = new ModbusDevice(
      {
        name: `unit-${unit}`,
        unit,
        points,
        interval: 1000,
        timeout,
        retries: 0,
        limits: readLimits(flags.profile, {}),
        wire: wireModel(transport),
        offlineAfter: 1000,
        probeInterval: 1000,
      },
      line,
      silentLogger(),
    );
    const t0 = performance.now();
    const readings = await device.poll(Date.now());
    const elapsed = performance.now() - t0;
    const health = device.health();
    if (health.counters.ok === 0 && health.counters.exception === 0) {
      throw new UserError(`unit ${unit} on ${target}: ${health.lastError ?? "no answer"}`, 1);
    }
    const byName = new Map(readings.map((r) => [r.point.slice(r.point.indexOf("/") + 1), r]));
    return {
      target,
      unit,
      requests: health.counters.requests,
      plannedRequests: health.requestsPerPoll,
      wireMsPerPoll: health.wireMsPerPoll,
      naiveRequests: points.length,
      ms: Math.round(elapsed),
      values: points.map((p) => {
        const r = byName.get(p.name);
        const bad = !r || r.quality !== "good";
        return {
          point: p.name,
          table: p.table,
          address: p.address,
          value: bad ? null : r.value,
          ...(p.unit ? { unit: p.unit } : {}),
          ...(bad ? { error: health.unsupported.includes(p.name) ? "illegal data address" : (health.lastError ?? "no value") } : {}),
        };
      }),
    };
  });
}

function readPoints(f: ReadFlags): ModbusPoint[] {
  if (f.profile) {
    if (f.table || f.address) throw new UserError("use either --profile or --table/--address, not both");
    const profile = profileOrThrow(f.profile);
    const only = f.only?.split(",").map((s) => s.trim());
    const unknown = only?.filter((n) => !profile.points.some((p) => p.name === n)) ?? [];
    if (unknown.length) throw new UserError(`--only: not points of ${profile.id}: ${unknown.join(", ")}`);
    return devicePoints({ profile: profile.id, only, points: [] });
  }
  if (!f.table || f.address === undefined) throw new UserError("say what to read: --profile NAME, or --table input|holding|coil|discrete --address A [--count N]");
  const table = f.table as Table;
  if (!TABLES.includes(table)) throw new UserError(`--table: expected one of ${TABLES.join(", ")}, got '${f.table}'`);
  const bits = isBitTable(table);
  const type = (f.type ?? (bits ? "bool" : "uint16")) as DataType;
  if (!TYPES.includes(type)) throw new UserError(`--type: expected one of ${TYPES.join(", ")}, got '${f.type}'`);
  const order = (f.order ?? "ABCD").toUpperCase() as WordOrder;
  if (!ORDERS.includes(order)) throw new UserError(`--order: expected one of ${ORDERS.join(", ")}, got '${f.order}'`);
  const scale = f.scale === undefined ? undefined : Number(f.scale);
  if (scale !== undefined && !Number.isFinite(scale)) throw new UserError(`--scale: expected a number, got '${f.scale}'`);
  const address = parseInteger("--address", f.address, 0, 0xffff);
  const count = parseInteger("--count", f.count ?? "1", 1, bits ? PROTOCOL_LIMITS.maxBits : PROTOCOL_LIMITS.maxRegisters);
  const size = bits ? 1 : registerCount({ type, table });
  const points: ModbusPoint[] = [];
  for (let i = 0; i < count; i++) {
    const a = address + i * size;
    if (a + size - 1 > 0xffff) break;
    points.push({ name: `${table}_0x${a.toString(16).padStart(4, "0")}`, table, address: a, type: bits ? "bool" : type, order, ...(scale !== undefined ? { scale } : {}) });
  }
  return points;
}

function printRead(out: ReadOutput): void {
  const rows = out.values.map((v) => [
    v.point,
    `${v.table} 0x${v.address.toString(16).padStart(4, "0")}`,
    v.value === null ? `— (${v.error})` : `${typeof v.value === "number" ? String(v.value) : JSON.stringify(v.value)}${v.unit ? ` ${v.unit}` : ""}`,
  ]);
  const w0 = Math.max(...rows.map((r) => r[0]!.length));
  const w1 = Math.max(...rows.map((r) => r[1]!.length));
  for (const r of rows) process.stdout.write(`${r[0]!.padEnd(w0)}  ${r[1]!.padEnd(w1)}  ${r[2]}\n`);
  const learned = out.plannedRequests !== out.requests ? `; ${out.plannedRequests} per poll now that the device's holes are known` : "";
  process.stdout.write(
    `unit ${out.unit} on ${out.target}: ${plural(out.values.length, "value")} in ${plural(out.requests, "request")}${learned} (one per value: ${out.naiveRequests}), ${out.ms} ms; ` +
      `estimated wire time per poll ${out.wireMsPerPoll} ms\n`,
  );
}

const plural = (k: number, w: string) => `${k} ${w}${k === 1 ? "" : "s"}`;

function printPlan(out: PlanOutput): void {
  const rows = out.requests.map((r) => [
    `${r.table} 0x${r.address.toString(16).padStart(4, "0")}`,
    plural(r.count, isBitTable(r.table) ? "bit" : "register"),
    plural(r.points.length, "point"),
    r.points.length <= 2 ? r.points.join(", ") : `${r.points[0]} … ${r.points.at(-1)}`,
    `${r.ms} ms`,
  ]);
  const widths = [0, 1, 2, 3].map((i) => Math.max(0, ...rows.map((row) => row[i]!.length)));
  for (const row of rows) process.stdout.write(`  ${row.slice(0, 4).map((c, i) => c.padEnd(widths[i]!)).join("  ")}  ${row[4]}\n`);
  process.stdout.write(
    `unit ${out.unit} on ${out.target}: ${plural(out.requestsPerCycle, "request")} per cycle, estimated wire time per poll ${out.wireMsPerPoll} ms ` +
      `(one request per value: ${out.naiveRequests}, ${out.naiveWireMsPerPoll} ms); costs of ${out.wire}, before the device refuses anything\n`,
  );
}

interface WriteFlags extends TargetFlags {
  unit: string;
  coil?: string;
  register?: string;
  profile?: string;
  point?: string;
  value: string;
  type?: string;
  order?: string;
  scale?: string;
  yes?: boolean;
  json?: boolean;
}

function writeTarget(f: WriteFlags): ModbusPoint {
  const chosen = [f.coil !== undefined && "--coil", f.register !== undefined && "--register", f.point !== undefined && "--point"].filter(Boolean);
  if (chosen.length !== 1) throw new UserError("say what to write: --coil A, --register A, or --profile NAME --point NAME");
  if (f.point !== undefined) {
    if (!f.profile) throw new UserError("--point needs --profile");
    const profile = profileOrThrow(f.profile);
    const p = profile.points.find((x) => x.name === f.point);
    if (!p) throw new UserError(`--point: ${profile.id} has no point '${f.point}'; writable: ${profile.points.filter((x) => x.writable).map((x) => x.name).join(", ") || "none"}`);
    if (!p.writable) throw new UserError(`--point: ${profile.id}.${p.name} is not writable`);
    return p;
  }
  if (f.coil !== undefined) return { name: `coil_${f.coil}`, table: "coil", address: parseInteger("--coil", f.coil, 0, 0xffff), type: "bool" };
  const type = (f.type ?? "uint16") as DataType;
  if (!TYPES.includes(type) || type === "bool" || type === "string") throw new UserError(`--type: expected a numeric type (${TYPES.slice(0, 6).join(", ")}), got '${f.type}'`);
  const order = (f.order ?? "ABCD").toUpperCase() as WordOrder;
  if (!ORDERS.includes(order)) throw new UserError(`--order: expected one of ${ORDERS.join(", ")}, got '${f.order}'`);
  const scale = f.scale === undefined ? undefined : Number(f.scale);
  return { name: `holding_${f.register}`, table: "holding", address: parseInteger("--register", f.register!, 0, 0xffff), type, order, ...(scale !== undefined && Number.isFinite(scale) ? { scale } : {}) };
}

function parseValue(point: ModbusPoint, text: string): number | boolean {
  if (point.table === "coil") {
    if (/^(on|true|1)$/i.test(text)) return true;
    if (/^(off|false|0)$/i.test(text)) return false;
    throw new UserError(`--value: a coil is on or off, got '${text}'`);
  }
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n)) throw new UserError(`--value: expected a number, got '${text}'`);
  return n;
}

async function confirm(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) throw new UserError("writing changes a device: confirm with --yes (no terminal to ask on)");
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
  } finally {
    rl.close();
  }
}

export function registerModbus(program: Command): void {
  const modbus = program
    .command("modbus")
    .description("read, write and scan Modbus devices (RTU on RS-485, TCP, RTU over TCP)")
    .addHelpText(
      "after",
      `
Addresses are 0-based protocol addresses as in the datasheets' hex tables: the Eastron voltage
at "30001" is --table input --address 0x0000.

Examples:
  edge-agent modbus read --rtu /dev/ttyUSB0 --baud 9600 --unit 1 --profile sdm630
  edge-agent modbus read --tcp 192.168.1.20:502 --unit 3 --table input --address 0x0000 --count 2 --type float32
  edge-agent modbus write --rtu /dev/ttyUSB1 --baud 115200 --unit 1 --coil 0x0002 --value on
  edge-agent modbus scan --rtu /dev/ttyUSB0 --bauds 2400,9600 --parities none,even`,
    );

  addTargetOptions(
    modbus
      .command("read")
      .description("read every point of a profile (decoded, with units) or a raw register range")
      .option("--profile <name>", `a built-in profile: ${profileIds().join(", ")}`)
      .option("--only <points>", "with --profile: just these points, comma-separated")
      .addOption(new Option("--table <table>", "raw read: register table").choices(TABLES))
      .option("--address <a>", "raw read: first address (0x… or decimal)")
      .option("--count <n>", "raw read: how many values", "1")
      .addOption(new Option("--type <type>", "raw read: decode as").choices(TYPES))
      .addOption(new Option("--order <order>", "raw read: byte order of multi-register values").choices(ORDERS))
      .option("--scale <x>", "raw read: multiply by")
      .option("--plan", "show the requests a poll sends and their estimated wire time, without reading")
      .option("--json", "print as JSON"),
  ).action(async (flags: ReadFlags) => {
    if (flags.plan) {
      const plan = modbusPlan(flags);
      if (flags.json) printJson(plan);
      else printPlan(plan);
      return;
    }
    const out = await modbusRead(flags);
    if (flags.json) printJson(out);
    else printRead(out);
    if (out.values.every((v) => v.value === null)) process.exitCode = 1;
  });

  addTargetOptions(
    modbus
      .command("write")
      .description("write a coil or holding registers, then read back and show what the device holds")
      .option("--coil <a>", "coil address")
      .option("--register <a>", "first holding register address")
      .option("--profile <name>", "with --point: write a named point of a profile")
      .option("--point <name>", "a writable point of --profile")
      .requiredOption("--value <v>", "on/off for a coil, a number for registers")
      .addOption(new Option("--type <type>", "register value type").choices(TYPES.slice(0, 6)))
      .addOption(new Option("--order <order>", "byte order of multi-register values").choices(ORDERS))
      .option("--scale <x>", "the register holds value / scale")
      .option("-y, --yes", "do not ask for confirmation")
      .option("--json", "print as JSON"),
  ).action(async (flags: WriteFlags) => {
    const unit = parseInteger("--unit", flags.unit, 1, 247);
    const point = writeTarget(flags);
    const value = parseValue(point, flags.value);
    const timeout = parseTimeout(flags.timeout);
    const transport = parseTransport(flags);
    const what = `${point.table} 0x${point.address.toString(16).padStart(4, "0")} of unit ${unit} on ${describeTransport(transport)} to ${JSON.stringify(value)}`;
    if (!flags.yes && !(await confirm(`write ${what}?`))) throw new UserError("not written", 1);
    const result = await withLine(transport, (line) => writeVerified(line, "cli", unit, point, value, timeout)).catch((err: unknown) => {
      if (err instanceof ModbusError) throw new UserError(`unit ${unit}: ${err.message}`, 1);
      throw err;
    });
    if (flags.json) printJson({ unit, ...result });
    else process.stdout.write(`wrote ${what}; read back: ${JSON.stringify(result.readBack)}\n`);
  });

  registerScan(modbus);

  modbus
    .command("profiles")
    .description("list the built-in device profiles and their points")
    .option("--json", "print as JSON")
    .action((flags: { json?: boolean }) => {
      const profiles = listProfiles();
      if (flags.json) return printJson(profiles);
      for (const p of profiles) {
        process.stdout.write(`${p.id}  ${p.vendor} ${p.model}: ${p.description} (${p.points.length} points)\n`);
        for (const pt of p.points) {
          process.stdout.write(`    ${pt.name.padEnd(26)} ${pt.table.padEnd(8)} 0x${pt.address.toString(16).padStart(4, "0")}  ${pt.type}${pt.unit ? ` ${pt.unit}` : ""}${pt.writable ? "  (writable)" : ""}\n`);
        }
      }
    });
}

