/**
 * `edge-agent simulate modbus`: serves simulated meters and charge controllers over Modbus TCP,
 * RTU on a serial device (e.g. one end of a socat pty pair) and RTU over TCP, with injectable
 * faults, so installers, the demo and tests have a slave to talk to without hardware.
 */
import type { Command } from "commander";
import { getProfile, profileIds } from "../../drivers/modbus/registry.js";
import type { ModbusProfile } from "../../drivers/modbus/types.js";
import { SimDevice } from "../simulators/modbus/device.js";
import {
  formatFault,
  ModbusSimulator,
  parseFault,
  type Fault,
  type SerialOptions,
  type SimListener,
} from "../simulators/modbus/server.js";
import { UserError } from "../model/errors.js";
import type { TargetFlags } from "./modbus-target.js";

/** The same connection flags as the technician's modbus commands, plus the simulator's own. */
export interface SimulateModbusFlags extends Omit<TargetFlags, "timeout"> {
  unit: string[];
  fault: string[];
  freeze?: boolean;
  json?: boolean;
}

export interface HostPort {
  host: string;
  port: number;
}

export interface SimulationPlan {
  units: Array<{ unit: number; profile: ModbusProfile }>;
  faults: Array<{ unit: number; fault: Fault }>;
  tcp?: HostPort;
  rtuOverTcp?: HostPort;
  rtu?: SerialOptions;
  freeze: boolean;
}

export interface RunningSimulation {
  simulator: ModbusSimulator;
  listeners: SimListener[];
  plan: SimulationPlan;
}

/** Where the simulator listens, as printed with --json. */
export type ListenerInfo =
  | { transport: "tcp" | "rtu-over-tcp"; host: string; port: number }
  | { transport: "rtu"; path: string; baudRate: number; parity: string; dataBits: number; stopBits: number };

/** `127.0.0.1:5020`, `[::1]:502`, `localhost:0` (port 0 = any free port). */
export function parseHostPort(flag: string, text: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UserError(`${flag}: expected HOST:PORT like 127.0.0.1:5020 (port 0 picks a free one), got '${text}'`);
  return { host: (m[1] ?? m[2])!, port };
}

/** `1=sdm630` → unit 1 served with the sdm630 profile. */
export function parseUnitSpec(text: string): { unit: number; profile: ModbusProfile } {
  const m = /^\s*(\d+)\s*=\s*([\w.-]+)\s*$/.exec(text);
  if (!m) throw new UserError(`--unit: expected ID=PROFILE like 1=sdm630, got '${text}' (profiles: ${knownProfiles()})`);
  const unit = Number(m[1]);
  if (unit < 1 || unit > 247) throw new UserError(`--unit ${text}: unit id must be 1–247 (0 is broadcast), got ${unit}`);
  const profile = getProfile(m[2]!);
  if (!profile) throw new UserError(`--unit ${text}: unknown profile '${m[2]}' (known: ${knownProfiles()})`);
  return { unit, profile };
}

/** `2=slow:800` → unit 2 answers 800 ms late. */
export function parseFaultSpec(text: string): { unit: number; fault: Fault } {
  const m = /^\s*(\d+)\s*=\s*(\S+)\s*$/.exec(text);
  if (!m) throw new UserError(`--fault: expected ID=KIND[:ARG] like 2=slow:800, got '${text}'`);
  const unit = Number(m[1]);
  if (unit < 1 || unit > 247) throw new UserError(`--fault ${text}: unit id must be 1–247, got ${unit}`);
  try {
    return { unit, fault: parseFault(m[2]!) };
  } catch (err) {
    throw new UserError(`--fault ${text}: ${(err as Error).message}`);
  }
}

function knownProfiles(): string {
  return [...profileIds()].sort().join(", ");
}

function parseChoice<T extends string | number>(flag: string, text: string, choices: readonly T[]): T {
  const found = choices.find((c) => String(c) === text.trim().toLowerCase());
  if (found === undefined) throw new UserError(`${flag}: expected one of ${choices.join(", ")}, got '${text}'`);
  return found;
}

/** Checks every flag and resolves profiles; nothing is opened yet. */
export function planSimulation(flags: SimulateModbusFlags): SimulationPlan {
  if (!flags.tcp && !flags.rtuOverTcp && !flags.rtu) {
    throw new UserError("simulate modbus: give at least one of --tcp HOST:PORT, --rtu-over-tcp HOST:PORT, --rtu DEVICE");
  }
  if (flags.unit.length === 0) {
    throw new UserError(`simulate modbus: give at least one --unit ID=PROFILE, e.g. --unit 1=sdm630 (profiles: ${knownProfiles()})`);
  }
  const units = flags.unit.map(parseUnitSpec);
  const seen = new Set<number>();
  for (const u of units) {
    if (seen.has(u.unit)) throw new UserError(`--unit: unit ${u.unit} is given twice`);
    seen.add(u.unit);
  }
  const faults = flags.fault.map(parseFaultSpec);
  for (const f of faults) {
    if (!seen.has(f.unit)) throw new UserError(`--fault ${f.unit}=${formatFault(f.fault)}: unit ${f.unit} is not simulated (add --unit ${f.unit}=PROFILE)`);
  }
  const serialFlag = (["baud", "parity", "dataBits", "stopBits"] as const).find((k) => flags[k] !== undefined);
  if (serialFlag && !flags.rtu) {
    throw new UserError(`--${serialFlag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} applies to --rtu only`);
  }
  const plan: SimulationPlan = { units: units.sort((a, b) => a.unit - b.unit), faults, freeze: flags.freeze ?? false };
  if (flags.tcp) plan.tcp = parseHostPort("--tcp", flags.tcp);
  if (flags.rtuOverTcp) plan.rtuOverTcp = parseHostPort("--rtu-over-tcp", flags.rtuOverTcp);
  if (flags.rtu) {
    const baudRate = Number(flags.baud ?? "9600");
    if (!Number.isInteger(baudRate) || baudRate < 50 || baudRate > 4_000_000) {
      throw new UserError(`--baud: expected a baud rate like 9600, got '${flags.baud}'`);
    }
    plan.rtu = {
      path: flags.rtu,
      baudRate,
      parity: parseChoice("--parity", flags.parity ?? "none", ["none", "even", "odd"] as const),
      dataBits: parseChoice("--data-bits", flags.dataBits ?? "8", [7, 8] as const),
      stopBits: parseChoice("--stop-bits", flags.stopBits ?? "1", [1, 2] as const),
    };
  }
  return plan;
}

function listenError(flag: string, value: string, err: unknown): UserError {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case "EADDRINUSE":
      return new UserError(`${flag} ${value}: the port is already in use`);
    case "EACCES":
      return new UserError(`${flag} ${value}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)`);
    case "EADDRNOTAVAIL":
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return new UserError(`${flag} ${value}: no such address on this machine`);
    default:
      return new UserError(`${flag} ${value}: cannot listen (${e.message})`);
  }
}

/** Builds the devices and opens every listener; on any failure closes what was opened. */
export async function startSimulation(plan: SimulationPlan): Promise<RunningSimulation> {
  const simulator = new ModbusSimulator();
  for (const u of plan.units) simulator.addUnit(u.unit, new SimDevice(u.profile, { freeze: plan.freeze, seed: u.unit }));
  for (const f of plan.faults) simulator.setFault(f.unit, f.fault);
  const listeners: SimListener[] = [];
  try {
    if (plan.tcp) {
      const hp = plan.tcp;
      listeners.push(await simulator.listenTcp(hp).catch((err: unknown) => Promise.reject(listenError("--tcp", `${hp.host}:${hp.port}`, err))));
    }
    if (plan.rtuOverTcp) {
      const hp = plan.rtuOverTcp;
      listeners.push(
        await simulator.listenRtuOverTcp(hp).catch((err: unknown) => Promise.reject(listenError("--rtu-over-tcp", `${hp.host}:${hp.port}`, err))),
      );
    }
    if (plan.rtu) {
      const rtu = plan.rtu;
      listeners.push(
        await simulator.openSerial(rtu).catch((err: unknown) => Promise.reject(new UserError(`--rtu ${rtu.path}: cannot open the serial device (${(err as Error).message})`))),
      );
    }
  } catch (err) {
    await simulator.close();
    throw err;
  }
  return { simulator, listeners, plan };
}

export function listenerInfo(l: SimListener): ListenerInfo {
  if (l.transport === "rtu") {
    return { transport: "rtu", path: l.path, baudRate: l.baudRate, parity: l.parity, dataBits: l.dataBits, stopBits: l.stopBits };
  }
  return { transport: l.transport, host: l.host, port: l.port };
}

function describeWhere(l: ListenerInfo): string {
  if (l.transport === "rtu") return `rtu ${l.path} ${l.baudRate} ${l.dataBits}${l.parity[0]!.toUpperCase()}${l.stopBits}`;
  const host = l.host.includes(":") ? `[${l.host}]` : l.host;
  return `${l.transport} ${host}:${l.port}`;
}

/** One line per listener: `modbus simulator: unit 1 sdm630, unit 2 epever on tcp 127.0.0.1:5020`. */
export function formatListening(run: RunningSimulation): string[] {
  const units = run.plan.units.map((u) => `unit ${u.unit} ${u.profile.id}`).join(", ");
  const faults = run.plan.faults.length > 0 ? ` (faults: ${run.plan.faults.map((f) => `unit ${f.unit} ${formatFault(f.fault)}`).join(", ")})` : "";
  const frozen = run.plan.freeze ? " (frozen)" : "";
  return run.listeners.map((l) => `modbus simulator: ${units} on ${describeWhere(listenerInfo(l))}${faults}${frozen}`);
}

export function simulationJson(run: RunningSimulation): object {
  return {
    units: run.plan.units.map((u) => ({ unit: u.unit, profile: u.profile.id })),
    faults: run.plan.faults.map((f) => ({ unit: f.unit, fault: formatFault(f.fault) })),
    listeners: run.listeners.map(listenerInfo),
  };
}

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      process.off("SIGINT", done);
      process.off("SIGTERM", done);
      resolve();
    };
    process.once("SIGINT", done);
    process.once("SIGTERM", done);
  });
}

export interface SimulateDeps {
  /** Resolves when the simulator should stop; default SIGINT or SIGTERM. */
  stop?: (run: RunningSimulation) => Promise<unknown>;
  /** Where lines go; default stdout. */
  write?: (line: string) => void;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function registerSimulate(program: Command, deps: SimulateDeps = {}): void {
  const simulate = program.command("simulate").description("simulated field devices for tests, demos and installer training");
  simulate
    .command("modbus")
    .description("serve simulated Modbus devices over TCP, RTU on a serial device, or RTU over TCP, with injectable faults")
    .option("--tcp <host:port>", "Modbus TCP listener, e.g. 127.0.0.1:5020 (port 0 = any free port)")
    .option("--rtu-over-tcp <host:port>", "RTU frames over TCP listener, like a serial-to-Ethernet converter")
    .option("--rtu <device>", "serial device, e.g. /dev/ttyUSB0 or one end of a socat pty pair")
    .option("--baud <n>", "serial baud rate (default 9600)")
    .option("--parity <parity>", "none, even or odd (default none)")
    .option("--data-bits <n>", "7 or 8 (default 8)")
    .option("--stop-bits <n>", "1 or 2 (default 1)")
    .option("--unit <id=profile>", `a device to serve, repeatable: --unit 1=sdm630 --unit 2=epever (profiles: ${knownProfiles()})`, collect, [])
    .option("--fault <id=kind>", "misbehave, repeatable: no-answer, exception:CODE, bad-crc, slow:MS, truncated, wrong-unit", collect, [])
    .option("--freeze", "values do not move (to compare with another client)")
    .option("--json", "print one JSON line with the bound addresses, then nothing else")
    .addHelpText(
      "after",
      `
Example with a virtual serial line:
  socat -d -d pty,raw,echo=0,link=/tmp/ttyA pty,raw,echo=0,link=/tmp/ttyB &
  edge-agent simulate modbus --rtu /tmp/ttyA --baud 9600 --unit 1=sdm630
  mbpoll -m rtu -b 9600 -P none -a 1 -0 -r 0 -c 2 -t 3:float -B -1 /tmp/ttyB`,
    )
    .action(async (flags: SimulateModbusFlags) => {
      const write = deps.write ?? ((line: string) => process.stdout.write(`${line}\n`));
      const run = await startSimulation(planSimulation(flags));
      try {
        if (flags.json) write(JSON.stringify(simulationJson(run)));
        else for (const line of formatListening(run)) write(line);
        await (deps.stop ? deps.stop(run) : untilSignal());
      } finally {
        await run.simulator.close();
      }
    });
}
