/**
 * Firmware bridge benchmarks for the README (issue 13, "Speed"; timing claims live here, not in tests).
 * Usage: npm run bench:bridge [-- --only line|flood|command|update] [--seconds 25] [--commands 200] [--node-flags="..."]
 * (--seconds is per phase; each line run takes at least 12 s of line.)
 *
 * Every phase runs the real agent (`edge-agent run`, its own process, with the node flags and
 * environment of systemd/edge-agent.service unless --node-flags replaces them) with one
 * `type: bridge` source on a socat pty, storing into its outbox in a temp dir (the uplink points
 * at a closed port: stored, never sent). Boards run in their own processes.
 *
 * line: 115200 8N1 over a pty. A pty does not throttle, so a line emulator (this script again, in
 *   a child process) sits between two socat pairs, board ⇄ [pty] ⇄ line ⇄ [pty] ⇄ agent, and lets
 *   each direction through at 11,520 bytes/s (one byte per 86.8 µs, full duplex). It decodes every
 *   frame it passes, so the wire is accounted byte for byte, between exact frame boundaries (the
 *   sample starts and ends at a delimiter, timed by the line). Two shares of the line's raw
 *   capacity (board → gateway): frame payloads = the protobuf messages of frames sent for the
 *   first time, heartbeats and pure acks excepted (what framing — COBS, delimiters, header, CRC —
 *   and acks do not take: the issue's goal), and, stricter, the encoded `Reading` messages only
 *   (point id, board time, value, quality; each counted once; not their repeated-field tag and
 *   length nor the Readings envelope). Boards: the C reference firmware (build/ebp-host) and
 *   `edge-agent simulate board --faults flood --max-frame 1024` (SimBoard).
 * flood: the same, without the line emulator (one socat pair, unthrottled): readings/s into the
 *   outbox, from `status` over the control socket, and the agent's CPU from /proc; next to a raw
 *   baseline in this process: the same wire bytes decoded (COBS, CRC, protobuf) and appended to
 *   an outbox (same sync) in the same batches, with no serial port, link or session.
 * command: N writes of a board point (setpoint of ebp-host) through the agent's control socket,
 *   as `edge-agent bridge send` sends them (command path, board, read-back), one after another,
 *   at 115200 (line emulator) and unthrottled; with the link's own round trip (srtt) from status.
 * update: a firmware update (issue 14) of the board simulator with two slots (`simulate board
 *   --flash`) through the line emulator at 115200 (128 KiB image) and 921600 (512 KiB): the
 *   upload's throughput as a share of the line's raw rate (image bytes / upload time, the time
 *   from the job's `uploading` to its `testing`, sampled every 20 ms), and the time from the
 *   command to `confirmed`, with the health gate (window 3 s here) shown apart.
 * Needs socat and the C host (make -C drivers/bridge/firmware). Every child and temp dir is
 * removed on exit, error or Ctrl-C.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { SerialPort } from "serialport";
import { validateConfig } from "../src/agent/config.js";
import { FrameDecoder } from "../src/bridge/decoder.js";
import { CHANNEL, encodeFrame, FLAG, FRAME_OVERHEAD } from "../src/bridge/frame.js";
import { seqAfter } from "../src/bridge/link.js";
import { decodeLink, decodeTelemetry, encodeTelemetry, Quality, ReadingSchema } from "../src/bridge/messages.js";
import type { AgentStatus } from "../src/model/status.js";
import type { Reading } from "../src/model/reading.js";
import { askAgent, controlSocketPath } from "../src/ops/control-socket.js";
import { Outbox } from "../src/store/outbox.js";
import { fmt, median } from "./bench-util.js";

const OPTIONS = {
  options: {
    only: { type: "string" },
    seconds: { type: "string", default: "25" },
    commands: { type: "string", default: "200" },
    "node-flags": { type: "string" },
    // Internal: this script started as the line emulator (a child of itself).
    relay: { type: "string" },
  },
} as const;

function parseOptions() {
  try {
    return parseArgs(OPTIONS).values;
  } catch (err) {
    const first = (err as Error).message.split("\n")[0]!;
    console.error(`bench-bridge: ${first}${first.includes("node-flags") ? ' (write --node-flags="--flag ...", with the =)' : ""}`);
    process.exit(2);
  }
}
const values = parseOptions();

const SELF = fileURLToPath(import.meta.url);
const MAIN = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const FIRMWARE = fileURLToPath(new URL("../../drivers/bridge/firmware", import.meta.url));
const HOST = join(FIRMWARE, "build/ebp-host");
const BAUD = 115_200;
/** 8N1: a start bit, 8 data bits, a stop bit per byte. */
const LINE_BYTES_PER_S = BAUD / 10;
const BOARD = "board";

// ---------------------------------------------------------------------------------------------
// Cleanup: every child and temp dir is registered here and removed however the process ends.

const children = new Set<ChildProcess>();
const dirs = new Set<string>();

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.add(dir);
  return dir;
}

function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  dirs.delete(dir);
}

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** Stops one child: SIGTERM, then SIGKILL after 2 s. */
async function stopChild(child: ChildProcess | null | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
  await gone;
  clearTimeout(timer);
}

function cleanupSync(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}

function onSignal(signal: NodeJS.Signals): void {
  console.error(`\nbench-bridge: ${signal}, cleaning up`);
  cleanupSync();
  process.exit(signal === "SIGINT" ? 130 : 143);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

/** CPU seconds (user + system) used so far by another process, from /proc (Linux); null elsewhere. */
function cpuSeconds(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return null;
  }
}

/** Threads of another process, from /proc. */
function threads(pid: number | undefined): number | null {
  try {
    const m = /^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The node flags and environment of systemd/edge-agent.service (as bench-modbus reads them). */
function unitNodeSettings(): { flags: string[]; env: Record<string, string> } {
  const unit = readFileSync(fileURLToPath(new URL("../../systemd/edge-agent.service", import.meta.url)), "utf8");
  const exec = /^ExecStart=(.*)$/m.exec(unit)?.[1]?.trim().split(/\s+/) ?? [];
  const script = exec.findIndex((w) => w.endsWith("/main.js"));
  const flags = script > 0 ? exec.slice(1, script) : [];
  const env: Record<string, string> = {};
  for (const line of unit.matchAll(/^Environment=(.*)$/gm)) {
    for (const [, k, v] of line[1]!.matchAll(/(\w+)=(\S+)/g)) if (k === "NODE_OPTIONS" || k!.startsWith("MALLOC_") || k === "UV_USE_IO_URING") env[k!] = v!;
  }
  return { flags, env };
}

/** The agent's node flags and environment: the unit's, unless `custom` (or --node-flags) replaces them. */
function agentNode(custom: string | undefined = values["node-flags"]): { flags: string[]; env: NodeJS.ProcessEnv; shown: string } {
  const unit = unitNodeSettings();
  const flags = custom !== undefined ? custom.split(/\s+/).filter(Boolean) : unit.flags;
  const env: NodeJS.ProcessEnv = { ...process.env, ...(custom !== undefined ? {} : unit.env) };
  if (custom !== undefined) delete env.NODE_OPTIONS;
  const shown = [...Object.entries(custom !== undefined ? {} : unit.env).map(([k, v]) => `${k}=${v}`), "node", ...flags, "main.js run"].join(" ");
  return { flags, env, shown };
}

/** Spawns `cmd args` and resolves with the first stdout line that parses as JSON. */
function spawnJson(cmd: string, args: string[], what: string): Promise<{ child: ChildProcess; info: Record<string, unknown> }> {
  const child = track(spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] }));
  return new Promise((resolve, reject) => {
    let err = "";
    const timer = setTimeout(() => fail(new Error(`${what} did not start within 10 s: ${err.trim()}`)), 10_000);
    const fail = (e: Error) => {
      clearTimeout(timer);
      void stopChild(child);
      reject(e);
    };
    child.stderr!.on("data", (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
    const lines = createInterface({ input: child.stdout! });
    lines.once("line", (line) => {
      clearTimeout(timer);
      try {
        resolve({ child, info: JSON.parse(line) as Record<string, unknown> });
      } catch {
        fail(new Error(`${what} printed '${line}', not JSON`));
      }
    });
    child.once("exit", (code, signal) => fail(new Error(`${what} exited (${signal ?? code}): ${err.trim()}`)));
  });
}

/** A loopback port nobody listens on. */
function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => resolve(typeof a === "object" && a ? a.port : 0));
    });
  });
}

/** A socat pty pair (as test/helpers/socat.ts, which tsc does not build into dist). */
async function ptyPair(dir: string, name: string): Promise<{ a: string; b: string; proc: ChildProcess }> {
  const a = join(dir, `${name}A`);
  const b = join(dir, `${name}B`);
  const proc = track(spawn("socat", [`pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], { stdio: "ignore" }));
  let spawnError: Error | null = null;
  proc.once("error", (e) => (spawnError = e));
  const deadline = Date.now() + 5000;
  while (!(existsSync(a) && existsSync(b))) {
    if (spawnError || proc.exitCode !== null) throw new Error("socat is not available or exited (apt-get install socat)");
    if (Date.now() > deadline) throw new Error("socat did not create the pty pair");
    await sleep(20);
  }
  return { a, b, proc };
}

// ---------------------------------------------------------------------------------------------
// The line emulator (child process): each direction paced to the line rate, every frame accounted.

/** Bytes of one direction of the wire, by what they carry, between two frame boundaries. */
interface WireCount {
  /** Line time from the first counted byte's start to the last counted delimiter's end (ms). */
  ms: number;
  wire: number;
  frames: number;
  /** Encoded Reading messages, each (boot, seq) once. */
  readingBytes: number;
  readings: number;
  /**
   * Protobuf payloads of the frames sent for the first time, pure acks and heartbeats excepted:
   * what framing (COBS, delimiters, header, CRC) and acks do not take.
   */
  payloadBytes: number;
  /** Tag and length of each reading in the repeated field, boot id, first seq, the Telemetry envelope. */
  readingsEnvelope: number;
  readingsFrames: number;
  /** Header (7) and CRC (4) of the frames that brought new readings. */
  readingsFraming: number;
  /** Whole frames (header to CRC) of other kinds, by kind. */
  other: Record<string, { frames: number; bytes: number }>;
  /** COBS code bytes and 0x00 delimiters (and anything that was not a frame). */
  cobs: number;
}

function newCount(): WireCount {
  return { ms: 0, wire: 0, frames: 0, readingBytes: 0, readings: 0, payloadBytes: 0, readingsEnvelope: 0, readingsFrames: 0, readingsFraming: 0, other: {}, cobs: 0 };
}

/** a − b, field by field. */
function countSince(a: WireCount, b: WireCount): WireCount {
  const other: WireCount["other"] = {};
  for (const [k, o] of Object.entries(a.other)) {
    const frames = o.frames - (b.other[k]?.frames ?? 0);
    if (frames > 0) other[k] = { frames, bytes: o.bytes - (b.other[k]?.bytes ?? 0) };
  }
  const d = newCount();
  for (const k of Object.keys(d) as Array<keyof WireCount>) if (k !== "other") (d[k] as number) = (a[k] as number) - (b[k] as number);
  return { ...d, other };
}

/**
 * Counts one direction as the line lets it through. The sample window runs between two frame
 * delimiters (exact frame boundaries): `reset` starts it at the next delimiter, a report ends it
 * at the last one, so no frame is cut at either edge, and its time is the line time between the
 * two delimiters' last bits.
 */
class Accountant {
  private total = newCount();
  private readonly decoder = new FrameDecoder({ maxFrame: 4096 });
  private readonly highest = new Map<number, number>();
  /** The last REL sequence seen (a REL frame not after it is a resend); reset by a Hello. */
  private lastRel: number | undefined;
  private boundary: { at: number; count: WireCount } = { at: 0, count: newCount() };
  private base: { at: number; count: WireCount } | null = { at: 0, count: newCount() };
  private baseDue = false;

  /** `bytes` left the line one after another, the last one finishing at `endMs`, `byteMs` each. */
  feed(bytes: Uint8Array, endMs: number, byteMs: number): void {
    let from = 0;
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i] !== 0) continue;
      this.take(bytes.subarray(from, i + 1));
      from = i + 1;
      const at = endMs - (bytes.length - 1 - i) * byteMs;
      this.boundary = { at, count: this.snapshotTotal() };
      if (this.baseDue) {
        this.base = this.boundary;
        this.baseDue = false;
      }
    }
    if (from < bytes.length) this.take(bytes.subarray(from));
  }

  private take(bytes: Uint8Array): void {
    this.total.wire += bytes.length;
    for (const f of this.decoder.push(bytes)) this.frame(f.chan, f.flags, f.seq, f.payload);
  }

  private other(kind: string, bytes: number): void {
    const o = (this.total.other[kind] ??= { frames: 0, bytes: 0 });
    o.frames++;
    o.bytes += bytes;
  }

  private frame(chan: number, flags: number, seq: number, payload: Uint8Array): void {
    const c = this.total;
    const raw = payload.length + FRAME_OVERHEAD;
    c.frames++;
    let resent = false;
    if (flags & FLAG.REL) {
      if (chan === CHANNEL.LINK && seq === 0 && this.lastRel !== 0) this.lastRel = undefined; // a Hello or HelloReply: a new session
      resent = this.lastRel !== undefined && !seqAfter(seq, this.lastRel);
      if (!resent) this.lastRel = seq;
    }
    if (chan === CHANNEL.TELEMETRY) {
      const t = decodeTelemetry(payload);
      if (t.ok && t.message.body.case === "readings") {
        const r = t.message.body.value;
        const seen = this.highest.get(r.bootId) ?? 0;
        if (resent || r.firstSeq + r.readings.length - 1 <= seen) return this.other("resent readings", raw);
        let bytes = 0;
        r.readings.forEach((reading, i) => {
          if (r.firstSeq + i > seen) bytes += toBinary(ReadingSchema, reading).length;
        });
        this.highest.set(r.bootId, r.firstSeq + r.readings.length - 1);
        c.readings += r.firstSeq + r.readings.length - 1 - Math.max(seen, r.firstSeq - 1);
        c.readingBytes += bytes;
        c.payloadBytes += payload.length;
        c.readingsEnvelope += payload.length - bytes;
        c.readingsFraming += FRAME_OVERHEAD;
        c.readingsFrames++;
        return;
      }
      if (!resent) c.payloadBytes += payload.length;
      return this.other(`${resent ? "resent " : ""}${t.ok ? `telemetry ${t.message.body.case}` : "telemetry (bad)"}`, raw);
    }
    if (chan === CHANNEL.LINK) {
      if (payload.length === 0) return this.other(flags & FLAG.NAK ? "nak" : "pure ack", raw);
      const l = decodeLink(payload);
      const kind = l.ok ? (l.message.body.case ?? "empty") : "(bad)";
      if (!resent && kind !== "heartbeat") c.payloadBytes += payload.length;
      return this.other(`${resent ? "resent " : ""}link ${kind}`, raw);
    }
    if (!resent) c.payloadBytes += payload.length;
    return this.other(`${resent ? "resent " : ""}${chan === CHANNEL.COMMANDS ? "commands" : chan === CHANNEL.LOG ? "log" : `channel ${chan}`}`, raw);
  }

  /** The running totals, with COBS and delimiters as what the frames do not explain. */
  private snapshotTotal(): WireCount {
    const c = this.total;
    const frames = c.readingBytes + c.readingsEnvelope + c.readingsFraming + Object.values(c.other).reduce((n, o) => n + o.bytes, 0);
    return { ...c, other: Object.fromEntries(Object.entries(c.other).map(([k, o]) => [k, { ...o }])), cobs: c.wire - frames };
  }

  /** From the base boundary to the last one. */
  snapshot(): WireCount {
    if (!this.base || this.baseDue) return newCount();
    return { ...countSince(this.boundary.count, this.base.count), ms: this.boundary.at - this.base.at };
  }

  reset(): void {
    this.baseDue = true;
  }
}

/** One direction: bytes wait in a queue and leave at the line rate (`lineFreeAt` is when the line is next idle). */
class Pacer {
  private queue: Buffer[] = [];
  private queued = 0;
  private lineFreeAt = 0;
  readonly account = new Accountant();
  private readonly byteMs: number;

  constructor(
    private readonly out: SerialPort,
    bytesPerS: number,
  ) {
    this.byteMs = 1000 / bytesPerS;
  }

  push(chunk: Buffer): void {
    if (this.queued === 0) this.lineFreeAt = Math.max(this.lineFreeAt, performance.now());
    this.queue.push(chunk);
    this.queued += chunk.length;
  }

  /** Sends what the line has finished sending by now. */
  tick(now: number): void {
    if (this.queued === 0) return;
    let n = Math.min(this.queued, Math.floor((now - this.lineFreeAt) / this.byteMs));
    if (n <= 0) return;
    this.lineFreeAt += n * this.byteMs;
    const parts: Buffer[] = [];
    while (n > 0) {
      const head = this.queue[0]!;
      if (head.length <= n) {
        parts.push(this.queue.shift()!);
        n -= head.length;
        this.queued -= head.length;
      } else {
        parts.push(head.subarray(0, n));
        this.queue[0] = head.subarray(n);
        this.queued -= n;
        n = 0;
      }
    }
    const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    this.out.write(bytes);
    this.account.feed(bytes, this.lineFreeAt, this.byteMs);
  }

  get backlog(): number {
    return this.queued;
  }
}

async function openPort(path: string): Promise<SerialPort> {
  const port = new SerialPort({ path, baudRate: BAUD, autoOpen: false, hupcl: false });
  await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  return port;
}

async function runRelay(spec: string): Promise<void> {
  const [boardSide, agentSide, baud] = spec.split(",");
  const board = await openPort(boardSide!);
  const agent = await openPort(agentSide!);
  const rate = baud ? Number(baud) / 10 : LINE_BYTES_PER_S;
  const up = new Pacer(agent, rate); // board → gateway
  const down = new Pacer(board, rate); // gateway → board
  board.on("data", (b: Buffer) => up.push(b));
  agent.on("data", (b: Buffer) => down.push(b));
  // 1 ms ticks: bytes leave in chunks of ~12 (a USB-serial bridge delivers in 1 ms frames too).
  const timer = setInterval(() => {
    const now = performance.now();
    up.tick(now);
    down.tick(now);
  }, 1);
  let since = performance.now();
  const stop = () => {
    clearInterval(timer);
    board.close(() => agent.close(() => process.exit(0)));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    const now = performance.now();
    if (line === "reset") {
      up.account.reset();
      down.account.reset();
      since = now;
    }
    process.stdout.write(`${JSON.stringify({ ms: now - since, up: up.account.snapshot(), down: down.account.snapshot(), backlogUp: up.backlog, backlogDown: down.backlog })}\n`);
  });
  lines.on("close", stop); // the parent died without a word
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
}

interface RelayReport {
  ms: number;
  up: WireCount;
  down: WireCount;
  backlogUp: number;
  backlogDown: number;
}

/** The line emulator between two pty pairs: board on `board`, agent on `agent`. */
async function startLine(dir: string, baud = BAUD): Promise<{ board: string; agent: string; ask(cmd: "reset" | "stats"): Promise<RelayReport>; stop(): Promise<void> }> {
  const p1 = await ptyPair(dir, "board");
  const p2 = await ptyPair(dir, "agent");
  const { child } = await spawnJson(process.execPath, [SELF, "--relay", `${p1.b},${p2.a},${baud}`], "the line emulator");
  const lines = createInterface({ input: child.stdout! });
  const waiting: Array<(r: RelayReport) => void> = [];
  lines.on("line", (l) => waiting.shift()?.(JSON.parse(l) as RelayReport));
  return {
    board: p1.a,
    agent: p2.b,
    ask: (cmd) =>
      new Promise((resolve) => {
        waiting.push(resolve);
        child.stdin!.write(`${cmd}\n`);
      }),
    stop: async () => {
      await stopChild(child);
      await stopChild(p1.proc);
      await stopChild(p2.proc);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Boards and the agent.

type BoardKind =
  | { kind: "c"; interval: number; maxFrame: number; batchMs: number; window?: number }
  /** `edge-agent simulate board --faults flood` (SimBoard), with its own defaults unless given. */
  | { kind: "sim"; maxFrame?: number; window?: number; ring?: number };

function simArgs(b: Extract<BoardKind, { kind: "sim" }>): string[] {
  const args = ["--faults", "flood"];
  if (b.maxFrame !== undefined) args.push("--max-frame", String(b.maxFrame));
  if (b.window !== undefined) args.push("--window", String(b.window));
  if (b.ring !== undefined) args.push("--ring", String(b.ring));
  return args;
}

function boardLabel(b: BoardKind): string {
  switch (b.kind) {
    case "c":
      return `C ebp-host --interval-ms ${b.interval} --max-frame ${b.maxFrame}${b.batchMs ? ` --batch-ms ${b.batchMs}` : ""}${b.window ? ` --window ${b.window}` : ""}`;
    case "sim":
      return `edge-agent simulate board ${simArgs(b).join(" ")}`;
  }
}

async function startBoard(b: BoardKind, path: string): Promise<ChildProcess> {
  switch (b.kind) {
    case "c": {
      const args = ["--port", path, "--id", "c0ffee0000000001", "--interval-ms", String(b.interval), "--max-frame", String(b.maxFrame), "--ring", "4096"];
      if (b.batchMs) args.push("--batch-ms", String(b.batchMs));
      if (b.window) args.push("--window", String(b.window));
      const child = track(spawn(HOST, args, { stdio: ["ignore", "ignore", "pipe"] }));
      child.stderr!.resume();
      return child;
    }
    case "sim": {
      const child = track(spawn(process.execPath, [MAIN, "simulate", "board", "--port", path, "--id", "5eed000000000001", ...simArgs(b)], { stdio: ["ignore", "ignore", "pipe"] }));
      child.stderr!.resume();
      return child;
    }
  }
}

interface Agent {
  child: ChildProcess;
  config: string;
  status(): Promise<AgentStatus>;
  ask(req: Parameters<typeof askAgent>[1]): Promise<unknown>;
}

async function startAgent(dir: string, port: string, source: Record<string, unknown> = {}, nodeFlags?: string, extra: Record<string, unknown> = {}): Promise<Agent> {
  const raw = {
    site: "bench",
    gateway: "gw-bench",
    uplink: { url: `mqtt://127.0.0.1:${await closedPort()}` },
    store: { path: join(dir, "outbox.db"), quota: "2GB" },
    log: { level: "warn" },
    sources: [{ type: "bridge", name: BOARD, port, boot_delay: "100ms", writable: ["setpoint"], ...source }],
    ...extra,
  };
  const cfg = validateConfig(raw);
  if (!cfg.ok) throw new Error(cfg.errors.join("\n"));
  const file = join(dir, "edge-agent.yaml");
  writeFileSync(file, JSON.stringify(raw, null, 2)); // JSON is YAML
  const node = agentNode(nodeFlags);
  const child = track(spawn(process.execPath, [...node.flags, MAIN, "run", "--config", file], { stdio: ["ignore", "ignore", "pipe"], env: node.env }));
  let stderr = "";
  child.stderr!.on("data", (b: Buffer) => (stderr = (stderr + b.toString()).slice(-4000)));
  const socket = controlSocketPath(cfg.config)!;
  const ask = (req: Parameters<typeof askAgent>[1]) => askAgent(socket, req, 15_000);
  const status = async () => (await ask({ op: "status" })) as AgentStatus;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the agent exited (${child.exitCode}): ${stderr.trim()}`);
    if (existsSync(socket) && (await status().then(() => true, () => false))) break;
    if (Date.now() > deadline) throw new Error(`the agent did not answer on ${socket} within 15 s: ${stderr.trim()}`);
    await sleep(100);
  }
  return { child, config: file, status, ask };
}

type BoardStatusLike = { state: string; framesIn: number; rttMs: number | null; retransmits: number; crcErrors: number; naksSent: number; naksReceived: number; boardDropped: number | null };

function boardOf(s: AgentStatus): BoardStatusLike | undefined {
  return (s.sources[BOARD]?.devices[0] as { board?: BoardStatusLike } | undefined)?.board;
}

/** Waits until the board is online and readings are being stored. */
async function untilFlowing(agent: Agent, what: string, needStored = true): Promise<void> {
  const deadline = Date.now() + 20_000;
  let first: number | null = null;
  for (;;) {
    const s = await agent.status();
    if (boardOf(s)?.state === "online") {
      if (!needStored) return;
      if (first === null) first = s.stored;
      else if (s.stored > first + 10) return;
    }
    if (Date.now() > deadline) throw new Error(`${what}: the board did not come online with readings within 20 s (state ${boardOf(s)?.state ?? "?"}, stored ${s.stored})`);
    await sleep(200);
  }
}

// ---------------------------------------------------------------------------------------------
// 1. 115200 baud over a pty, paced.

interface LineResult {
  label: string;
  rate: number;
  /** Frame payloads (protobuf messages, resends, heartbeats and pure acks excepted) / the line's capacity. */
  payloadShare: number;
  /** Encoded Reading messages only / the line's capacity. */
  share: number;
  utilisation: number;
  upBytes: number;
  downBytes: number;
  readingsPerFrame: number;
  bytesPerReading: number;
}

async function lineRun(b: BoardKind, seconds: number, source: Record<string, unknown> = {}): Promise<LineResult> {
  const dir = tempDir("edge-bench-bridge-line-");
  let line: Awaited<ReturnType<typeof startLine>> | null = null;
  let agent: Agent | null = null;
  let board: ChildProcess | null = null;
  try {
    line = await startLine(dir);
    agent = await startAgent(dir, line.agent, source);
    board = await startBoard(b, line.board);
    await untilFlowing(agent, boardLabel(b));
    await sleep(2000); // the window filled, batches at their steady size
    const s0 = await agent.status();
    await line.ask("reset");
    const t0 = performance.now();
    await sleep(seconds * 1000);
    const r = await line.ask("stats");
    const s1 = await agent.status();
    const wallS = (performance.now() - t0) / 1000;
    const stored = s1.stored - s0.stored;
    const up = r.up;
    const down = r.down;
    // Each direction between exact frame boundaries (the relay's first and last delimiter in the window).
    const lineS = up.ms / 1000;
    const downS = Math.max(1e-3, down.ms / 1000);
    const capacity = LINE_BYTES_PER_S * lineS;
    const share = up.readingBytes / capacity;
    const payloadShare = up.payloadBytes / capacity;
    const bd = boardOf(s1)!;
    const label = boardLabel(b) + (Object.keys(source).length ? `; agent ${Object.entries(source).map(([k, v]) => `${k}: ${String(v)}`).join(", ")}` : "");
    const others = Object.entries(up.other).sort((x, y) => y[1].bytes - x[1].bytes);
    console.log(`  ${label}`);
    console.log(
      `    ${fmt(stored / wallS)} readings/s stored (${fmt(up.readings / lineS)}/s on the wire, ${(up.readings / Math.max(1, up.readingsFrames)).toFixed(1)} per frame); ` +
        `board→gateway ${fmt(up.wire / lineS)} B/s = ${pct(up.wire / capacity)} of the line`,
    );
    console.log(
      `    board→gateway, of the line's raw capacity (${fmt(capacity)} B in ${lineS.toFixed(2)} s between frame boundaries): frame payloads (protobuf messages; not COBS, delimiters, headers, CRCs, pure acks, heartbeats, resends) ${pct(payloadShare)}; ` +
        `encoded Reading messages only ${pct(share)} (goal ≥ 85 %)`,
    );
    const part = (n: number) => `${fmt(n)} B (${pct(n / Math.max(1, up.wire))})`;
    console.log(
      `    board→gateway ${fmt(up.wire)} B in ${lineS.toFixed(1)} s: readings ${part(up.readingBytes)}, their tags+lengths and Readings envelope ${part(up.readingsEnvelope)}, ` +
        `frame header+CRC ${part(up.readingsFraming)}, COBS+delimiters ${part(up.cobs)}` +
        (others.length ? `, ${others.map(([k, o]) => `${k} ${part(o.bytes)} in ${o.frames}`).join(", ")}` : ""),
    );
    const downOthers = Object.entries(down.other).sort((x, y) => y[1].bytes - x[1].bytes);
    console.log(
      `    gateway→board ${fmt(down.wire)} B = ${fmt(down.wire / downS)} B/s (${pct(down.wire / (LINE_BYTES_PER_S * downS))} of that direction): ` +
        `${downOthers.map(([k, o]) => `${k} ${fmt(o.bytes)} B in ${o.frames}`).join(", ")}, COBS+delimiters ${fmt(down.cobs)} B; ` +
        `link: srtt ${bd.rttMs ?? "?"} ms, ${bd.retransmits} retransmits, ${bd.naksSent}/${bd.naksReceived} NAKs sent/received, board buffer dropped ${bd.boardDropped ?? "?"}`,
    );
    // What frames would reach the goal: per reading r bytes plus 2 (its tag and length in the
    // repeated field); per frame F fixed (header, CRC, envelope, boot id, first seq, COBS, delimiter);
    // the other frames (heartbeats, pure acks) keep their share o.
    const frames = Math.max(1, up.readingsFrames);
    const r1 = up.readingBytes / Math.max(1, up.readings);
    const fixed = (up.readingsEnvelope - 2 * up.readings) / frames + FRAME_OVERHEAD + up.cobs / frames;
    const o = Object.values(up.other).reduce((n, x) => n + x.bytes, 0) / Math.max(1, up.wire);
    const model = (n: number) => ((n * r1) / (n * (r1 + 2) + fixed)) * (1 - o);
    const need = Array.from({ length: 400 }, (_, i) => i + 1).find((n) => model(n) >= 0.85);
    console.log(
      `    model from these bytes (reading ${r1.toFixed(1)} B + 2 B tag/length, ${fixed.toFixed(1)} B per frame, other frames ${pct(o)}): ` +
        `${(up.readings / frames).toFixed(1)} per frame → ${pct(model(up.readings / frames))}; ` +
        (need ? `85 % needs ≥ ${need} readings per frame (frames of ~${Math.ceil(need * (r1 + 2) + fixed - up.cobs / frames)} B); ` : "85 % is out of reach; ") +
        `full 1024-byte frames (${Math.floor((1024 - (fixed - up.cobs / frames)) / (r1 + 2))} readings) → ${pct(model(Math.floor((1024 - (fixed - up.cobs / frames)) / (r1 + 2))))}; the ceiling (tag/length alone) ${pct(r1 / (r1 + 2))}`,
    );
    return {
      label,
      rate: stored / wallS,
      payloadShare,
      share,
      utilisation: up.wire / capacity,
      upBytes: up.wire / lineS,
      downBytes: down.wire / downS,
      readingsPerFrame: up.readings / Math.max(1, up.readingsFrames),
      bytesPerReading: up.readingBytes / Math.max(1, up.readings),
    };
  } finally {
    await stopChild(board);
    await stopChild(agent?.child);
    await line?.stop();
    removeDir(dir);
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Unthrottled pty: readings/s into the outbox and the agent's CPU; a raw baseline.

interface FloodResult {
  label: string;
  rate: number;
  cpu: number;
  boardCpu: number | null;
}

async function floodRun(b: BoardKind, seconds: number, source: Record<string, unknown> = {}, node?: string): Promise<FloodResult> {
  const dir = tempDir("edge-bench-bridge-flood-");
  let pair: Awaited<ReturnType<typeof ptyPair>> | null = null;
  let agent: Agent | null = null;
  let board: ChildProcess | null = null;
  try {
    pair = await ptyPair(dir, "tty");
    agent = await startAgent(dir, pair.b, source, node);
    board = await startBoard(b, pair.a);
    await untilFlowing(agent, boardLabel(b));
    await sleep(2000);
    const pid = agent.child.pid;
    const s0 = await agent.status();
    const c0 = cpuSeconds(pid)!;
    const bc0 = cpuSeconds(board.pid);
    const t0 = performance.now();
    const slices: number[] = [];
    let last = { stored: s0.stored, t: t0 };
    for (let i = 0; i < seconds; i++) {
      await sleep(1000);
      const s = await agent.status();
      const now = performance.now();
      slices.push(((s.stored - last.stored) * 1000) / (now - last.t));
      last = { stored: s.stored, t: now };
    }
    const s1 = await agent.status();
    const c1 = cpuSeconds(pid)!;
    const bc1 = cpuSeconds(board.pid);
    const wallS = (performance.now() - t0) / 1000;
    const rate = (s1.stored - s0.stored) / wallS;
    const cpu = (c1 - c0) / wallS;
    const boardCpu = bc0 !== null && bc1 !== null ? (bc1 - bc0) / wallS : null;
    const bd = boardOf(s1)!;
    const label = boardLabel(b) + (Object.keys(source).length ? `; agent ${Object.entries(source).map(([k, v]) => `${k}: ${String(v)}`).join(", ")}` : "") + (node !== undefined ? `; agent node flags '${node}'` : "");
    const framesPerS = (bd.framesIn - boardOf(s0)!.framesIn) / wallS;
    const win = Number(source.window ?? 8);
    console.log(`  ${label}`);
    console.log(
      `    ${fmt(framesPerS)} frames/s in, ${(rate / Math.max(1, framesPerS)).toFixed(1)} readings each; a window of ${win} frames acknowledged by the gateway's 20 ms delayed ack ` +
        `(LINK_TIMING.ackDelayMs) allows at most ${fmt((win * rate) / Math.max(1, framesPerS) / 0.02)} readings/s, whatever the CPU`,
    );
    console.log(
      `    ${fmt(rate)} readings/s into the outbox (1-s slices: median ${fmt(median(slices))}, min ${fmt(Math.min(...slices))}, max ${fmt(Math.max(...slices))}); ` +
        `agent CPU ${pct(cpu)} of one core (${threads(pid)} threads), board process ${boardCpu === null ? "?" : pct(boardCpu)}; ` +
        `srtt ${bd.rttMs ?? "?"} ms, ${bd.retransmits} retransmits, outbox depth ${fmt(s1.outbox.depth)}, ${s1.storeErrors} store errors`,
    );
    return { label, rate, cpu, boardCpu };
  } finally {
    await stopChild(board);
    await stopChild(agent?.child);
    await stopChild(pair?.proc);
    removeDir(dir);
  }
}

/**
 * The floor: the wire bytes of `n` readings in SimBoard-sized Readings frames, decoded (COBS,
 * CRC, protobuf), turned into agent readings and appended to an outbox with their cursor, in
 * batches of `batch` (what one 100 ms tick commits at the agent's rate), in this process.
 */
function rawBaseline(n: number, perFrame: number, batch: number): { rate: number; wireBytes: number } {
  const dir = tempDir("edge-bench-bridge-raw-");
  try {
    const boot = 0x1234abcd;
    const chunks: Uint8Array[] = [];
    let wireBytes = 0;
    const names = ["temperature", "humidity", "co2", "battery_a", "battery_b"];
    for (let seq = 1; seq <= n; seq += perFrame) {
      const readings = Array.from({ length: Math.min(perFrame, n - seq + 1) }, (_, i) =>
        create(ReadingSchema, { point: ((seq + i) % names.length) + 1, tUs: BigInt(5_000_000 + (seq + i) * 500), value: { case: "number", value: 21 + ((seq + i) % 100) / 100 }, quality: Quality.GOOD }),
      );
      const payload = encodeTelemetry({ body: { case: "readings", value: { bootId: boot, firstSeq: seq, readings } } });
      const wire = encodeFrame({ chan: CHANNEL.TELEMETRY, flags: FLAG.REL | FLAG.ACK, seq: seq & 0xffff, ack: 0, payload }, { afterDelimiter: true });
      wireBytes += wire.length;
      chunks.push(wire);
    }
    // As a pty hands them over: 4 KB reads.
    const all = Buffer.concat(chunks);
    const outbox = Outbox.open({ path: join(dir, "outbox.db"), quota: 2 * 1024 ** 3, whenFull: "drop-oldest", maxAge: 30 * 86_400_000, sync: "full" });
    const decoder = new FrameDecoder();
    const t0 = performance.now();
    let pending: Reading[] = [];
    let upto = 0;
    const base = Date.now() - 60_000;
    for (let at = 0; at < all.length; at += 4096) {
      for (const f of decoder.push(all.subarray(at, at + 4096))) {
        const t = decodeTelemetry(f.payload);
        if (!t.ok || t.message.body.case !== "readings") throw new Error("raw baseline: a frame did not decode");
        const r = t.message.body.value;
        r.readings.forEach((x, i) => {
          const v = x.value.case === "number" ? x.value.value : null;
          pending.push({ point: `${BOARD}/${names[(x.point - 1) % names.length]}`, ts: Math.round(base + Number(x.tUs) / 1000), value: v, quality: "good" });
          upto = r.firstSeq + i;
        });
        if (pending.length >= batch) {
          outbox.append(pending, [[`bridge:c0ffee:${boot.toString(16)}`, upto]]);
          pending = [];
        }
      }
    }
    if (pending.length) outbox.append(pending, [[`bridge:c0ffee:${boot.toString(16)}`, upto]]);
    const secs = (performance.now() - t0) / 1000;
    outbox.close();
    return { rate: n / secs, wireBytes };
  } finally {
    removeDir(dir);
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Command round trip.

interface CommandResultRow {
  label: string;
  median: number;
  p99: number;
  linkRtt: number | null;
  failed: number;
}

async function commandRun(paced: boolean, n: number): Promise<CommandResultRow> {
  const dir = tempDir("edge-bench-bridge-cmd-");
  let line: Awaited<ReturnType<typeof startLine>> | null = null;
  let pair: Awaited<ReturnType<typeof ptyPair>> | null = null;
  let agent: Agent | null = null;
  let board: ChildProcess | null = null;
  try {
    let boardPath: string;
    let agentPath: string;
    if (paced) {
      line = await startLine(dir);
      boardPath = line.board;
      agentPath = line.agent;
    } else {
      pair = await ptyPair(dir, "tty");
      boardPath = pair.a;
      agentPath = pair.b;
    }
    agent = await startAgent(dir, agentPath);
    // The reference firmware at its ordinary pace: 5 readings a second besides the commands.
    board = await startBoard({ kind: "c", interval: 1000, maxFrame: 1024, batchMs: 0 }, boardPath);
    // Where the time goes: ebp-host prints `command id=…` on stderr (unbuffered) when it has
    // performed the write, so each round trip splits into down (control socket → agent → link →
    // board) and up (board → link → agent: result stored in the outbox → reply on the socket).
    let boardAt = 0;
    createInterface({ input: board.stderr! }).on("line", (l) => {
      if (l.includes(": command id=")) boardAt = performance.now();
    });
    await untilFlowing(agent, "command board", false);
    await sleep(1500); // Describe in, first time exchange done
    const times: number[] = [];
    const downs: number[] = [];
    const ups: number[] = [];
    const slow: string[] = [];
    const tStart = performance.now();
    let failed = 0;
    let lastReason = "";
    for (let i = -10; i < n; i++) {
      const value = 20 + (((i + 10) % 20) + 1) / 10;
      const payload = JSON.stringify({ id: `bench-${i + 10}-${Date.now()}`, action: "write", args: { point: "setpoint", value } });
      boardAt = 0;
      const t0 = performance.now();
      const r = (await agent.ask({ op: "command", target: BOARD, payload })) as { status: string; reason?: string };
      const t1 = performance.now();
      const ms = t1 - t0;
      if (r.status !== "ok") {
        failed++;
        lastReason = r.reason ?? r.status;
      } else if (i >= 0) {
        times.push(ms); // the first 10 warm up
        if (boardAt >= t0 && boardAt <= t1) {
          downs.push(boardAt - t0);
          ups.push(t1 - boardAt);
          if (ms > 50) slow.push(`${ms.toFixed(0)} ms at ${((t0 - tStart) / 1000).toFixed(2)} s (down ${(boardAt - t0).toFixed(0)}, up ${(t1 - boardAt).toFixed(0)})`);
        }
      }
    }
    const bd = boardOf(await agent.status())!;
    const label = paced ? "115200 baud (line emulator)" : "unthrottled pty";
    if (times.length === 0) throw new Error(`commands ${label}: none succeeded (${lastReason})`);
    console.log(
      `  ${label}: ${times.length} writes of setpoint, median ${median(times).toFixed(2)} ms, p99 ${percentile(times, 99).toFixed(2)} ms, max ${Math.max(...times).toFixed(2)} ms` +
        `${failed ? `, ${failed} failed (${lastReason})` : ""}; link round trip (srtt, as the board session reports it) ${bd.rttMs ?? "?"} ms`,
    );
    if (downs.length) {
      const q = (xs: number[]) => `median ${median(xs).toFixed(1)}, p99 ${percentile(xs, 99).toFixed(1)}, max ${Math.max(...xs).toFixed(1)} ms`;
      console.log(`    split at the board's command line: down (socket → agent → board wrote) ${q(downs)}; up (board → agent → result stored → reply) ${q(ups)}`);
      console.log(`    over 50 ms: ${slow.length ? slow.join("; ") : "none"}`);
    }
    return { label, median: median(times), p99: percentile(times, 99), linkRtt: bd.rttMs, failed };
  } finally {
    await stopChild(board);
    await stopChild(agent?.child);
    await line?.stop();
    await stopChild(pair?.proc);
    removeDir(dir);
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const only = values.only;
  if (only !== undefined && !["line", "flood", "command", "update"].includes(only)) {
    console.error(`bench-bridge: --only expects line, flood, command or update, got '${only}'`);
    process.exit(2);
  }
  const seconds = Number(values.seconds);
  const commands = Number(values.commands);
  if (!(seconds >= 3) || !Number.isInteger(commands) || commands < 1) {
    console.error("bench-bridge: expected --seconds ≥ 3 (per phase) and --commands ≥ 1");
    process.exit(2);
  }
  if (!existsSync(HOST)) {
    console.error(`bench-bridge: ${HOST} is missing: make -C drivers/bridge/firmware`);
    process.exit(2);
  }
  const node = agentNode();
  console.log(`edge-agent bridge benchmarks: Node ${process.versions.node}, agent as \`${node.shown}\`${values["node-flags"] !== undefined ? " (--node-flags)" : " (systemd/edge-agent.service)"}, ${seconds} s per phase`);
  const table: string[][] = [];

  if (only === undefined || only === "line") {
    console.log(`\n1. 115200 8N1 over a pty (line emulator: ${fmt(LINE_BYTES_PER_S)} B/s each way), board → agent → outbox; payload = encoded Reading messages, each once`);
    const runs: Array<[BoardKind, Record<string, unknown>]> = [
      [{ kind: "c", interval: 5, maxFrame: 1024, batchMs: 0 }, {}],
      [{ kind: "sim", maxFrame: 1024 }, {}],
    ];
    // At least 12 s of line per run: a 1024-byte frame is then under 1 % of what is counted (and
    // the count runs between exact frame boundaries anyway).
    const each = Math.max(12, Math.floor(seconds / runs.length) - 3);
    for (const [b, src] of runs) {
      const r = await lineRun(b, each, src);
      table.push([
        "115200 pty",
        r.label,
        `${fmt(r.rate)} readings/s`,
        `frame payloads ${pct(r.payloadShare)} / Reading messages ${pct(r.share)} of line (goal ≥ 85 %)`,
        `${r.readingsPerFrame.toFixed(1)} readings/frame, ${r.bytesPerReading.toFixed(1)} B each; up ${fmt(r.upBytes)} B/s, down ${fmt(r.downBytes)} B/s`,
      ]);
    }
  }

  if (only === undefined || only === "flood") {
    console.log("\n2. Unthrottled pty (one socat pair), board flooding → agent → outbox");
    const runs: Array<[BoardKind, Record<string, unknown>, string | undefined]> = [
      [{ kind: "sim" }, {}, undefined],
      // The ring: the agent acknowledges readings (ReadingsAck) as its store commits them, every
      // ~100 ms, so the default ring of 1,000 caps a flood near 10,000 readings/s (measured: 9,900);
      // a flood no longer spins on a full ring, but it waits. A large ring measures the agent.
      [{ kind: "sim", maxFrame: 1024, window: 16, ring: 100_000 }, { window: 16 }, undefined],
      [{ kind: "sim", maxFrame: 1024, window: 16, ring: 100_000 }, { window: 16 }, ""],
    ];
    const each = Math.max(3, Math.floor(seconds / runs.length) - 3);
    for (const [b, src, nodeFlags] of runs) {
      const r = await floodRun(b, each, src, nodeFlags);
      table.push(["unthrottled pty", r.label, `${fmt(r.rate)} readings/s`, `agent CPU ${pct(r.cpu)} of a core (goal ≥ 20,000/s on ≤ 1 core)`, `board process CPU ${r.boardCpu === null ? "?" : pct(r.boardCpu)}`]);
    }
    const n = 300_000;
    for (const perFrame of [11, 48]) {
      const raw = rawBaseline(n, perFrame, 2000);
      console.log(`  raw baseline (this process, no serial port, link or session): ${fmt(n)} readings in frames of ${perFrame}, ${fmt(raw.wireBytes)} wire bytes, decoded and appended in batches of 2,000 (sync full): ${fmt(raw.rate)} readings/s`);
      table.push(["raw baseline", `decode + outbox append, ${perFrame} readings/frame`, `${fmt(raw.rate)} readings/s`, "", `node ${process.execArgv.join(" ") || "(no flags)"}, this process`]);
    }
  }

  if (only === undefined || only === "command") {
    console.log(`\n3. Command round trip: write setpoint on the C reference board through the agent's control socket (command path, board, read-back), one after another`);
    for (const paced of [true, false]) {
      const r = await commandRun(paced, commands);
      table.push(["command RTT", r.label, `median ${r.median.toFixed(1)} ms`, `p99 ${r.p99.toFixed(1)} ms`, `link srtt ${r.linkRtt ?? "?"} ms${r.failed ? `, ${r.failed} failed` : ""}`]);
    }
  }

  if (only === undefined || only === "update") {
    console.log("\n4. Firmware update over the emulated line: the board simulator with two slots (simulate board --flash), the agent's updater, 1024-byte frames");
    for (const [baud, size] of [
      [115_200, 128 * 1024],
      [921_600, 512 * 1024],
    ] as const) {
      const r = await updateRun(baud, size);
      table.push([
        `update ${baud}`,
        `${fmt(size)} B image, simulated board`,
        `upload ${pct(r.share)} of the line`,
        `${fmt(r.bytesPerS)} B/s of ${fmt(baud / 10)} B/s raw; upload ${r.uploadS.toFixed(1)} s`,
        `command → confirmed ${r.totalS.toFixed(1)} s, of which the health gate ${r.gateS.toFixed(1)} s (window ${UPDATE_WINDOW_S} s)`,
      ]);
    }
  }

  console.log("\nsummary");
  const widths = [0, 1, 2, 3].map((i) => Math.max(...table.map((r) => r[i]!.length)));
  for (const r of table) console.log(`  ${r.slice(0, 4).map((c, i) => c.padEnd(widths[i]!)).join("  ")}  ${r[4]}`);
}

// ---------------------------------------------------------------------------------------------
// Firmware update: upload throughput and time to confirmed.

const UPDATE_WINDOW_S = 3;

async function updateRun(baud: number, size: number): Promise<{ share: number; bytesPerS: number; uploadS: number; gateS: number; totalS: number }> {
  const { generateKeyPairSync } = await import("node:crypto");
  const { buildTestImage, sha256 } = await import("../src/update/image.js");
  const { signManifest } = await import("../src/update/manifest.js");
  const { IMAGE_PIECE } = await import("../src/ops/control-socket.js");
  const dir = tempDir("edge-bench-update-");
  const line = await startLine(dir, baud);
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const key = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url").toString("base64");
  const board = track(spawn(process.execPath, [MAIN, "simulate", "board", "--port", line.board, "--id", "5eed000000000002", "--max-frame", "1024", "--flash", join(dir, "flash.json"), "--baud", String(baud)], { stdio: ["ignore", "ignore", "pipe"] }));
  board.stderr!.resume();
  const agent = await startAgent(dir, line.agent, { baud }, undefined, {
    updates: { keys: [{ name: "bench", key }], health: { heartbeats: 2, window: `${UPDATE_WINDOW_S}s`, boot_timeout: "60s" } },
  });
  try {
    await untilFlowing(agent, "the board online", false);
    const image = buildTestImage({ version: "2.0.0", size, seed: baud });
    const manifest = signManifest(image, { version: "2.0.0", hardware: "room-node/rev-c" }, { name: "bench", privatePem: privateKey.export({ format: "pem", type: "pkcs8" }).toString() });
    const sha = sha256(image).toString("hex");
    for (let off = 0; off < size; off += IMAGE_PIECE) {
      await agent.ask({ op: "image", sha256: sha, size, offset: off, data: Buffer.from(image.subarray(off, off + IMAGE_PIECE)).toString("base64") });
    }
    const t0 = performance.now();
    const res = (await agent.ask({ op: "command", target: BOARD, payload: JSON.stringify({ id: `bench-${baud}`, action: "update", args: { manifest, image: { sha256: sha } } }) })) as { status: string; reason?: string };
    if (res.status !== "ok") throw new Error(`update ${res.status}: ${res.reason}`);
    let uploadFrom = 0;
    let uploadTo = 0;
    for (;;) {
      const job = (await agent.ask({ op: "updates", job: `bench-${baud}` })) as { state: string; reason: string } | null;
      const now = performance.now();
      if (job?.state === "uploading" && !uploadFrom) uploadFrom = now;
      if (job && ["testing", "confirmed", "rolled-back", "failed"].includes(job.state) && !uploadTo) uploadTo = now;
      if (job && ["confirmed", "rolled-back", "failed"].includes(job.state)) {
        if (job.state !== "confirmed") throw new Error(`the update ended ${job.state}: ${job.reason}`);
        const uploadS = (uploadTo - uploadFrom) / 1000;
        return { share: size / uploadS / (baud / 10), bytesPerS: size / uploadS, uploadS, gateS: (now - uploadTo) / 1000, totalS: (now - t0) / 1000 };
      }
      if (now - t0 > 600_000) throw new Error("the update took over 10 minutes");
      await sleep(20);
    }
  } finally {
    await stopChild(agent.child);
    await stopChild(board);
    await line.stop();
  }
}

if (values.relay) {
  await runRelay(values.relay);
} else {
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.once("exit", cleanupSync);
  try {
    await main();
  } catch (err) {
    console.error(`bench-bridge: ${(err as Error).message}`);
    process.exitCode = 1;
  }
  cleanupSync();
}
