/**
 * `edge-agent ports`: the serial devices of this machine, by their stable /dev/serial/by-id
 * names. SerialPort.list() needs udevadm, which containers and minimal images lack, so the
 * by-id links and the usual /dev/tty* names are read directly as well.
 */
import { readdirSync, readlinkSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import type { Command } from "commander";
import { SerialPort } from "serialport";
import { printJson } from "./output.js";

export interface PortInfo {
  path: string;
  /** The stable name to put in a config, when there is one. */
  byId: string | null;
  manufacturer: string | null;
  serialNumber: string | null;
  source: "udev" | "by-id" | "dev";
}

const TTY = /^tty(USB|ACM|AMA|AML|S|XRUSB|mxc|O)\d+$|^serial\d+$|^ttyRS485/;

function byIdLinks(dir: string): Map<string, string> {
  const map = new Map<string, string>();
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return map;
  }
  for (const n of names) {
    try {
      map.set(resolve(dir, readlinkSync(join(dir, n))), join(dir, n));
    } catch {
      // not a link
    }
  }
  return map;
}

/** Lists serial ports; `devDir` is a parameter so tests can point it at a fake /dev. */
export async function listPorts(devDir = "/dev"): Promise<PortInfo[]> {
  const byId = byIdLinks(join(devDir, "serial", "by-id"));
  const ports = new Map<string, PortInfo>();
  if (devDir === "/dev") {
    try {
      for (const p of await SerialPort.list()) {
        ports.set(p.path, { path: p.path, byId: byId.get(p.path) ?? null, manufacturer: p.manufacturer ?? null, serialNumber: p.serialNumber ?? null, source: "udev" });
      }
    } catch {
      // no udevadm: fall through to the file system
    }
  }
  for (const [target, link] of byId) {
    if (!ports.has(target)) ports.set(target, { path: target, byId: link, manufacturer: null, serialNumber: null, source: "by-id" });
  }
  let names: string[] = [];
  try {
    names = readdirSync(devDir);
  } catch {
    // no /dev: nothing more to find
  }
  for (const n of names) {
    const path = join(devDir, n);
    if (!TTY.test(n) || ports.has(path)) continue;
    // Built-in 8250 UARTs exist as ttyS0–31 whether wired or not: list only the first few.
    if (/^ttyS\d+$/.test(n) && Number(n.slice(4)) > 3) continue;
    try {
      if (!statSync(path).isCharacterDevice()) continue;
    } catch {
      continue;
    }
    ports.set(path, { path, byId: byId.get(path) ?? null, manufacturer: null, serialNumber: null, source: "dev" });
  }
  return [...ports.values()].sort((a, b) => a.path.localeCompare(b.path));
}

export function registerPorts(program: Command): void {
  program
    .command("ports")
    .description("list serial devices, with the stable /dev/serial/by-id names to use in configs")
    .option("--json", "print as JSON")
    .action(async (flags: { json?: boolean }) => {
      const ports = await listPorts();
      if (flags.json) return printJson(ports);
      if (ports.length === 0) {
        process.stdout.write("no serial devices found (is the USB adapter plugged in? dmesg shows what the kernel saw)\n");
        return;
      }
      for (const p of ports) {
        const extra = [p.manufacturer, p.serialNumber && `s/n ${p.serialNumber}`].filter(Boolean).join(", ");
        process.stdout.write(`${p.path.padEnd(16)} ${p.byId ? `${basename(p.byId)}  (use ${p.byId})` : "(no stable name)"}${extra ? `  ${extra}` : ""}\n`);
      }
    });
}
