/**
 * Modbus benchmarks for the README (timing claims live here, not in tests).
 * Usage: node dist/scripts/bench-modbus.js [--only poll|rtu] [--seconds 30] [--meters 50] [--points 0]
 *        [--lines 1] [--node-flags="..."] [--transactions 500]
 *
 * poll: the real agent (`edge-agent run`, its own process, with the node flags and NODE_OPTIONS of
 *   systemd/edge-agent.service unless --node-flags replaces them) polls N simulated SDM630 over
 *   Modbus TCP on loopback every second; the simulator runs in another process (`edge-agent
 *   simulate modbus`). Prints the agent process's CPU and RSS (median and peak of 1-s samples from
 *   /proc), polls per device per second (from `status` over the control socket) and the planned
 *   requests per cycle next to the naive one-request-per-value count, with the planner's estimate
 *   of their time on the wire (wire-cost.ts: TCP costs). All meters share one TCP
 *   connection (one line, one queue) unless --lines splits them over several.
 * rtu: software overhead of one RTU transaction (9600 8N1) over a socat pty pair: the agent's
 *   stack (ModbusLine + ModbusSerialLink) against the same request sent as raw bytes through
 *   serialport, to a simulator that answers as fast as it can (in a child process).
 * Needs socat for the rtu part. Every child process and temp dir is removed on exit, error or Ctrl-C.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { SerialPort } from "serialport";
import { devicePoints, getProfile } from "../drivers/modbus/registry.js";
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
    lines: { type: "string", default: "1" },
    // Points read per meter (the first N of the SDM630 profile); 0 = all. 10 × 50 meters = the
    // 500 points of the footprint target.
    points: { type: "string", default: "0" },
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
// 1. The agent polling N SDM630 over Modbus TCP.

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

async function benchPoll(meters: number, seconds: number, lines: number): Promise<void> {
  const units = Array.from({ length: meters }, (_, i) => ["--unit", `${i + 1}=sdm630`]).flat();
  const sim = await spawnJson([MAIN, "simulate", "modbus", "--tcp", "127.0.0.1:0", ...units, "--json"], "edge-agent simulate modbus");
  const dir = tempDir("edge-bench-modbus-");
  let agent: ChildProcess | null = null;
  try {
    const listener = (sim.info.listeners as Array<{ host: string; port: number }>)[0]!;
    const uplinkPort = await closedPort();
    // Meters 1..N in `lines` contiguous groups, each its own source: its own TCP connection and queue.
    const per = Math.ceil(meters / lines);
    const groups = Array.from({ length: lines }, (_, k) => Array.from({ length: Math.max(0, Math.min(meters, (k + 1) * per) - k * per) }, (_, i) => k * per + i + 1)).filter((g) => g.length > 0);
    const raw = {
      site: "bench",
      gateway: "gw-bench",
      // Nobody listens there: readings are stored in the outbox, never sent.
      uplink: { url: `mqtt://127.0.0.1:${uplinkPort}` },
      store: { path: join(dir, "outbox.db"), quota: "1GB" },
      log: { level: "warn" },
      sources: groups.map((g, k) => ({
        type: "modbus",
        name: groups.length === 1 ? "meters" : `meters-${k + 1}`,
        tcp: { host: listener.host, port: listener.port },
        devices: g.map((n) => ({ name: `meter-${n}`, unit: n, profile: "sdm630", interval: "1s", ...(POINTS > 0 ? { only: getProfile("sdm630")!.points.slice(0, POINTS).map((p) => p.name) } : {}) })),
      })),
    };
    const cfg = validateConfig(raw);
    if (!cfg.ok) throw new Error(cfg.errors.join("\n"));
    const config = cfg.config;
    const file = join(dir, "edge-agent.yaml");
    writeFileSync(file, JSON.stringify(raw, null, 2)); // JSON is YAML

    // The agent as systemd runs it: its own process, the unit's node flags (unless --node-flags).
    const unit = unitNodeSettings();
    const flags = values["node-flags"] !== undefined ? values["node-flags"].split(/\s+/).filter(Boolean) : unit.flags;
    const env = { ...process.env, ...(values["node-flags"] !== undefined ? {} : unit.env) };
    if (values["node-flags"] !== undefined) delete env.NODE_OPTIONS;
    const child = track(spawn(process.execPath, [...flags, MAIN, "run", "--config", file], { stdio: ["ignore", "ignore", "pipe"], env }));
    agent = child;
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

    // Warm up: the first poll learns where the simulator refuses merged reads (register holes).
    await sleep(3000);
    type Health = { requestsPerPoll?: number; wireMsPerPoll?: number; counters?: Record<string, number> };
    const sum = (st: AgentStatus, f: (h: Health, s: AgentStatus["sources"][string]) => number) =>
      Object.values(st.sources).reduce((n, src) => n + f((src.health ?? {}) as Health, src), 0);
    const errorsOf = (h: Health) => ["timeout", "crc", "exception", "wrong-unit", "truncated", "disconnected", "other"].reduce((n, k) => n + (h.counters?.[k] ?? 0), 0);
    const first = await ask();
    const start = { cpu: childCpuSeconds(child.pid)!, t: performance.now(), simCpu: childCpuSeconds(sim.child.pid), status: first };

    // CPU in one-second slices too, to show how steady it is on a shared box; RSS every second.
    const slices: number[] = [];
    const rssSamples: number[] = [];
    let last = { cpu: start.cpu, t: start.t };
    const sampler = setInterval(() => {
      const now = { cpu: childCpuSeconds(child.pid) ?? last.cpu, t: performance.now() };
      slices.push(((now.cpu - last.cpu) * 1000 / (now.t - last.t)) * 100);
      last = now;
      const rss = childRss(child.pid);
      if (rss !== null) rssSamples.push(rss);
    }, 1000);
    await sleep(seconds * 1000);
    clearInterval(sampler);
    const end = { cpu: childCpuSeconds(child.pid)!, t: performance.now(), simCpu: childCpuSeconds(sim.child.pid), status: await ask() };
    const wallMs = end.t - start.t;
    const cpuPct = (((end.cpu - start.cpu) * 1000) / wallMs) * 100;

    const delta = (f: (h: Health, s: AgentStatus["sources"][string]) => number) => sum(end.status, f) - sum(start.status, f);
    const pollRate = delta((_h, s) => s.polls) / meters / (wallMs / 1000);
    const planned = sum(end.status, (h) => h.requestsPerPoll ?? 0);
    const wireMs = sum(end.status, (h) => h.wireMsPerPoll ?? 0);
    const naive = (config.sources as ModbusSourceConfig[]).flatMap((s) => s.devices).reduce((n, d) => n + naiveRequestCount(devicePoints(d)), 0);
    const profilePoints = POINTS > 0 ? POINTS : getProfile("sdm630")!.points.length;
    const reqRate = delta((h, s) => s.polls * (h.requestsPerPoll ?? 0)) / (wallMs / 1000);
    const skipped = delta((_h, s) => s.overruns);
    const mb = (b: number) => (b / 1024 / 1024).toFixed(0);
    const over = groups.length === 1 ? "over TCP" : `over ${groups.length} TCP connections`;
    const points = meters * profilePoints;

    console.log(
      `modbus poll: ${meters} SDM630 (${fmt(points)} points) ${over}, 1 s interval, ${seconds} s: agent CPU ${cpuPct.toFixed(1)} % of one core, ` +
        `RSS median ${mb(median(rssSamples))} MB, peak ${mb(Math.max(...rssSamples))} MB; ${pollRate.toFixed(2)} polls/s per device`,
    );
    console.log(
      `  CPU in 1-s slices: median ${median(slices).toFixed(1)} %, p95 ${percentile(slices, 95).toFixed(1)} %` +
        (start.simCpu !== null && end.simCpu !== null ? `; simulator child (not counted) ${(((end.simCpu - start.simCpu) * 1000) / wallMs * 100).toFixed(1)} %` : ""),
    );
    console.log(
      `requests per cycle: ${fmt(planned)} planned (${(planned / meters).toFixed(planned % meters ? 1 : 0)} per meter) vs ${fmt(naive)} naive (one per value, ${profilePoints} values per SDM630) = ${(naive / planned).toFixed(1)}× fewer; ` +
        `estimated wire time ${(wireMs / meters).toFixed(1)} ms per meter per poll (${fmt(wireMs)} ms per cycle)`,
    );
    console.log(
      `  line${groups.length === 1 ? "" : "s"}: ~${fmt(reqRate)} requests/s (polls × planned requests), ${sum(end.status, errorsOf) - sum(start.status, errorsOf)} errors, ${skipped} skipped ticks; ` +
        `${fmt(end.status.stored - start.status.stored)} readings stored, ${end.status.uplink.readingsAcked} sent (the uplink points at a closed loopback port: stored, never sent)`,
    );
    if (skipped > 0) {
      // A saturated line answers reqRate requests per second, one at a time per connection.
      const perLine = reqRate / groups.length;
      console.log(
        `  note: ticks were skipped: each connection is one queue (one request at a time) and answered ${fmt(perLine)} requests/s ` +
          `(${(1000 / perLine).toFixed(2)} ms each, the simulator's 2 ms turnaround included), so a cycle of ${fmt(planned / groups.length)} requests per connection ` +
          `takes ~${(planned / groups.length / perLine).toFixed(2)} s; try --lines to spread the meters over several connections`,
      );
    }
    const shown = [...Object.entries(env).filter(([k]) => k === "NODE_OPTIONS" || k.startsWith("MALLOC_")).map(([k, v]) => `${k}=${v}`), "node", ...flags].join(" ");
    console.log(
      `  agent: \`${shown} main.js run\` (${values["node-flags"] !== undefined ? "--node-flags" : "as in systemd/edge-agent.service"}), Node ${process.versions.node}; ` +
        `outbox synchronous=${config.store.sync} in a temp dir; simulator in another process; measured for ${seconds} s after a 3 s warm-up`,
    );
  } finally {
    if (agent) await stopChild(agent);
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
  const lines = Number(values.lines);
  const bad = !(seconds > 0) || !Number.isInteger(meters) || meters < 1 || meters > 247 || !Number.isInteger(transactions) || transactions < 1;
  if (bad || !Number.isInteger(lines) || lines < 1 || lines > meters) {
    console.error("bench-modbus: expected --seconds > 0, --meters 1–247, --lines 1–meters and --transactions ≥ 1");
    process.exit(2);
  }
  try {
    if (only !== "rtu") await benchPoll(meters, seconds, lines);
    if (only !== "poll") await benchRtu(transactions);
  } catch (err) {
    console.error(`bench-modbus: ${(err as Error).message}`);
    process.exitCode = 1;
  }
  cleanupSync();
}
