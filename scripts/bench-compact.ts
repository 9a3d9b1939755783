/**
 * Compact telemetry (v2) against JSON (v1), for the README (issue 15, "Speed"; timing claims live
 * here, not in tests). Usage: npm run bench:compact [-- --hours 1] [--warp 30] [--runs 5]
 *
 * The recording: the demo's devices (configs/demo.yaml: the Modbus simulator's SDM630, EPEVER and
 * SDM120, the simulated meter, the room sensors, …) run by the real agent for --hours of simulated
 * time — its clock and timers run --warp times faster (scripts/time-warp.ts, preloaded), so an hour
 * takes two minutes — with its uplink pointed at a closed port so that every reading stays in its
 * outbox; then read back.
 * The same rows are sent as the uplink would send them:
 *   live     — what is stored within a second in one message (uplink.batch.linger: 1s);
 *   backlog  — 1000 readings a message (uplink.batch.max_readings), as after an outage;
 * as v1 JSON, v1 JSON deflated (what a broker-side or transport compression would give) and v2.
 * Bytes per reading count the whole MQTT 5 PUBLISH packet: fixed header, topic, packet id,
 * properties length, payload. Encode and decode: readings per second on one core, medians of
 * --runs, in 1000-reading batches, v1 JSON next to v2 in the same run.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { deflateRawSync } from "node:zlib";
import { parse } from "yaml";
import type { StoredReading } from "../src/model/reading.js";
import { Outbox } from "../src/store/outbox.js";
import { decodeTelemetry, encodeTelemetry } from "../src/uplink/codec.js";
import { decodeCompact, encodeCompact } from "../src/uplink/compact.js";
import { PointDictionary } from "../src/uplink/dictionary.js";
import { fmt, median } from "./bench-util.js";

const { values } = parseArgs({ options: { hours: { type: "string", default: "1" }, warp: { type: "string", default: "30" }, runs: { type: "string", default: "5" } } });
const WARP = Number(values.warp);
const SECONDS = (Number(values.hours) * 3600) / WARP;
const WARP_PRELOAD = fileURLToPath(new URL("./time-warp.js", import.meta.url));
const RUNS = Number(values.runs);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MAIN = join(ROOT, "dist/src/cli/main.js");

function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** The demo's readings over `seconds`, from the outbox of an agent that could not send them. */
async function record(seconds: number): Promise<StoredReading[]> {
  const dir = mkdtempSync(join(tmpdir(), "edge-bench-compact-"));
  try {
    const demo = parse(readFileSync(join(ROOT, "configs/demo.yaml"), "utf8")) as Record<string, unknown> & { uplink: Record<string, unknown>; store: Record<string, unknown> };
    delete demo.uplink.embedded_broker;
    demo.uplink.url = `mqtt://127.0.0.1:${await closedPort()}`;
    demo.store = { ...demo.store, path: join(dir, "outbox.db"), quota: "1GB" };
    delete demo.live_feed;
    delete demo.metrics;
    delete demo.opcua;
    demo.log = { level: "warn" };
    const file = join(ROOT, "configs", `.bench-compact-${process.pid}.yaml`); // beside demo.yaml: its relative paths hold
    writeFileSync(file, JSON.stringify(demo));
    try {
      const child = spawn(process.execPath, ["--import", WARP_PRELOAD, MAIN, "run", "-c", file], { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, EDGE_TIME_WARP: String(WARP) } });
      await new Promise((r) => setTimeout(r, seconds * 1000));
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    } finally {
      rmSync(file, { force: true });
    }
    const box = Outbox.inspect(join(dir, "outbox.db"), { quota: 1e12, whenFull: "drop-oldest", maxAge: 1e13, sync: "normal" });
    const rows = box.readAfter(0, 10_000_000);
    box.close();
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Bytes of an MQTT 5 PUBLISH at QoS 1 with no properties. */
function packetBytes(topic: string, payload: number): number {
  const remaining = 2 + Buffer.byteLength(topic) + 2 + 1 + payload;
  const lenBytes = remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4;
  return 1 + lenBytes + remaining;
}

function live(rows: StoredReading[]): StoredReading[][] {
  const out: StoredReading[][] = [];
  let cur: StoredReading[] = [];
  let start = -Infinity;
  for (const r of rows) {
    if (r.ts - start >= 1000 || cur.length >= 1000) {
      if (cur.length) out.push(cur);
      cur = [];
      start = r.ts;
    }
    cur.push(r);
  }
  if (cur.length) out.push(cur);
  return out;
}

function backlog(rows: StoredReading[]): StoredReading[][] {
  const out: StoredReading[][] = [];
  for (let i = 0; i < rows.length; i += 1000) out.push(rows.slice(i, i + 1000));
  return out;
}

function sizes(batches: StoredReading[][], topic: string, gw: string) {
  const dict = new PointDictionary(null);
  let json = 0;
  let deflated = 0;
  let compact = 0;
  let n = 0;
  for (const b of batches) {
    n += b.length;
    // A batch is one message here (the 64 KiB cap is not reached at 1000 readings in v2 or deflated v1).
    const j = encodeTelemetry(gw, b, 1 << 30)!.payload;
    json += packetBytes(topic, Buffer.byteLength(j));
    deflated += packetBytes(topic, deflateRawSync(Buffer.from(j)).length);
    compact += packetBytes(topic, encodeCompact(gw, b, dict, { maxBytes: 1 << 30 })!.payload.length);
  }
  return { json: json / n, deflated: deflated / n, compact: compact / n, messages: batches.length, perMessage: n / batches.length };
}

function rate(fn: () => number): number {
  const xs: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const n = fn();
    xs.push(n / ((performance.now() - t0) / 1000));
  }
  return median(xs);
}

async function main(): Promise<void> {
  console.log(`recording: the demo (configs/demo.yaml) for ${values.hours} h of simulated time (clock ×${WARP}: ${SECONDS.toFixed(0)} s) …`);
  const rows = await record(SECONDS);
  if (rows.length < 100) throw new Error(`only ${rows.length} readings recorded`);
  const points = new Set(rows.map((r) => r.point)).size;
  const span = (rows.at(-1)!.ts - rows[0]!.ts) / 1000;
  console.log(`  ${fmt(rows.length)} readings of ${points} points over ${(span / 60).toFixed(1)} min of reading time (${fmt(rows.length / span)} readings/s)`);
  const gw = "demo-gw";
  const topic = "edge/demo-site/demo-gw/telemetry";
  const l = sizes(live(rows), topic, gw);
  const b = sizes(backlog(rows), topic, gw);
  const line = (what: string, s: ReturnType<typeof sizes>) =>
    console.log(
      `  ${what.padEnd(8)} ${s.messages} messages of ${s.perMessage.toFixed(0)} readings: v1 JSON ${s.json.toFixed(1)} B/reading · v1 deflated ${s.deflated.toFixed(1)} · v2 compact ${s.compact.toFixed(2)} (${((s.compact / s.deflated) * 100).toFixed(0)} % of deflated JSON)`,
    );
  console.log("bytes per reading on the wire (MQTT 5 PUBLISH, QoS 1, topic included):");
  line("live", l);
  line("backlog", b);

  // Encode and decode, 1000-reading batches, the whole recording per run (repeated to ≥ 200,000 readings).
  const batches = backlog(rows);
  const reps = Math.max(1, Math.ceil(200_000 / rows.length));
  const dict = new PointDictionary(null);
  const encoded = batches.map((x) => encodeCompact(gw, x, dict, { maxBytes: 1 << 30 })!.payload);
  const json = batches.map((x) => encodeTelemetry(gw, x, 1 << 30)!.payload);
  const names = new Map<number, string>();
  for (const [id, p] of Object.entries((JSON.parse(dict.payload(gw)) as { points: Record<string, string> }).points)) names.set(Number(id), p);
  const encV1 = rate(() => {
    for (let i = 0; i < reps; i++) for (const x of batches) encodeTelemetry(gw, x, 1 << 30);
    return rows.length * reps;
  });
  const encV2 = rate(() => {
    for (let i = 0; i < reps; i++) for (const x of batches) encodeCompact(gw, x, dict, { maxBytes: 1 << 30 });
    return rows.length * reps;
  });
  const decV1 = rate(() => {
    for (let i = 0; i < reps; i++) for (const p of json) decodeTelemetry(p);
    return rows.length * reps;
  });
  const decV2 = rate(() => {
    for (let i = 0; i < reps; i++) for (const p of encoded) decodeCompact(p, () => names);
    return rows.length * reps;
  });
  console.log(`encode: v1 JSON ${fmt(encV1)} readings/s · v2 compact ${fmt(encV2)} readings/s (one core, medians of ${RUNS})`);
  console.log(`decode: v1 JSON ${fmt(decV1)} readings/s · v2 compact ${fmt(decV2)} readings/s`);
  console.log(
    `goals: v2 backlog ≤ 3 B/reading: ${b.compact.toFixed(2)} ${b.compact <= 3 ? "met" : "NOT met"}; ≤ half of deflated JSON: ${((b.compact / b.deflated) * 100).toFixed(0)} % ${b.compact <= b.deflated / 2 ? "met" : "NOT met"}; ` +
      `v2 live ≤ 12 B/reading: ${l.compact.toFixed(1)} ${l.compact <= 12 ? "met" : "NOT met"}; encoding ≥ 500,000 readings/s: ${fmt(encV2)} ${encV2 >= 500_000 ? "met" : "NOT met"}`,
  );
}

await main();
