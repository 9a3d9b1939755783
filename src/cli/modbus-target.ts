/**
 * The connection flags shared by the technician's Modbus commands (read, write, scan):
 * `--tcp HOST:PORT`, `--rtu-over-tcp HOST:PORT`, or `--rtu DEVICE --baud N --parity P`.
 */
import { type Command, Option } from "commander";
import { parseDuration } from "./output.js";
import { interFrameMs, ModbusSerialLink, type ModbusTransport } from "../buses/modbus/link.js";
import { ModbusLine } from "../buses/modbus/line.js";
import { UserError } from "../model/errors.js";

export interface TargetFlags {
  tcp?: string;
  rtuOverTcp?: string;
  rtu?: string;
  baud?: string;
  parity?: string;
  dataBits?: string;
  stopBits?: string;
  timeout?: string;
}

export function addTargetOptions(cmd: Command, opts: { unit?: boolean } = {}): Command {
  cmd
    .option("--tcp <host:port>", "Modbus TCP device or gateway, e.g. 192.168.1.20:502")
    .option("--rtu-over-tcp <host:port>", "serial-to-Ethernet converter passing RTU frames")
    .option("--rtu <device>", "serial device, e.g. /dev/ttyUSB0 (see: edge-agent ports)")
    .option("--baud <n>", "serial speed", "9600")
    .addOption(new Option("--parity <parity>", "serial parity").choices(["none", "even", "odd"]).default("none"))
    .addOption(new Option("--data-bits <n>", "serial data bits").choices(["7", "8"]).default("8"))
    .addOption(new Option("--stop-bits <n>", "serial stop bits").choices(["1", "2"]).default("1"))
    .option("--timeout <duration>", "how long to wait for each answer", "1s");
  if (opts.unit !== false) cmd.requiredOption("-u, --unit <id>", "unit id (slave address) 1–247");
  return cmd;
}

export function parseHostPort(flag: string, text: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(text) ?? /^([^:]+)$/.exec(text);
  const host = m?.[1];
  const port = m?.[2] === undefined ? 502 : Number(m[2]);
  if (!host || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UserError(`${flag}: expected HOST:PORT like 192.168.1.20:502, got '${text}'`);
  }
  return { host, port };
}

export function parseInteger(flag: string, text: string, min: number, max: number): number {
  const n = /^0x[0-9a-f]+$/i.test(text) ? Number.parseInt(text.slice(2), 16) : /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(n) || n < min || n > max) {
    const range = max > 255 ? `${min}–${max} (decimal, or hex like 0x${max.toString(16).toUpperCase()})` : `${min}–${max}`;
    throw new UserError(`${flag}: expected ${range}, got '${text}'`);
  }
  return n;
}

export function parseTimeout(text: string | undefined): number {
  const value = parseDuration(text, ["ms", "s"]);
  if (value === undefined || value < 10 || value > 60_000) throw new UserError(`--timeout: expected a duration like 500ms or 2s, got '${text}'`);
  return value;
}

export function parseTransport(f: TargetFlags, baudOverride?: number, parityOverride?: "none" | "even" | "odd"): ModbusTransport {
  const chosen = [f.tcp && "--tcp", f.rtuOverTcp && "--rtu-over-tcp", f.rtu && "--rtu"].filter(Boolean);
  if (chosen.length !== 1) {
    throw new UserError(chosen.length === 0 ? "say where the device is: --tcp HOST:PORT, --rtu DEVICE or --rtu-over-tcp HOST:PORT" : `choose one of ${chosen.join(" and ")}`);
  }
  if (f.tcp) return { kind: "tcp", ...parseHostPort("--tcp", f.tcp) };
  if (f.rtuOverTcp) return { kind: "rtu-over-tcp", ...parseHostPort("--rtu-over-tcp", f.rtuOverTcp) };
  return {
    kind: "rtu",
    device: f.rtu!,
    baud: baudOverride ?? parseInteger("--baud", f.baud ?? "9600", 300, 921_600),
    parity: parityOverride ?? ((f.parity ?? "none") as "none" | "even" | "odd"),
    dataBits: Number(f.dataBits ?? 8) as 7 | 8,
    stopBits: Number(f.stopBits ?? 1) as 1 | 2,
  };
}

/** A line for one CLI call; opening it first turns a bad port into one clear line (exit 2). */
export async function openLine(transport: ModbusTransport): Promise<ModbusLine> {
  const link = new ModbusSerialLink(transport);
  try {
    await link.open();
  } catch (err) {
    throw new UserError((err as Error).message);
  }
  const line = new ModbusLine("cli", link, { interFrameMs: interFrameMs(transport) });
  line.acquire();
  return line;
}
