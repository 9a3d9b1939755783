/**
 * `edge-agent modbus scan`: which units answer on a line (and with --bauds/--parities, at which
 * serial settings), which built-in profile each one matches, and a config snippet to paste.
 */
import cliProgress from "cli-progress";
import type { Command } from "commander";
import { stringify } from "yaml";
import { decodePoint } from "../../drivers/modbus/codec.js";
import { listProfiles } from "../../drivers/modbus/registry.js";
import type { IdentifyProbe } from "../../drivers/modbus/types.js";
import { probePoint, registerCount } from "../../drivers/modbus/types.js";
import { describeTransport, ModbusError, type ModbusTransport } from "../buses/modbus/link.js";
import type { ModbusLine } from "../buses/modbus/line.js";
import { UserError } from "../model/errors.js";
import { addTargetOptions, openLine, parseInteger, parseTimeout, parseTransport, type TargetFlags } from "./modbus-target.js";
import { printJson } from "./output.js";

interface ScanFlags extends TargetFlags {
  units: string;
  bauds?: string;
  parities?: string;
  json?: boolean;
  progress?: boolean;
}

export interface ScanHit {
  unit: number;
  transport: string;
  baud?: number;
  parity?: string;
  profile: string | null;
  note: string;
}

export function parseUnits(text: string): number[] {
  const units = new Set<number>();
  for (const part of text.split(",")) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+))?\s*$/.exec(part);
    const a = m ? Number(m[1]) : Number.NaN;
    const b = m?.[2] !== undefined ? Number(m[2]) : a;
    if (!m || a < 1 || b > 247 || b < a) throw new UserError(`--units: expected ids 1–247 like 1-10,20, got '${text}'`);
    for (let u = a; u <= b; u++) units.add(u);
  }
  return [...units].sort((x, y) => x - y);
}

/** A unit is present when it answers at all, even with an exception. */
async function present(line: ModbusLine, unit: number, timeout: number): Promise<{ ok: boolean; note: string }> {
  try {
    await line.run("scan", (link) => link.read(unit, "holding", 0, 1, timeout));
    return { ok: true, note: "answers" };
  } catch (err) {
    if (err instanceof ModbusError) {
      if (err.kind === "exception") return { ok: true, note: `answers (${err.message})` };
      if (err.kind === "crc" || err.kind === "truncated") return { ok: false, note: `garbled reply: wrong baud or parity?` };
      if (err.kind === "disconnected") throw new UserError(err.message);
    }
    return { ok: false, note: "" };
  }
}

async function passes(line: ModbusLine, unit: number, probe: IdentifyProbe, timeout: number): Promise<boolean> {
  const point = probePoint(probe, "probe");
  try {
    const words = await line.run("scan", (link) => link.read(unit, probe.table, probe.address, registerCount(point), timeout));
    const v = decodePoint(point, words);
    if (typeof v !== "number") return false;
    if (probe.equals !== undefined) return v === probe.equals;
    return v >= (probe.min ?? Number.NEGATIVE_INFINITY) && v <= (probe.max ?? Number.POSITIVE_INFINITY);
  } catch {
    return false;
  }
}

/** The first profile whose every probe passes, most specific profiles first. */
async function identify(line: ModbusLine, unit: number, timeout: number): Promise<string | null> {
  for (const profile of listProfiles()) {
    const probes = profile.identify ?? [];
    if (probes.length === 0) continue;
    let all = true;
    for (const probe of probes) {
      if (!(await passes(line, unit, probe, timeout))) {
        all = false;
        break;
      }
    }
    if (all) return profile.id;
  }
  return null;
}

export async function scan(flags: ScanFlags, onProgress: (done: number, total: number, found: number) => void): Promise<ScanHit[]> {
  const units = parseUnits(flags.units);
  const timeout = parseTimeout(flags.timeout);
  const base = parseTransport(flags);
  const settings: Array<{ baud?: number; parity?: "none" | "even" | "odd" }> = [];
  if (base.kind === "rtu") {
    const bauds = (flags.bauds ?? String(base.baud)).split(",").map((b) => parseInteger("--bauds", b.trim(), 300, 921_600));
    const parities = (flags.parities ?? base.parity).split(",").map((p) => p.trim());
    for (const p of parities) if (!["none", "even", "odd"].includes(p)) throw new UserError(`--parities: expected none, even or odd, got '${p}'`);
    for (const baud of bauds) for (const parity of parities) settings.push({ baud, parity: parity as "none" | "even" | "odd" });
  } else {
    if (flags.bauds || flags.parities) throw new UserError("--bauds and --parities are for --rtu");
    settings.push({});
  }
  const total = settings.length * units.length;
  const hits: ScanHit[] = [];
  let done = 0;
  for (const s of settings) {
    const transport: ModbusTransport = base.kind === "rtu" ? { ...base, baud: s.baud!, parity: s.parity! } : base;
    const line = await openLine(transport);
    try {
      for (const unit of units) {
        const p = await present(line, unit, timeout);
        if (p.ok) {
          const profile = await identify(line, unit, timeout);
          hits.push({ unit, transport: describeTransport(transport), ...(s.baud ? { baud: s.baud, parity: s.parity } : {}), profile, note: p.note });
        }
        onProgress(++done, total, hits.length);
      }
    } finally {
      await line.release();
    }
  }
  return hits;
}

/** A `sources:` entry per line setting that found units, ready to paste into a config. */
export function configSnippet(flags: ScanFlags, hits: ScanHit[]): string {
  const base = parseTransport(flags);
  const groups = new Map<string, ScanHit[]>();
  for (const h of hits) groups.set(h.transport, [...(groups.get(h.transport) ?? []), h]);
  const sources = [...groups.values()].map((group, i) => {
    const h = group[0]!;
    const where =
      base.kind === "rtu"
        ? { rtu: { device: base.device, baud: h.baud, parity: h.parity, data_bits: base.dataBits, stop_bits: base.stopBits } }
        : base.kind === "tcp"
          ? { tcp: { host: base.host, port: base.port } }
          : { rtu_over_tcp: { host: base.host, port: base.port } };
    return {
      type: "modbus",
      name: `line-${i + 1}`,
      ...where,
      devices: group.map((d) =>
        d.profile ? { name: `${d.profile}-${d.unit}`, unit: d.unit, profile: d.profile } : { name: `unit-${d.unit}`, unit: d.unit, points: [] },
      ),
    };
  });
  return stringify({ sources });
}

export function registerScan(modbus: Command): void {
  addTargetOptions(
    modbus
      .command("scan")
      .description("find the units that answer on a line, identify them against the built-in profiles, print a config snippet")
      .option("--units <ids>", "unit ids to try, e.g. 1-10,20", "1-247")
      .option("--bauds <list>", "with --rtu: serial speeds to try, e.g. 2400,9600,19200")
      .option("--parities <list>", "with --rtu: parities to try, e.g. none,even")
      .option("--no-progress", "no progress bar")
      .option("--json", "print as JSON"),
    { unit: false },
  )
    .action(async (flags: ScanFlags) => {
      const showBar = flags.progress !== false && !flags.json && Boolean(process.stderr.isTTY);
      const bar = showBar
        ? new cliProgress.SingleBar({ format: "scanning [{bar}] {value}/{total} · found {found}", stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
        : null;
      let started = false;
      const hits = await scan(flags, (done, total, found) => {
        if (!bar) return;
        if (!started) bar.start(total, 0, { found: 0 });
        started = true;
        bar.update(done, { found });
      }).finally(() => bar?.stop());
      if (flags.json) {
        printJson({ hits, config: hits.length ? configSnippet(flags, hits) : null });
        return;
      }
      if (hits.length === 0) {
        process.stdout.write("no unit answered (check wiring A/B, termination, baud, parity, and the unit ids)\n");
        process.exitCode = 1;
        return;
      }
      for (const h of hits) {
        process.stdout.write(`unit ${String(h.unit).padStart(3)}  ${h.transport}  ${h.profile ? `looks like ${h.profile}` : "not identified"}  (${h.note})\n`);
      }
      process.stdout.write(`\n# paste under your config:\n${configSnippet(flags, hits)}`);
    });
}
