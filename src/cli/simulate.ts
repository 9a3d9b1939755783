/**
 * `edge-agent simulate modbus`: serves simulated meters and charge controllers over Modbus TCP,
 * RTU on a serial device (e.g. one end of a socat pty pair) and RTU over TCP, with injectable
 * faults, so installers, the demo and tests have a slave to talk to without hardware.
 * `edge-agent simulate board`: a firmware-bridge board (docs/firmware-bridge.md) on a serial
 * device, with scriptable faults, for trying a gateway's bridge config without the board.
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";
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
import { SerialLink } from "../buses/serial/serial-link.js";
import type { ByteLink } from "../buses/serial/byte-link.js";
import { MIN_MAX_FRAME } from "../bridge/frame.js";
import { MAX_WINDOW } from "../bridge/link.js";
import { formatSchemaHash } from "../bridge/schema.js";
import {
  CommandStatus,
  parseHex,
  RESET_REASON_NAMES,
  SimBoard,
  type SimBoardEvents,
  type SimBoardFaults,
  type SimBoardOptions,
  type SimBoardStats,
  toHex,
} from "../simulators/board/board.js";
import { TwoSlotFlash } from "../simulators/board/flash.js";
import { boardProfile, boardProfileNames } from "../simulators/board/profiles.js";
import { buildTestImage, parseVersion } from "../update/image.js";
import type { TargetFlags } from "./modbus-target.js";
import { parseDuration } from "./output.js";

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

// ---- simulate board -------------------------------------------------------------------------

export interface SimulateBoardFlags {
  port: string;
  id?: string;
  baud?: string;
  interval?: string;
  profile?: string;
  seed?: string;
  faults?: string;
  persistent?: boolean;
  schemaHash?: string;
  ring?: string;
  maxFrame?: string;
  window?: string;
  flash?: string;
  firmwareVersion?: string;
  json?: boolean;
}

/** Faults repeated on a timer, for a technician's long run (the continuous ones go to SimBoard). */
export interface ScriptedBoardFaults {
  /** A reset in the middle of a frame this often. */
  resetEveryMs?: number;
  /** A DTR reboot this often. */
  dtrEveryMs?: number;
  /** A burst of wrong-baud bytes this often (each lasting a tenth of it, at most 3 s). */
  wrongBaudEveryMs?: number;
  /** The last child vanishes this often, and comes back half way. */
  vanishEveryMs?: number;
}

export interface BoardPlan {
  port: string;
  baudRate: number;
  board: Omit<SimBoardOptions, "port">;
  scripted: ScriptedBoardFaults;
  /** The --faults text as given, for the start line. */
  faultsText: string;
  /** Where the flash is kept between runs (--flash). */
  flashFile?: string | undefined;
}

/** The board's flash from its file, or a new one whose slot 0 holds a test image of `version`. */
function loadFlash(path: string, version: string): TwoSlotFlash {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw new UserError(`--flash ${path}: ${(err as Error).message}`);
    return new TwoSlotFlash({ initial: buildTestImage({ version }) });
  }
  try {
    return TwoSlotFlash.load(text);
  } catch (err) {
    throw new UserError(`--flash ${path}: not a simulated board's flash (${(err as Error).message})`);
  }
}

/** Writes the flash so a kill (a power cut) keeps what was written, as real flash does. */
function saveFlash(path: string, flash: TwoSlotFlash): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, flash.save());
  renameSync(tmp, path);
}

const BOARD_FAULT_HELP = "bitflip=P, drop=P, dup=P (P a probability, 0-1), short, spam=DUR, flood, reset=DUR, dtr=DUR, wrongbaud=DUR, vanish=DUR";

function faultDuration(kind: string, value: string | undefined): number {
  const ms = parseDuration(value, ["ms", "s", "m", "h"], { flag: `--faults ${kind}` });
  if (ms === undefined || ms <= 0) throw new UserError(`--faults ${kind}=${value ?? ""}: expected a duration like 500ms, 5s or 2m`);
  return ms;
}

function faultProbability(kind: string, value: string | undefined): number {
  const p = Number(value);
  if (value === undefined || value.trim() === "" || !Number.isFinite(p) || p < 0 || p > 1) {
    throw new UserError(`--faults ${kind}=${value ?? ""}: expected a probability from 0 to 1, like 0.01`);
  }
  return p;
}

/** `bitflip=0.001,drop=0.01,spam=5s,short` → the continuous and the scripted faults. */
export function parseBoardFaults(text: string): { faults: SimBoardFaults; scripted: ScriptedBoardFaults } {
  const faults: SimBoardFaults = {};
  const scripted: ScriptedBoardFaults = {};
  for (const item of text.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const eq = item.indexOf("=");
    const kind = (eq < 0 ? item : item.slice(0, eq)).trim().toLowerCase();
    const value = eq < 0 ? undefined : item.slice(eq + 1).trim();
    const flag = () => {
      if (value !== undefined) throw new UserError(`--faults ${item}: ${kind} takes no value`);
      return true;
    };
    switch (kind) {
      case "bitflip":
        faults.bitFlip = faultProbability(kind, value);
        break;
      case "drop":
        faults.drop = faultProbability(kind, value);
        break;
      case "dup":
        faults.duplicate = faultProbability(kind, value);
        break;
      case "short":
        faults.shortWrites = flag();
        break;
      case "flood":
        faults.flood = flag();
        break;
      case "spam":
        faults.spamEveryMs = faultDuration(kind, value);
        break;
      case "reset":
        scripted.resetEveryMs = faultDuration(kind, value);
        break;
      case "dtr":
        scripted.dtrEveryMs = faultDuration(kind, value);
        break;
      case "wrongbaud":
        scripted.wrongBaudEveryMs = faultDuration(kind, value);
        break;
      case "vanish":
        scripted.vanishEveryMs = faultDuration(kind, value);
        break;
      default:
        throw new UserError(`--faults: unknown fault '${kind}' (known: ${BOARD_FAULT_HELP})`);
    }
  }
  return { faults, scripted };
}

/** Checks every flag; nothing is opened yet. */
export function planBoard(flags: SimulateBoardFlags): BoardPlan {
  if (!flags.port) throw new UserError("simulate board: give --port DEVICE, e.g. one end of a socat pty pair");
  const baudRate = Number(flags.baud ?? "115200");
  if (!Number.isInteger(baudRate) || baudRate < 50 || baudRate > 4_000_000) throw new UserError(`--baud: expected a baud rate like 115200, got '${flags.baud}'`);
  const profileName = flags.profile ?? "room-node";
  const profile = boardProfile(profileName);
  if (!profile) throw new UserError(`--profile: unknown board profile '${profileName}' (known: ${boardProfileNames().join(", ")})`);
  const intervalMs = flags.interval === undefined ? 1000 : parseDuration(flags.interval, ["ms", "s", "m"], { flag: "--interval" });
  if (intervalMs === undefined || intervalMs < 10) throw new UserError(`--interval: expected a duration of at least 10ms like 1s or 500ms, got '${flags.interval}'`);
  const seed = flags.seed === undefined ? 1 : Number(flags.seed);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new UserError(`--seed: expected a whole number from 0 to 4294967295, got '${flags.seed}'`);
  const board: Omit<SimBoardOptions, "port"> = { profile, intervalMs, seed, persistent: flags.persistent ?? false };
  if (flags.id !== undefined) {
    const id = parseHex(flags.id);
    if (!id || id.length < 4 || id.length > 16) throw new UserError(`--id: expected the board id as 4 to 16 bytes in hex, like 240ac45f9e10, got '${flags.id}'`);
    board.boardId = toHex(id);
  }
  if (flags.schemaHash !== undefined) {
    const h = parseHex(flags.schemaHash.padStart(8, "0"));
    if (!h || h.length !== 4) throw new UserError(`--schema-hash: expected 8 hex digits like 0x0badf00d, got '${flags.schemaHash}'`);
    board.schemaHash = ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
  }
  if (flags.ring !== undefined) {
    const n = Number(flags.ring);
    if (!Number.isInteger(n) || n < 1 || n > 1_000_000) throw new UserError(`--ring: expected a number of readings from 1 to 1000000, got '${flags.ring}'`);
    board.ringCapacity = n;
  }
  if (flags.maxFrame !== undefined) {
    const n = Number(flags.maxFrame);
    if (!/^\s*\d+\s*$/.test(flags.maxFrame) || n < MIN_MAX_FRAME || n > 65535) {
      throw new UserError(`--max-frame: expected the largest frame in bytes, from ${MIN_MAX_FRAME} to 65535 (e.g. 1024), got '${flags.maxFrame}'`);
    }
    board.maxFrame = n;
  }
  if (flags.window !== undefined) {
    const n = Number(flags.window);
    if (!/^\s*\d+\s*$/.test(flags.window) || n < 1 || n > MAX_WINDOW) {
      throw new UserError(`--window: expected the frames in flight, a whole number from 1 to ${MAX_WINDOW}, got '${flags.window}'`);
    }
    board.window = n;
  }
  const { faults, scripted } = parseBoardFaults(flags.faults ?? "");
  board.faults = faults;
  if (flags.firmwareVersion !== undefined && !parseVersion(flags.firmwareVersion)) throw new UserError(`--firmware-version: expected a version like 1.0.0, got '${flags.firmwareVersion}'`);
  if (flags.flash !== undefined) board.flash = loadFlash(flags.flash, flags.firmwareVersion ?? "1.0.0");
  else if (flags.firmwareVersion !== undefined) throw new UserError("--firmware-version: give --flash FILE too (the version is that of the image in the board's flash)");
  return { port: flags.port, baudRate, board, scripted, faultsText: flags.faults ?? "", flashFile: flags.flash };
}

export interface RunningBoard {
  board: SimBoard;
  plan: BoardPlan;
  /** Resolves with the reason when the port closes by itself (the other end went away). */
  closed: Promise<string>;
  stop(): Promise<void>;
}

/**
 * Opens the port, starts the board and the scripted faults; `onEvent` hears every board event,
 * `announce` is called once the board exists, before its first event.
 */
export async function startBoard(plan: BoardPlan, onEvent: BoardEventSink, opts: { port?: ByteLink; announce?: (board: SimBoard) => void } = {}): Promise<RunningBoard> {
  const link = opts.port ?? new SerialLink({ path: plan.port, baudRate: plan.baudRate });
  const flash = plan.board.flash;
  const file = plan.flashFile;
  const board = new SimBoard({ ...plan.board, port: link, ...(flash && file ? { flashChanged: () => saveFlash(file, flash) } : {}) });
  const opened = !link.isOpen;
  try {
    if (opened) await link.open();
  } catch (err) {
    throw new UserError(`--port ${plan.port}: cannot open the serial device (${(err as Error).message})`);
  }
  opts.announce?.(board);
  let closedWith: (reason: string) => void = () => undefined;
  const closed = new Promise<string>((r) => (closedWith = r));
  for (const name of BOARD_EVENTS) board.on(name, (e) => onEvent(name, e as SimBoardEvents[typeof name]));
  board.on("closed", (e) => closedWith(e.reason));
  await board.start();
  const timers: Array<ReturnType<typeof setInterval>> = [];
  const every = (ms: number | undefined, fn: () => void) => {
    if (ms !== undefined) timers.push(setInterval(fn, ms));
  };
  const s = plan.scripted;
  every(s.resetEveryMs, () => board.resetMidFrame());
  every(s.dtrEveryMs, () => board.dtrReboot());
  every(s.wrongBaudEveryMs, () => board.wrongBaud(Math.min(3000, s.wrongBaudEveryMs! / 10)));
  const child = board.profile.children.at(-1)?.id;
  if (child !== undefined) {
    every(s.vanishEveryMs, () => {
      board.setChildPresent(child, false);
      timers.push(setTimeout(() => board.setChildPresent(child, true), s.vanishEveryMs! / 2));
    });
  }
  return {
    board,
    plan,
    closed,
    stop: async () => {
      for (const t of timers) clearTimeout(t);
      await board.stop();
      if (opened) await link.close();
    },
  };
}

export type BoardEventSink = <K extends keyof SimBoardEvents>(event: K, e: SimBoardEvents[K]) => void;

const BOARD_EVENTS = ["hello", "session", "refused", "sessionLost", "acked", "command", "reboot", "image", "child", "wrongBaud", "closed", "error"] as const;

const hex32 = (n: number) => formatSchemaHash(n);
const STATUS_NAMES = new Map<CommandStatus, string>([
  [CommandStatus.COMMAND_OK, "applied"],
  [CommandStatus.COMMAND_REFUSED, "refused"],
  [CommandStatus.COMMAND_FAILED, "failed"],
  [CommandStatus.COMMAND_UNKNOWN_POINT, "refused (unknown point)"],
]);

/** The line a technician reads for one event; undefined for events not worth a line. */
export function formatBoardEvent<K extends keyof SimBoardEvents>(event: K, e: SimBoardEvents[K]): string | undefined {
  const v = e as SimBoardEvents[keyof SimBoardEvents];
  switch (event) {
    case "hello": {
      const h = v as SimBoardEvents["hello"];
      return `hello: boot ${hex32(h.bootId)} (${RESET_REASON_NAMES.get(h.resetReason) ?? "unknown"}), schema ${hex32(h.schemaHash)}; waiting for the gateway`;
    }
    case "session": {
      const s = v as SimBoardEvents["session"];
      return `session up: max frame ${s.maxFrame} B, window ${s.window}, heartbeat ${s.heartbeatMs} ms`;
    }
    case "image": {
      const i = v as SimBoardEvents["image"];
      const what = { normal: "", "test-swap": " (test boot of a new image)", "permanent-swap": " (new image, permanent)", revert: " (REVERTED: the test image was not confirmed)" }[i.boot];
      return `running firmware ${i.version}${what}, image ${i.hash.slice(0, 16)}…`;
    }
    case "refused":
      return `refused by the gateway: ${(v as SimBoardEvents["refused"]).reason} (quiet until it asks again)`;
    case "sessionLost":
      return `session lost: ${(v as SimBoardEvents["sessionLost"]).reason}`;
    case "acked": {
      const a = v as SimBoardEvents["acked"];
      return `acked up to ${a.uptoSeq} (boot ${hex32(a.bootId)}), ${a.ringUsed} waiting in the ring`;
    }
    case "command": {
      const c = v as SimBoardEvents["command"];
      const status = STATUS_NAMES.get(c.status) ?? `status ${c.status}`;
      return `command ${c.id}: ${c.point} = ${String(c.value)} ${status}${c.message ? `: ${c.message}` : ""}`;
    }
    case "reboot": {
      const r = v as SimBoardEvents["reboot"];
      return `reboot (${RESET_REASON_NAMES.get(r.reason) ?? "unknown"}): new boot ${hex32(r.bootId)}`;
    }
    case "child": {
      const c = v as SimBoardEvents["child"];
      return `child ${c.child} ${c.present ? "came back" : "vanished"}`;
    }
    case "wrongBaud":
      return (v as SimBoardEvents["wrongBaud"]).active ? "wrong baud: sending garbled bytes" : "baud right again";
    case "closed":
      return `port closed: ${(v as SimBoardEvents["closed"]).reason}`;
    case "error": {
      const err = (v as SimBoardEvents["error"]).error;
      return `error: ${err instanceof Error ? err.message : String(err)}`;
    }
    default:
      return undefined;
  }
}

export function formatBoardStart(plan: BoardPlan, board: SimBoard): string {
  const faults = plan.faultsText ? ` (faults: ${plan.faultsText})` : "";
  const persistent = plan.board.persistent ? ", persistent ring" : "";
  return `board simulator: ${board.profile.name} ${toHex(board.boardId)} on ${plan.port} at ${plan.baudRate} baud${persistent}${faults}`;
}

export function formatBoardStats(s: SimBoardStats): string {
  const lost = s.readingsLostInReset > 0 ? `, ${s.readingsLostInReset} lost in resets` : "";
  return `stopped: ${s.readingsMade} readings made, ${s.readingsAcked} acked, ${s.readingsResent} resent, ${s.readingsDropped} dropped (ring full)${lost}, ${s.ringUsed} still in the ring`;
}

function jsonLine(event: string, e: object): string {
  return JSON.stringify({ event, ...e }, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v instanceof Error ? v.message : v));
}

/** Acks come with every batch: at most one line a second says how far they got. */
function ackThrottle(write: (line: string) => void): BoardEventSink {
  let last = -Infinity;
  return (event, e) => {
    if (event === "acked") {
      const now = Date.now();
      if (now - last < 1000) return;
      last = now;
    }
    const line = formatBoardEvent(event, e);
    if (line !== undefined) write(line);
  };
}

export interface SimulateBoardDeps {
  /** Resolves when the board should stop; default SIGINT or SIGTERM (or the port closing). */
  stop?: (run: RunningBoard) => Promise<unknown>;
  /** The board's byte stream instead of the serial device (tests). */
  port?: ByteLink;
}

function registerSimulateBoard(simulate: Command, deps: SimulateDeps): void {
  simulate
    .command("board")
    .description("a firmware-bridge board (ESP32/STM32 talking docs/firmware-bridge.md) on a serial device, with faults on request")
    .requiredOption("--port <device>", "serial device the gateway's bridge listens on the other end of, e.g. one end of a socat pty pair")
    .option("--id <hex>", "board unique id, 4 to 16 bytes in hex (default: derived from --seed)")
    .option("--baud <n>", "baud rate (default 115200)")
    .option("--interval <duration>", "a reading of each sensor this often (default 1s)")
    .option("--profile <name>", `what the board is (default room-node; known: ${boardProfileNames().join(", ")})`)
    .option("--seed <n>", "seeds the values, the ids and the faults: the same seed gives the same run (default 1)")
    .option("--faults <list>", `misbehave, comma-separated: ${BOARD_FAULT_HELP}`)
    .option("--persistent", "the reading buffer survives a reboot (kept readings are resent with their old boot id)")
    .option("--schema-hash <hex>", "announce another schema hash, as a board built from another bridge.proto (the gateway must refuse it)")
    .option("--ring <n>", "readings the board buffers until the gateway acknowledges them (default 1000)")
    .option("--max-frame <bytes>", `largest frame the board offers in its Hello, ${MIN_MAX_FRAME} to 65535 (default ${MIN_MAX_FRAME}); the session uses the smaller of this and the gateway's`)
    .option("--window <n>", `reliable frames the board lets out unacknowledged, 1 to ${MAX_WINDOW} (default 8); the session uses the smaller of this and the gateway's`)
    .option("--flash <file>", "give the board two image slots and a bootloader, kept in this file: it then takes firmware updates (SMP on the management channel); a kill is a power cut")
    .option("--firmware-version <version>", "the version of the image a new --flash file starts with (default 1.0.0)")
    .option("--json", "one JSON line per event instead of text")
    .addHelpText(
      "after",
      `
What it does: says Hello, describes its points (room-node: temperature, humidity, co2, a
writable setpoint 5..30 and a led; two battery sensors sensor-a and sensor-b relayed by radio),
sends readings and keeps each one until the gateway acknowledges it, resends the rest after a
new session, answers time requests and commands. One line per event; Ctrl-C stops it.

Frames: each Readings frame is built when the link can take it (a window slot free), from the
oldest unsent readings, as many as fit the session's max frame. The defaults (256-byte frames,
window 8) are a small board's; for throughput tests use e.g. --max-frame 1024 --window 16 with
--faults flood (a 1024-byte frame holds about 55 readings; 256 bytes, about 13).

Faults (--faults):
  bitflip=P   flip a bit of each byte written with probability P (e.g. 0.001)
  drop=P      lose a frame with probability P;  dup=P  send a frame twice
  short       write in chunks of 1-8 bytes with short pauses (USB-serial short writes)
  spam=DUR    print raw log text between frames this often (e.g. 5s)
  flood       readings as fast as the link takes them (throughput)
  reset=DUR   reset in the middle of a frame this often;  dtr=DUR  reboot by DTR this often
  wrongbaud=DUR  garbled bytes, as at a wrong baud rate, for a tenth of DUR (at most 3s) every DUR
  vanish=DUR  the last relayed sensor vanishes every DUR and comes back half way

Example with a virtual serial line:
  socat -d -d pty,raw,echo=0,link=/tmp/ttyA pty,raw,echo=0,link=/tmp/ttyB &
  edge-agent simulate board --port /tmp/ttyB --id 240ac45f9e10 --faults drop=0.01,spam=5s
  # and a bridge source with port: /tmp/ttyA in the agent's config`,
    )
    .action(async (flags: SimulateBoardFlags) => {
      const write = deps.write ?? ((line: string) => process.stdout.write(`${line}\n`));
      const plan = planBoard(flags);
      const sink: BoardEventSink = flags.json ? (event, e) => write(jsonLine(event, e)) : ackThrottle(write);
      const announce = (board: SimBoard) =>
        write(flags.json ? jsonLine("start", { profile: board.profile.name, boardId: toHex(board.boardId), port: plan.port, baud: plan.baudRate }) : formatBoardStart(plan, board));
      const run = await startBoard(plan, sink, { port: deps.board?.port, announce });
      try {
        await Promise.race([deps.board?.stop ? deps.board.stop(run) : untilSignal(), run.closed]);
      } finally {
        await run.stop();
        const stats = run.board.stats();
        const { link: _link, ...counts } = stats;
        write(flags.json ? jsonLine("stopped", counts) : formatBoardStats(stats));
      }
    });
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
  board?: SimulateBoardDeps;
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
  registerSimulateBoard(simulate, deps);
}
