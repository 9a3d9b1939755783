/**
 * Modbus benchmarks for the README (timing claims live here, not in tests).
 * Usage: node dist/scripts/bench-modbus.js [--only poll|rtu] [--seconds 30] [--meters 50] [--points 0]
 *        [--connections 1] [--broker mosquitto|URL] [--compare-flags] [--node-flags="..."]
 *        [--compare-node-red DIR [--node-red-flow FILE]] [--transactions 500]
 *
 * poll: the real agent (`edge-agent run`, its own process, with the node flags and NODE_OPTIONS of
 *   systemd/edge-agent.service unless --node-flags replaces them) polls N simulated SDM630 over
 *   Modbus TCP on loopback every second; the simulator runs in another process (`edge-agent
 *   simulate modbus`, one listener that answers each connection on its own). Prints the agent
 *   process's CPU and RSS (median and max of 1-s samples from /proc), polls per device per second
 *   (from `status` over the control socket) and the planned requests per cycle next to the naive
 *   one-request-per-value count, with the planner's estimate of their time on the wire
 *   (wire-cost.ts: TCP costs).
 *   --connections N: the meters in N sources, each its own TCP connection and queue (1: all on
 *     one; --lines is the old name). --points N: the first N values of each meter (see
 *     benchPoints; 0 = all 24).
 *   --broker mosquitto starts Mosquitto on a free loopback port and the agent sends to it (QoS 1),
 *     counting what arrives; a URL uses that broker; without, the uplink points at a closed port
 *     (readings stored, never sent).
 *   --compare-flags: the same run again without any node flag.
 *   --node-flags="--trace-gc" (alone or with others): also prints the agent's allocation rate over
 *     the measured window, from V8's GC trace (heap before each GC minus heap after the one before).
 *   --compare-node-red DIR: the same poll by Node-RED installed in DIR (README "Performance"),
 *     sampled the same way, with a flow built here (nodeRedFlow) or --node-red-flow FILE.
 *   The footprint run of issue 12: --only poll --connections 50 --points 21 --broker mosquitto
 *     --seconds 120 --compare-flags [--compare-node-red /tmp/nodered].
 * rtu: software overhead of one RTU transaction (9600 8N1) over a socat pty pair: the agent's
 *   stack (ModbusLine + ModbusSerialLink) against the same request sent as raw bytes through
 *   serialport, to a simulator that answers as fast as it can (in a child process).
 * Needs socat for the rtu part. Every child process and temp dir is removed on exit, error or Ctrl-C.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import mqtt, { type MqttClient } from "mqtt";
import { SerialPort } from "serialport";
import { devicePoints, getProfile } from "../drivers/modbus/registry.js";
import { type ModbusPoint, registerCount } from "../drivers/modbus/types.js";
import type { AgentStatus } from "../src/agent/agent.js";
import { rtuFrame } from "../src/buses/modbus/frames.js";
import { ModbusLine } from "../src/buses/modbus/line.js";
import { interFrameMs, ModbusSerialLink, type ModbusTransport } from "../src/buses/modbus/link.js";
import { SimDevice } from "../src/simulators/modbus/device.js";
import { ModbusSimulator } from "../src/simulators/modbus/server.js";
import { validateConfig } from "../src/agent/config.js";
import type { ModbusSourceConfig } from "../src/sources/modbus/type.js";
import { askAgent, controlSocketPath } from "../src/ops/control-socket.js";
import { naiveRequestCount } from "../src/sources/modbus/planner.js";
import { fmt, median } from "./bench-util.js";

const OPTIONS = {
  options: {
    only: { type: "string" },
    seconds: { type: "string", default: "30" },
    meters: { type: "string", default: "50" },
    connections: { type: "string" },
    // The old name of --connections.
    lines: { type: "string" },
    // Values read per meter (benchPoints); 0 = all. 21 × 50 meters, one connection each: issue 12's run.
    points: { type: "string", default: "0" },
    broker: { type: "string" },
    "compare-flags": { type: "boolean", default: false },
    "compare-node-red": { type: "string" },
    "node-red-flow": { type: "string" },
    transactions: { type: "string", default: "500" },
    // Internal: this script started as the RTU peer (a child of itself).
    "peer-rtu": { type: "string" },
    // Node flags for the agent instead of the systemd unit's (e.g. --node-flags= for none; use the = form).
    "node-flags": { type: "string" },
    baud: { type: "string", default: "9600" },
  },
} as const;

function parseOptions() {
  try {
    return parseArgs(OPTIONS).values;
  } catch (err) {
    const first = (err as Error).message.split("\n")[0]!;
    console.error(`bench-modbus: ${first}${first.includes("node-flags") ? ' (write --node-flags="--flag ...", with the =)' : ""}`);
    process.exit(2);
  }
}
const values = parseOptions();

const SELF = fileURLToPath(import.meta.url);
const MAIN = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const BAUD = Number(values.baud);
const POINTS = Number(values.points);

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
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
  await gone;
  clearTimeout(timer);
}

/** Last resort, synchronous (process 'exit'): signal what is left and remove the dirs. */
function cleanupSync(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}

function onSignal(signal: NodeJS.Signals): void {
  console.error(`\nbench-modbus: ${signal}, cleaning up`);
  cleanupSync();
  process.exit(signal === "SIGINT" ? 130 : 143);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** Spawns `args` with node and resolves with the first stdout line parsed as JSON. */
function spawnJson(args: string[], what: string): Promise<{ child: ChildProcess; info: Record<string, unknown> }> {
  const child = track(spawn(process.execPath, args, { stdio: ["pipe", "pipe", "pipe"] }));
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(() => fail(new Error(`${what} did not start within 10 s`)), 10_000);
    const fail = (e: Error) => {
      clearTimeout(timer);
      void stopChild(child);
      reject(e);
    };
    child.stderr!.on("data", (b: Buffer) => (err += b.toString()));
    child.stdout!.on("data", (b: Buffer) => {
      out += b.toString();
      const nl = out.indexOf("\n");
      if (nl < 0) return;
      clearTimeout(timer);
      child.stdout!.removeAllListeners("data");
      child.stdout!.resume();
      try {
        resolve({ child, info: JSON.parse(out.slice(0, nl)) as Record<string, unknown> });
      } catch {
        fail(new Error(`${what} printed '${out.slice(0, nl)}', not JSON`));
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

// ---------------------------------------------------------------------------------------------
// 1. The agent polling N SDM630 over Modbus TCP (and, to compare, Node-RED doing the same).

/** CPU seconds (user + system) used so far by another process, from /proc (Linux); null elsewhere. */
function childCpuSeconds(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return null;
  }
}

/** VmRSS of another process in bytes, from /proc (Linux); null elsewhere. */
function childRss(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

interface Sampled {
  /** CPU over the whole window, % of one core. */
  cpuPct: number;
  /** CPU in one-second slices, % of one core (how steady it is on a shared box). */
  slices: number[];
  /** VmRSS every second, bytes. */
  rss: number[];
  wallMs: number;
}

/** CPU and RSS of process `pid` for `seconds`, read from /proc every second. */
/**
 * Reads a child's --trace-gc lines ("… 1234 ms: Scavenge 9.8 (12.0) -> 8.1 (12.0) MB, …"): what
 * it allocated between start() and stop() is the sum of each GC's heap before minus the heap after
 * the GC before it (V8's MB are MiB; reported here in 10^6 bytes like the rest of the bench).
 */
function gcTrace(child: ChildProcess): { start(): void; stop(): { mbPerSecond: number; seconds: number; scavenges: number; full: number; heapAfter: number } | null } {
  const LINE = /(\d+) ms: ([A-Za-z -]+?)(?: \([^)]*\))? ([\d.]+) \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB/;
  let on = false;
  let prevAfter: number | null = null;
  let t0: number | null = null;
  let t1 = 0;
  let allocated = 0;
  let scavenges = 0;
  let full = 0;
  let buf = "";
  child.stdout!.on("data", (b: Buffer) => {
    buf += b.toString();
    const lines = buf.split("\n");
    buf = lines.pop()!;
    for (const line of lines) {
      const m = LINE.exec(line);
      if (!m) continue;
      const [t, kind, before, after] = [Number(m[1]), m[2]!, Number(m[3]), Number(m[4])];
      if (on && prevAfter !== null) {
        if (t0 === null) t0 = t;
        else allocated += Math.max(0, before - prevAfter);
        t1 = t;
        if (t0 !== t) {
          if (kind.startsWith("Scavenge")) scavenges++;
          else full++;
        }
      }
      prevAfter = after;
    }
  });
  return {
    start: () => void (on = true),
    stop: () => {
      on = false;
      if (t0 === null || t1 <= t0) return null;
      const seconds = (t1 - t0) / 1000;
      return { mbPerSecond: (allocated * 1024 * 1024) / 1e6 / seconds, seconds, scavenges, full, heapAfter: prevAfter ?? 0 };
    },
  };
}

async function sampleProcess(pid: number | undefined, seconds: number): Promise<Sampled> {
  const t0 = performance.now();
  const cpu0 = childCpuSeconds(pid) ?? 0;
  const slices: number[] = [];
  const rss: number[] = [];
  let last = { cpu: cpu0, t: t0 };
  const sampler = setInterval(() => {
    const now = { cpu: childCpuSeconds(pid) ?? last.cpu, t: performance.now() };
    slices.push(((now.cpu - last.cpu) * 1000 / (now.t - last.t)) * 100);
    last = now;
    const r = childRss(pid);
    if (r !== null) rss.push(r);
  }, 1000);
  await sleep(seconds * 1000);
  clearInterval(sampler);
  const wallMs = performance.now() - t0;
  const cpuPct = ((((childCpuSeconds(pid) ?? last.cpu) - cpu0) * 1000) / wallMs) * 100;
  return { cpuPct, slices, rss, wallMs };
}

const mib = (b: number) => (b / 1024 / 1024).toFixed(0);

/**
 * The node flags and environment the shipped systemd unit gives the agent (its ExecStart
 * arguments before the script, and NODE_OPTIONS / MALLOC_* from Environment=), so that the
 * figures are those of the agent as installed.
 */
function unitNodeSettings(): { flags: string[]; env: Record<string, string> } {
  const unit = readFileSync(fileURLToPath(new URL("../../systemd/edge-agent.service", import.meta.url)), "utf8");
  const exec = /^ExecStart=(.*)$/m.exec(unit)?.[1]?.trim().split(/\s+/) ?? [];
  const script = exec.findIndex((w) => w.endsWith("/main.js"));
  const flags = script > 0 ? exec.slice(1, script) : [];
  const env: Record<string, string> = {};
  for (const line of unit.matchAll(/^Environment=(.*)$/gm)) {
    for (const [, k, v] of line[1]!.matchAll(/(\w+)=(\S+)/g)) if (k === "NODE_OPTIONS" || k!.startsWith("MALLOC_")) env[k!] = v!;
  }
  return { flags, env };
}

/**
 * The SDM630 values each meter reads: the first --points of the profile (0 = all), in its order
 * except that total active energy (0x0156), which every dashboard shows, comes right after the
 * active energies. 21 values are then the usual set a person reads by hand in 2 requests
 * (0x0000–0x004B and 0x0156–0x0157), the issue's Node-RED flow.
 */
function benchPoints(): ModbusPoint[] {
  const all = getProfile("sdm630")!.points;
  const total = all.find((p) => p.name === "total_active_energy")!;
  const at = all.findIndex((p) => p.name === "export_active_energy") + 1;
  const ordered = [...all.slice(0, at), total, ...all.slice(at).filter((p) => p !== total)];
  return POINTS > 0 ? ordered.slice(0, POINTS) : ordered;
}

/**
 * Reads grouped as a person grouping by hand would: points of one table in address order, one
 * request while the span fits the meter's maximum per read (80 registers on Eastron meters,
 * whose unused registers read as zero).
 */
function handGroups(points: readonly ModbusPoint[], maxRegisters: number): Array<{ table: ModbusPoint["table"]; address: number; count: number; points: ModbusPoint[] }> {
  const sorted = [...points].sort((a, b) => a.table.localeCompare(b.table) || a.address - b.address);
  const groups: Array<{ table: ModbusPoint["table"]; address: number; count: number; points: ModbusPoint[] }> = [];
  for (const p of sorted) {
    const g = groups.at(-1);
    const end = p.address + registerCount(p);
    if (g && g.table === p.table && end - g.address <= maxRegisters) {
      g.count = Math.max(g.count, end - g.address);
      g.points.push(p);
    } else {
      groups.push({ table: p.table, address: p.address, count: end - p.address, points: [p] });
    }
  }
  return groups;
}

/** Starts Mosquitto on a free loopback port (QoS 1 to a real broker, as on a gateway). */
async function startMosquitto(dir: string): Promise<{ url: string; child: ChildProcess }> {
  const bin = [process.env.EDGE_TEST_MOSQUITTO, "/usr/sbin/mosquitto", "/usr/bin/mosquitto"].find((p) => p && existsSync(p));
  if (!bin) throw new Error("mosquitto not found (apt-get install mosquitto, or set EDGE_TEST_MOSQUITTO), or give --broker mqtt://HOST:PORT");
  const port = await closedPort();
  const conf = join(dir, "mosquitto.conf");
  // As root, mosquitto would switch to its own user, which cannot read this temp dir.
  writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\nuser ${userInfo().username}\npersistence false\nmax_inflight_messages 0\n`);
  const child = track(spawn(bin, ["-c", conf], { stdio: "ignore" }));
  const deadline = Date.now() + 5000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`mosquitto exited (${child.exitCode})`);
    const up = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1", () => (s.destroy(), resolve(true)));
      s.once("error", () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) throw new Error("mosquitto did not listen within 5 s");
    await sleep(50);
  }
  return { url: `mqtt://127.0.0.1:${port}`, child };
}

/**
 * Counts what reaches the broker: telemetry messages and the values they carry (the agent's
 * `r` list, or the keys of a Node-RED message's `v`), to check both deliver the same.
 */
class Delivered {
  messages = 0;
  values = 0;
  private constructor(private readonly client: MqttClient) {
    client.on("message", (_topic, payload) => {
      try {
        const m = JSON.parse(payload.toString()) as { r?: unknown[]; v?: Record<string, unknown> };
        const n = Array.isArray(m.r) ? m.r.length : m.v ? Object.keys(m.v).length : 0;
        if (n > 0) {
          this.messages++;
          this.values += n;
        }
      } catch {
        // Not telemetry.
      }
    });
  }

  static async open(url: string): Promise<Delivered> {
    const client = mqtt.connect(url, { reconnectPeriod: 500 });
    await client.subscribeAsync("#", { qos: 0 });
    return new Delivered(client);
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}

interface PollEnv {
  meters: number;
  connections: number;
  points: ModbusPoint[];
  modbus: { host: string; port: number };
  /** The broker's URL, or null: the uplink points at a closed port (stored, never sent). */
  broker: string | null;
  delivered: Delivered | null;
  sim: ChildProcess;
}

interface RunFigures {
  label: string;
  sampled: Sampled;
  requestsPerMeter: number;
  valuesPerSecond: number | null;
}

/** One run of the agent as systemd runs it: its own process, with `flags` (and `env`). */
async function runAgent(env: PollEnv, seconds: number, flags: string[], nodeEnv: Record<string, string>, how: string): Promise<RunFigures> {
  const { meters } = env;
  const dir = tempDir("edge-bench-modbus-");
  let agent: ChildProcess | null = null;
  try {
    const uplinkUrl = env.broker ?? `mqtt://127.0.0.1:${await closedPort()}`;
    // Meters 1..N in `connections` contiguous groups, each its own source: its own TCP connection and queue.
    const per = Math.ceil(meters / env.connections);
    const groups = Array.from({ length: env.connections }, (_, k) => Array.from({ length: Math.max(0, Math.min(meters, (k + 1) * per) - k * per) }, (_, i) => k * per + i + 1)).filter((g) => g.length > 0);
    const only = env.points.map((p) => p.name);
    const raw = {
      site: "bench",
      gateway: "gw-bench",
      uplink: { url: uplinkUrl },
      store: { path: join(dir, "outbox.db"), quota: "1GB" },
      log: { level: "warn" },
      sources: groups.map((g, k) => ({
        type: "modbus",
        name: groups.length === 1 ? "meters" : `meters-${k + 1}`,
        tcp: env.modbus,
        devices: g.map((n) => ({ name: `meter-${n}`, unit: n, profile: "sdm630", interval: "1s", ...(POINTS > 0 ? { only } : {}) })),
      })),
    };
    const cfg = validateConfig(raw);
    if (!cfg.ok) throw new Error(cfg.errors.join("\n"));
    const config = cfg.config;
    const file = join(dir, "edge-agent.yaml");
    writeFileSync(file, JSON.stringify(raw, null, 2)); // JSON is YAML

    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...nodeEnv };
    if (!("NODE_OPTIONS" in nodeEnv)) delete childEnv.NODE_OPTIONS;
    const traceGc = flags.includes("--trace-gc");
    const child = track(spawn(process.execPath, [...flags, MAIN, "run", "--config", file], { stdio: ["ignore", traceGc ? "pipe" : "ignore", "pipe"], env: childEnv }));
    agent = child;
    const gc = traceGc ? gcTrace(child) : null;
    let stderr = "";
    child.stderr!.on("data", (b: Buffer) => (stderr = (stderr + b.toString()).slice(-4000)));
    const socket = controlSocketPath(config)!;
    const ask = async () => (await askAgent(socket, { op: "status" }, 5000)) as AgentStatus;
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the agent exited (${child.exitCode}): ${stderr.trim()}`);
      if (existsSync(socket) && (await ask().then(() => true, () => false))) break;
      if (Date.now() > deadline) throw new Error(`the agent did not answer on ${socket} within 15 s: ${stderr.trim()}`);
      await sleep(100);
    }

    // Warm up: connections open, the first polls run.
    await sleep(3000);
    type Health = { requestsPerPoll?: number; wireMsPerPoll?: number; counters?: Record<string, number> };
    const sum = (st: AgentStatus, f: (h: Health, s: AgentStatus["sources"][string]) => number) =>
      Object.values(st.sources).reduce((n, src) => n + f((src.health ?? {}) as Health, src), 0);
    const errorsOf = (h: Health) => ["timeout", "crc", "exception", "wrong-unit", "truncated", "disconnected", "other"].reduce((n, k) => n + (h.counters?.[k] ?? 0), 0);
    const first = await ask();
    const simCpu0 = childCpuSeconds(env.sim.pid);
    const delivered0 = env.delivered ? { ...env.delivered } : null;
    gc?.start();
    const sampled = await sampleProcess(child.pid, seconds);
    const alloc = gc?.stop() ?? null;
    const simCpu1 = childCpuSeconds(env.sim.pid);
    const last = await ask();
    const wallMs = sampled.wallMs;
    const { rss, slices, cpuPct } = sampled;

    const delta = (f: (h: Health, s: AgentStatus["sources"][string]) => number) => sum(last, f) - sum(first, f);
    const pollRate = delta((_h, s) => s.polls) / meters / (wallMs / 1000);
    const planned = sum(last, (h) => h.requestsPerPoll ?? 0);
    const wireMs = sum(last, (h) => h.wireMsPerPoll ?? 0);
    const naive = (config.sources as ModbusSourceConfig[]).flatMap((s) => s.devices).reduce((n, d) => n + naiveRequestCount(devicePoints(d)), 0);
    const reqRate = delta((h, s) => s.polls * (h.requestsPerPoll ?? 0)) / (wallMs / 1000);
    const skipped = delta((_h, s) => s.overruns);
    const over = groups.length === 1 ? "over TCP" : `over ${groups.length} TCP connections`;
    const points = meters * env.points.length;
    const valuesPerSecond = env.delivered && delivered0 ? (env.delivered.values - delivered0.values) / (wallMs / 1000) : null;
    const messagesPerSecond = env.delivered && delivered0 ? (env.delivered.messages - delivered0.messages) / (wallMs / 1000) : null;

    console.log(
      `modbus poll: ${meters} SDM630 (${fmt(points)} points) ${over}, 1 s interval, ${seconds} s: agent CPU ${cpuPct.toFixed(1)} % of one core, ` +
        `RSS median ${mib(median(rss))} MiB, max ${mib(Math.max(...rss))} MiB (min ${mib(Math.min(...rss))}); ${pollRate.toFixed(2)} polls/s per device`,
    );
    console.log(
      `  CPU in 1-s slices: median ${median(slices).toFixed(1)} %, p95 ${percentile(slices, 95).toFixed(1)} %` +
        (simCpu0 !== null && simCpu1 !== null ? `; simulator child (not counted) ${(((simCpu1 - simCpu0) * 1000) / wallMs * 100).toFixed(1)} %` : ""),
    );
    console.log(
      `requests per cycle: ${fmt(planned)} planned (${(planned / meters).toFixed(planned % meters ? 1 : 0)} per meter) vs ${fmt(naive)} naive (one per value, ${env.points.length} values per SDM630) = ${(naive / planned).toFixed(1)}× fewer; ` +
        `estimated wire time ${(wireMs / meters).toFixed(1)} ms per meter per poll (${fmt(wireMs)} ms per cycle)`,
    );
    console.log(
      `  line${groups.length === 1 ? "" : "s"}: ~${fmt(reqRate)} requests/s (polls × planned requests), ${sum(last, errorsOf) - sum(first, errorsOf)} errors, ${skipped} skipped ticks; ` +
        `${fmt(last.stored - first.stored)} readings stored, ` +
        (env.broker
          ? `${fmt(last.uplink.readingsAcked - first.uplink.readingsAcked)} acknowledged by the broker (QoS 1); at the broker ${fmt(valuesPerSecond ?? 0)} values/s in ${fmt(messagesPerSecond ?? 0)} messages/s`
          : `${last.uplink.readingsAcked} sent (the uplink points at a closed loopback port: stored, never sent)`),
    );
    if (skipped > 0) {
      // A saturated line answers reqRate requests per second, one at a time per connection.
      const perLine = reqRate / groups.length;
      console.log(
        `  note: ticks were skipped: each connection is one queue (one request at a time) and answered ${fmt(perLine)} requests/s ` +
          `(${(1000 / perLine).toFixed(2)} ms each, the simulator's 2 ms turnaround included), so a cycle of ${fmt(planned / groups.length)} requests per connection ` +
          `takes ~${(planned / groups.length / perLine).toFixed(2)} s; try --connections to spread the meters over several connections`,
      );
    }
    if (alloc) {
      console.log(
        `  allocation (--trace-gc): ${alloc.mbPerSecond.toFixed(2)} MB/s over ${alloc.seconds.toFixed(0)} s; ` +
          `${alloc.scavenges} scavenges (${(alloc.scavenges / alloc.seconds).toFixed(2)}/s), ${alloc.full} full GCs; heap after the last GC ${alloc.heapAfter.toFixed(1)} MB`,
      );
    }
    const shown = [...Object.entries(childEnv).filter(([k]) => k === "NODE_OPTIONS" || k.startsWith("MALLOC_")).map(([k, v]) => `${k}=${v}`), "node", ...flags].join(" ");
    console.log(
      `  agent: \`${shown} main.js run\` (${how}), Node ${process.versions.node}; ` +
        `outbox synchronous=${config.store.sync} in a temp dir; simulator in another process; measured for ${seconds} s after a 3 s warm-up`,
    );
    return { label: `edge-agent, ${how}`, sampled, requestsPerMeter: planned / meters, valuesPerSecond };
  } finally {
    if (agent) await stopChild(agent);
    removeDir(dir);
  }
}

/**
 * A Node-RED flow that does what the agent does, as a user would build it with
 * node-red-contrib-modbus: one Modbus TCP client per meter (one connection each), the meter's
 * values read in requests grouped by hand every second, decoded by a function node (float32, high
 * word first) into one JSON message per request, published with QoS 1 to the same broker.
 */
function nodeRedFlow(env: PollEnv, broker: URL): unknown[] {
  const maxRegisters = getProfile("sdm630")!.maxRegisters ?? 125;
  const groups = handGroups(env.points, maxRegisters);
  for (const p of env.points) if (p.type !== "float32") throw new Error(`the Node-RED flow decodes float32 only, not ${p.name} (${p.type})`);
  const tab = "bench-tab";
  const nodes: Array<Record<string, unknown>> = [{ id: tab, type: "tab", label: "edge-agent bench", disabled: false, info: "" }];
  nodes.push({
    id: "bench-broker", type: "mqtt-broker", name: "local", broker: broker.hostname, port: broker.port, clientid: "", autoConnect: true, usetls: false,
    protocolVersion: "4", keepalive: "30", cleansession: true, autoUnsubscribe: true, birthTopic: "", closeTopic: "", willTopic: "", sessionExpiry: "",
  });
  nodes.push({ id: "bench-out", type: "mqtt out", z: tab, name: "", topic: "", qos: "1", retain: "false", respTopic: "", contentType: "", userProps: "", correl: "", expiry: "", broker: "bench-broker", x: 700, y: 100, wires: [] });
  groups.forEach((g, k) => {
    const fields = g.points.map((p) => [p.name, (p.address - g.address) * 2] as const);
    nodes.push({
      id: `bench-decode-${k}`, type: "function", z: tab, name: `decode ${g.table} ${g.address}+${g.count}`,
      func: [
        `const F = ${JSON.stringify(fields)};`,
        "const b = msg.responseBuffer.buffer;",
        "const v = {};",
        "for (const [name, at] of F) v[name] = b.readFloatBE(at);",
        "msg.payload = JSON.stringify({ ts: Date.now(), v });",
        "msg.topic = 'nodered/bench/' + msg.topic;",
        "return msg;",
      ].join("\n"),
      outputs: 1, timeout: 0, noerr: 0, initialize: "", finalize: "", libs: [], x: 450, y: 100 + 60 * k, wires: [["bench-out"]],
    });
  });
  for (let n = 1; n <= env.meters; n++) {
    nodes.push({
      id: `bench-client-${n}`, type: "modbus-client", name: `meter-${n}`, clienttype: "tcp", bufferCommands: true, stateLogEnabled: false, queueLogEnabled: false,
      failureLogEnabled: true, tcpHost: env.modbus.host, tcpPort: String(env.modbus.port), tcpType: "DEFAULT", serialPort: "/dev/ttyUSB", serialType: "RTU-BUFFERD",
      serialBaudrate: "9600", serialDatabits: "8", serialStopbits: "1", serialParity: "none", serialConnectionDelay: "100", serialAsciiResponseStartDelimiter: "0x3A",
      unit_id: String(n), commandDelay: "1", clientTimeout: "1000", reconnectOnTimeout: true, reconnectTimeout: "2000", parallelUnitIdsAllowed: true,
    });
    groups.forEach((g, k) => {
      nodes.push({
        id: `bench-read-${n}-${k}`, type: "modbus-read", z: tab, name: "", topic: `meter-${n}`, showStatusActivities: false, logIOActivities: false, showErrors: false,
        unitid: "", dataType: g.table === "input" ? "InputRegister" : "HoldingRegister", adr: String(g.address), quantity: String(g.count), rate: "1", rateUnit: "s",
        delayOnStart: false, startDelayTime: "", server: `bench-client-${n}`, useIOFile: false, ioFile: "", useIOForPayload: false, emptyMsgOnFail: false,
        x: 150, y: 100 + 40 * (n * groups.length + k), wires: [[`bench-decode-${k}`], []],
      });
    });
  }
  return nodes;
}

/** The installed version of a package under a Node-RED install, or "?". */
function installedVersion(dir: string, name: string): string {
  try {
    return (JSON.parse(readFileSync(join(dir, "node_modules", name, "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "?";
  }
}

/**
 * The same poll by Node-RED from `installDir` (`npm install --prefix DIR node-red@4.1
 * node-red-contrib-modbus`): the flow above (or --node-red-flow FILE, in which ${MODBUS_HOST},
 * ${MODBUS_PORT}, ${MQTT_HOST} and ${MQTT_PORT} are set in its environment), its default
 * settings, editor on a free loopback port; sampled as the agent is.
 */
async function runNodeRed(env: PollEnv, seconds: number, installDir: string, flowFile: string | undefined): Promise<RunFigures> {
  const red = [join(installDir, "node_modules", "node-red", "red.js"), join(installDir, "red.js")].find((f) => existsSync(f));
  if (!red) throw new Error(`--compare-node-red ${installDir}: no node_modules/node-red/red.js there (npm install --prefix ${installDir} node-red@4.1 node-red-contrib-modbus)`);
  if (!env.broker || !env.delivered) throw new Error("--compare-node-red needs a broker (--broker mosquitto or URL)");
  const root = existsSync(join(installDir, "node_modules", "node-red")) ? installDir : join(installDir, "..", "..");
  const dir = tempDir("edge-bench-node-red-");
  let child: ChildProcess | null = null;
  try {
    const broker = new URL(env.broker);
    const flows = join(dir, "flows.json");
    if (flowFile) writeFileSync(flows, readFileSync(flowFile));
    else writeFileSync(flows, JSON.stringify(nodeRedFlow(env, broker), null, 1));
    const uiPort = await closedPort();
    const childEnv: NodeJS.ProcessEnv = {
      ...process.env, MODBUS_HOST: env.modbus.host, MODBUS_PORT: String(env.modbus.port), MQTT_HOST: broker.hostname, MQTT_PORT: broker.port,
      // Node-RED's own modules, not the agent's: run from its install.
      NODE_PATH: join(root, "node_modules"),
    };
    delete childEnv.NODE_OPTIONS;
    child = track(spawn(process.execPath, [red, "--userDir", dir, "--port", String(uiPort), flows], { cwd: root, stdio: ["ignore", "pipe", "pipe"], env: childEnv }));
    const proc = child;
    let log = "";
    const keep = (b: Buffer) => (log = (log + b.toString()).slice(-8000));
    proc.stdout!.on("data", keep);
    proc.stderr!.on("data", keep);
    // Ready when its messages reach the broker.
    const deadline = Date.now() + 60_000;
    const before = env.delivered.messages;
    while (env.delivered.messages < before + env.meters) {
      if (proc.exitCode !== null) throw new Error(`Node-RED exited (${proc.exitCode}): ${log.trim()}`);
      if (Date.now() > deadline) throw new Error(`Node-RED sent nothing to the broker within 60 s:\n${log.trim()}`);
      await sleep(200);
    }
    await sleep(3000);
    const d0 = { ...env.delivered };
    const simCpu0 = childCpuSeconds(env.sim.pid);
    const sampled = await sampleProcess(proc.pid, seconds);
    const simCpu1 = childCpuSeconds(env.sim.pid);
    const secs = sampled.wallMs / 1000;
    const valuesPerSecond = (env.delivered.values - d0.values) / secs;
    const messagesPerSecond = (env.delivered.messages - d0.messages) / secs;
    const groups = flowFile ? null : handGroups(env.points, getProfile("sdm630")!.maxRegisters ?? 125);
    const versions = `Node-RED ${installedVersion(root, "node-red")}, node-red-contrib-modbus ${installedVersion(root, "node-red-contrib-modbus")}`;
    const { rss, slices, cpuPct } = sampled;
    console.log(
      `node-red: ${versions}, ${flowFile ? `flow ${flowFile}` : `${env.meters} Modbus TCP clients (one connection per meter), ${groups!.length} reads per meter every 1 s grouped by hand (${groups!.map((g) => `${g.table} ${g.address}+${g.count}`).join(", ")}), mqtt out QoS 1`}, ${seconds} s: ` +
        `CPU ${cpuPct.toFixed(1)} % of one core, RSS median ${mib(median(rss))} MiB, max ${mib(Math.max(...rss))} MiB (min ${mib(Math.min(...rss))})`,
    );
    console.log(
      `  CPU in 1-s slices: median ${median(slices).toFixed(1)} %, p95 ${percentile(slices, 95).toFixed(1)} %` +
        (simCpu0 !== null && simCpu1 !== null ? `; simulator child (not counted) ${(((simCpu1 - simCpu0) * 1000) / sampled.wallMs * 100).toFixed(1)} %` : "") +
        `; at the broker ${fmt(valuesPerSecond)} values/s in ${fmt(messagesPerSecond)} messages/s; \`node red.js\` (no flags, default settings), Node ${process.versions.node}`,
    );
    return { label: `Node-RED ${installedVersion(root, "node-red")} + contrib-modbus ${installedVersion(root, "node-red-contrib-modbus")}`, sampled, requestsPerMeter: groups ? groups.length : NaN, valuesPerSecond };
  } finally {
    if (child) await stopChild(child);
    removeDir(dir);
  }
}

async function benchPoll(meters: number, seconds: number, connections: number): Promise<void> {
  const units = Array.from({ length: meters }, (_, i) => ["--unit", `${i + 1}=sdm630`]).flat();
  const sim = await spawnJson([MAIN, "simulate", "modbus", "--tcp", "127.0.0.1:0", ...units, "--json"], "edge-agent simulate modbus");
  const dir = tempDir("edge-bench-broker-");
  let mosquitto: ChildProcess | null = null;
  let delivered: Delivered | null = null;
  try {
    const listener = (sim.info.listeners as Array<{ host: string; port: number }>)[0]!;
    let broker: string | null = null;
    if (values.broker === "mosquitto") {
      const m = await startMosquitto(dir);
      mosquitto = m.child;
      broker = m.url;
    } else if (values.broker !== undefined) {
      broker = values.broker;
    }
    if (broker) delivered = await Delivered.open(broker);
    const env: PollEnv = { meters, connections, points: benchPoints(), modbus: { host: listener.host, port: listener.port }, broker, delivered, sim: sim.child };

    // The agent as systemd runs it (the unit's node flags unless --node-flags), then, with
    // --compare-flags, without any flag.
    const unit = unitNodeSettings();
    const runs: RunFigures[] = [];
    if (values["node-flags"] !== undefined) {
      runs.push(await runAgent(env, seconds, values["node-flags"].split(/\s+/).filter(Boolean), {}, `--node-flags="${values["node-flags"]}"`));
    } else {
      runs.push(await runAgent(env, seconds, unit.flags, unit.env, "the unit's node flags"));
    }
    if (values["compare-flags"] && values["node-flags"] !== "") runs.push(await runAgent(env, seconds, [], {}, "no node flags"));
    if (values["compare-node-red"] !== undefined) runs.push(await runNodeRed(env, seconds, values["compare-node-red"], values["node-red-flow"]));

    if (runs.length > 1) {
      const w = Math.max(...runs.map((r) => r.label.length));
      console.log(`\nside by side (${meters} SDM630, ${env.points.length} values each, ${connections} TCP connection${connections === 1 ? "" : "s"}, 1 s, ${seconds} s each, Node ${process.versions.node}):`);
      console.log(`  ${"".padEnd(w)}  RSS median (max)   CPU of one core   requests per meter per cycle   values/s at the broker`);
      for (const r of runs) {
        const rss = `${mib(median(r.sampled.rss))} MiB (${mib(Math.max(...r.sampled.rss))})`;
        const req = Number.isFinite(r.requestsPerMeter) ? String(Number(r.requestsPerMeter.toFixed(1))) : "?";
        console.log(`  ${r.label.padEnd(w)}  ${rss.padEnd(17)}  ${`${r.sampled.cpuPct.toFixed(1)} %`.padEnd(16)}  ${req.padEnd(29)}  ${r.valuesPerSecond === null ? "-" : fmt(r.valuesPerSecond)}`);
      }
    }
  } finally {
    if (delivered) await delivered.close();
    if (mosquitto) await stopChild(mosquitto);
    await stopChild(sim.child);
    removeDir(dir);
  }
}

// ---------------------------------------------------------------------------------------------
// 2. One RTU transaction over a pty: the agent's stack against raw serialport.

/** A socat pty pair (the same as test/helpers/socat.ts, which tsc does not build into dist). */
async function ptyPair(dir: string): Promise<{ a: string; b: string; proc: ChildProcess }> {
  const a = join(dir, "ttyA");
  const b = join(dir, "ttyB");
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

/** The peer, in a child process: unit 1 = SDM630, no emulated line time, turnaround 0. */
async function runPeer(path: string): Promise<void> {
  // `edge-agent simulate modbus --rtu` always emulates the line time and a 2 ms turnaround, so
  // the peer is this script again with the simulator configured to answer as fast as it can.
  const sim = new ModbusSimulator({ turnaroundMs: 0 });
  sim.addUnit(1, new SimDevice(getProfile("sdm630")!, { freeze: true, seed: 1 }));
  await sim.openSerial({ path, baudRate: BAUD, lineTiming: false });
  const stop = () => void sim.close().then(() => process.exit(0));
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  process.stdin.on("end", stop); // the parent died without a word
  process.stdin.resume();
  process.stdout.write(`${JSON.stringify({ ready: true, path })}\n`);
}

const UNIT = 1;
/** Read 1 input register at 0: 8-byte request, 7-byte reply. */
const REQUEST = rtuFrame(UNIT, Buffer.from([0x04, 0x00, 0x00, 0x00, 0x01]));
const REPLY_BYTES = 7;

async function agentRound(transport: ModbusTransport, n: number, gapMs: number): Promise<number[]> {
  const line = new ModbusLine("bench", new ModbusSerialLink(transport), { interFrameMs: interFrameMs(transport) });
  line.acquire();
  const times: number[] = [];
  try {
    // Open the port outside the timing (the raw round opens its port before timing too).
    await line.run("meter", (link) => link.read(UNIT, "input", 0, 1, 1000));
    await sleep(gapMs);
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await line.run("meter", (link) => link.read(UNIT, "input", 0, 1, 1000));
      times.push(performance.now() - t0);
      // Let the line finish its t3.5 silence, so the next timing starts on an idle line.
      await sleep(gapMs);
    }
  } finally {
    await line.release();
  }
  return times;
}

/** Back to back through the line, silence included: transactions per second. */
async function agentRate(transport: ModbusTransport, n: number): Promise<number> {
  const line = new ModbusLine("bench", new ModbusSerialLink(transport), { interFrameMs: interFrameMs(transport) });
  line.acquire();
  try {
    await line.run("meter", (link) => link.read(UNIT, "input", 0, 1, 1000)); // opens the port
    await sleep(10);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await line.run("meter", (link) => link.read(UNIT, "input", 0, 1, 1000));
    return n / ((performance.now() - t0) / 1000);
  } finally {
    await line.release();
  }
}

async function rawRound(path: string, n: number, gapMs: number): Promise<number[]> {
  const port = new SerialPort({ path, baudRate: BAUD, dataBits: 8, parity: "none", stopBits: 1, autoOpen: false });
  await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  let got = 0;
  let wake: (() => void) | null = null;
  port.on("data", (chunk: Buffer) => {
    got += chunk.length;
    if (got >= REPLY_BYTES) wake?.();
  });
  const times: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      got = 0;
      const t0 = performance.now();
      const done = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("raw serialport: no reply within 1 s")), 1000);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      port.write(REQUEST);
      await done;
      times.push(performance.now() - t0);
      wake = null;
      await sleep(gapMs);
    }
  } finally {
    await new Promise<void>((resolve) => port.close(() => resolve()));
  }
  return times;
}

async function benchRtu(transactions: number): Promise<void> {
  const dir = tempDir("edge-bench-rtu-");
  let socat: ChildProcess | null = null;
  let peer: ChildProcess | null = null;
  try {
    const pair = await ptyPair(dir);
    socat = pair.proc;
    peer = (await spawnJson([SELF, "--peer-rtu", pair.a, "--baud", String(BAUD)], "the RTU peer")).child;
    const transport: ModbusTransport = { kind: "rtu", device: pair.b, baud: BAUD, parity: "none", dataBits: 8, stopBits: 1 };
    const t35 = interFrameMs(transport);
    const gapMs = Math.ceil(t35) + 2;

    // Warm up both paths (JIT, first open), then alternate agent and raw in rounds so that
    // noise from other tenants of the box falls on both alike.
    await agentRound(transport, 30, gapMs);
    await rawRound(pair.b, 30, gapMs);
    const rounds = 5;
    const agent: number[] = [];
    const raw: number[] = [];
    const perRound: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const n = Math.ceil(transactions / rounds);
      const ag = await agentRound(transport, n, gapMs);
      const rw = await rawRound(pair.b, n, gapMs);
      agent.push(...ag);
      raw.push(...rw);
      perRound.push(median(ag) - median(rw));
    }
    const rate = await agentRate(transport, Math.min(transactions, 300));

    const a = median(agent);
    const w = median(raw);
    console.log(
      `RTU transaction over a pty: agent median ${a.toFixed(2)} ms, raw serialport median ${w.toFixed(2)} ms → overhead ${(a - w).toFixed(2)} ms ` +
        `(p95 agent ${percentile(agent, 95).toFixed(2)} ms, raw ${percentile(raw, 95).toFixed(2)} ms)`,
    );
    console.log(`  overhead per round (${rounds} alternating rounds, difference of medians): ${perRound.map((d) => d.toFixed(2)).join(", ")} ms; agent/raw ${(a / w).toFixed(2)}`);
    console.log(
      `  ${agent.length} + ${raw.length} reads of 1 input register (8-byte request, 7-byte reply), ${BAUD} 8N1, socat pty pair; peer: simulator in a child process, no line-time emulation, turnaround 0`,
    );
    console.log(
      `  timed from request start to result, excluding the t3.5 silence (${t35.toFixed(2)} ms at ${BAUD}) the line keeps after each transaction; ` +
        `back to back with that silence: ${fmt(rate)} transactions/s (${(1000 / rate).toFixed(2)} ms each)`,
    );
  } finally {
    if (peer) await stopChild(peer);
    if (socat) await stopChild(socat);
    removeDir(dir);
  }
}

// ---------------------------------------------------------------------------------------------

if (values["peer-rtu"]) {
  await runPeer(values["peer-rtu"]);
} else {
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.once("exit", cleanupSync);
  const only = values.only;
  if (only !== undefined && only !== "poll" && only !== "rtu") {
    console.error(`bench-modbus: --only expects poll or rtu, got '${only}'`);
    process.exit(2);
  }
  const seconds = Number(values.seconds);
  const meters = Number(values.meters);
  const transactions = Number(values.transactions);
  const connections = Number(values.connections ?? values.lines ?? "1");
  const bad = !(seconds > 0) || !Number.isInteger(meters) || meters < 1 || meters > 247 || !Number.isInteger(transactions) || transactions < 1;
  if (bad || !Number.isInteger(connections) || connections < 1 || connections > meters || !Number.isInteger(POINTS) || POINTS < 0) {
    console.error("bench-modbus: expected --seconds > 0, --meters 1–247, --connections 1–meters, --points ≥ 0 and --transactions ≥ 1");
    process.exit(2);
  }
  if (values["compare-node-red"] !== undefined && values.broker === undefined) {
    console.error("bench-modbus: --compare-node-red needs --broker (mosquitto or a URL): Node-RED's figures include its MQTT publishing");
    process.exit(2);
  }
  try {
    if (only !== "rtu") await benchPoll(meters, seconds, connections);
    if (only !== "poll") await benchRtu(transactions);
  } catch (err) {
    console.error(`bench-modbus: ${(err as Error).message}`);
    process.exitCode = 1;
  }
  cleanupSync();
}
