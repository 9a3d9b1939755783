/**
 * The ingest's throughput, for the README (issue 16, "Speed"; timing claims live here, not in
 * tests). Usage: npm run bench:ingest [-- --gateways 100 --readings 5000 --per-message 500 --processes 1,2,4]
 *
 * On this machine, with the broker (Mosquitto) and PostgreSQL (fsync and synchronous_commit on:
 * every commit durable) on the same box: `--gateways` simulated gateways, each publishing
 * `--readings` readings of the contract (v1 JSON, `--per-message` a message, QoS 1), are ingested
 * by 1, 2 and 4 `edge-agent ingest` processes on one shared subscription — readings per second
 * from the first publish to the last commit, and commit time p50/p99 (per batch: store, ledger,
 * commit) from the processes' metrics. In the same run, a raw COPY of the same rows into the same
 * table (no broker, no ledger, no dedupe) gives the baseline.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pg from "pg";
import copyStreams from "pg-copy-streams";
import { migrate } from "../src/ingest/schema.js";
import { connectPublisher, publishGateways, readingOf } from "../test/helpers/contract-publisher.js";
import { startPostgres } from "../test/helpers/postgres.js";
import { fmt } from "./bench-util.js";

const MAIN = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

const { values: args } = parseArgs({
  options: {
    gateways: { type: "string", default: "100" },
    readings: { type: "string", default: "5000" },
    "per-message": { type: "string", default: "500" },
    processes: { type: "string", default: "1,2,4" },
    connections: { type: "string", default: "8" },
  },
});
const GATEWAYS = Number(args.gateways);
const READINGS = Number(args.readings);
const PER_MESSAGE = Number(args["per-message"]);
const PROCESSES = args.processes.split(",").map(Number);
const TOTAL = GATEWAYS * READINGS;

process.env.EDGE_TEST_MOSQUITTO ??= ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].find((f) => existsSync(f));
if (!process.env.EDGE_TEST_MOSQUITTO) throw new Error("bench:ingest needs Mosquitto (Debian package mosquitto)");
const { startBroker } = await import("../test/helpers/broker.js");

const db = await startPostgres({ settings: { shared_buffers: "256MB", max_wal_size: "2GB", checkpoint_timeout: "15min" } });
const broker = await startBroker();

const children = new Set<ChildProcess>();
process.on("exit", () => children.forEach((c) => c.kill("SIGKILL")));

async function query<T>(sql: string): Promise<T[]> {
  return db.query<T>(sql);
}

/** Raw COPY of the same rows: the floor the ingest is measured against. */
async function rawCopy(): Promise<number> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  await migrate(client, "raw", "off");
  await client.query("INSERT INTO raw.gateways (site, gateway) SELECT 'site-a', 'gw-' || g FROM generate_series(0, $1 - 1) g", [GATEWAYS]);
  await client.query("INSERT INTO raw.points (gateway_id, name, kind) SELECT g.id, 'meter-' || (p % 2) || '/p' || p, 'number' FROM raw.gateways g, generate_series(0, 7) p");
  const ids = new Map<string, number>();
  for (const r of (await client.query<{ id: number; gateway_id: number; name: string }>("SELECT id, gateway_id, name FROM raw.points")).rows) ids.set(`${r.gateway_id}/${r.name}`, r.id);
  const gw = new Map<number, number>();
  for (const r of (await client.query<{ id: number; gateway: string }>("SELECT id, gateway FROM raw.gateways")).rows) gw.set(Number(r.gateway.slice(3)), r.id);
  // Rows are made before the clock starts; batches the size the ingest commits.
  const batches: string[] = [];
  let text = "";
  let n = 0;
  for (let at = 1; at <= READINGS; at += PER_MESSAGE) {
    for (let g = 0; g < GATEWAYS; g++) {
      for (let s = at; s < Math.min(at + PER_MESSAGE, READINGS + 1); s++) {
        const [point, ts, value] = readingOf(g, s);
        text += `${gw.get(g)}\t${ids.get(`${gw.get(g)}/${point}`)}\t${new Date(ts).toISOString()}\t${s}\t${value}\t\\N\t0\n`;
        if (++n % 20_000 === 0) {
          batches.push(text);
          text = "";
        }
      }
    }
  }
  if (text) batches.push(text);
  await client.query("CREATE TABLE IF NOT EXISTS raw.readings_202512 PARTITION OF raw.readings FOR VALUES FROM ('2025-12-01') TO ('2026-01-01')");
  const t0 = performance.now();
  for (const b of batches) {
    await client.query("BEGIN");
    const stream = client.query(copyStreams.from("COPY raw.readings (gateway_id, point_id, ts, seq, num, txt, quality) FROM STDIN"));
    await new Promise<void>((resolve, reject) => {
      stream.on("error", reject);
      stream.on("finish", () => resolve());
      stream.end(b);
    });
    await client.query("COMMIT");
  }
  const s = (performance.now() - t0) / 1000;
  await client.end();
  return TOTAL / s;
}

function quantiles(text: string): { p50: number; p99: number; count: number } {
  const get = (q: string) => Number(new RegExp(`edge_ingest_commit_quantile_seconds\\{quantile="${q}"\\} (\\S+)`).exec(text)?.[1] ?? NaN);
  const count = Number(/edge_ingest_commit_quantile_seconds_count (\S+)/.exec(text)?.[1] ?? 0);
  return { p50: get("0.5"), p99: get("0.99"), count };
}

async function run(processes: number): Promise<{ rate: number; p50: number; p99: number; batches: number }> {
  const schema = `p${processes}`;
  const urls: string[] = [];
  const procs: ChildProcess[] = [];
  for (let i = 0; i < processes; i++) {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const c = spawn(
      process.execPath,
      [MAIN, "ingest", "run", "-b", broker.url, "-d", db.url, "--schema", schema, "--root", schema, "--group", schema, "--client-id", `${schema}-${i}`, "--connections", args.connections, "--no-replay", "--metrics", `127.0.0.1:${port}`, "--log-level", "warn"],
      { stdio: ["ignore", "inherit", "inherit"] },
    );
    children.add(c);
    procs.push(c);
    urls.push(`http://127.0.0.1:${port}/metrics`);
  }
  // Ready when every process answers its metrics (it subscribes before it serves them? no: after): wait for the schema and a scrape.
  for (const u of urls) {
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(u)).ok) break;
      } catch {
        if (i > 300) throw new Error(`ingest at ${u} did not start`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await new Promise((r) => setTimeout(r, 500)); // subscriptions in place
  const pubs = await Promise.all([0, 1, 2, 3].map((i) => connectPublisher(broker.url, `bench-pub-${schema}-${i}`)));
  const t0 = performance.now();
  // Four publishers, a quarter of the gateways each.
  await Promise.all(
    pubs.map((c, i) =>
      publishGateways(c, { root: schema, gateways: GATEWAYS, count: READINGS, perMessage: PER_MESSAGE, window: 32, skip: (g) => g % 4 !== i }),
    ),
  );
  for (;;) {
    const [r] = await query<{ n: string }>(`SELECT coalesce(sum(readings), 0) AS n FROM ${schema}.ledger`);
    if (Number(r!.n) >= TOTAL) break;
    await new Promise((res) => setTimeout(res, 20));
  }
  const s = (performance.now() - t0) / 1000;
  const texts = await Promise.all(urls.map(async (u) => (await fetch(u)).text()));
  const q = texts.map(quantiles);
  const [check] = await query<{ n: string; d: string }>(`SELECT count(*) AS n, count(DISTINCT (gateway_id, seq)) AS d FROM ${schema}.readings`);
  if (Number(check!.n) !== TOTAL || Number(check!.d) !== TOTAL) throw new Error(`stored ${check!.n} rows (${check!.d} distinct), expected ${TOTAL}`);
  pubs.forEach((c) => c.end(true));
  for (const c of procs) {
    c.kill("SIGTERM");
    await new Promise((r) => c.once("exit", r));
    children.delete(c);
  }
  return { rate: TOTAL / s, p50: Math.max(...q.map((x) => x.p50)), p99: Math.max(...q.map((x) => x.p99)), batches: q.reduce((n, x) => n + x.count, 0) };
}

console.log(`bench:ingest — ${GATEWAYS} gateways × ${fmt(READINGS)} readings = ${fmt(TOTAL)} readings, ${PER_MESSAGE} a message (v1 JSON, QoS 1); Mosquitto and PostgreSQL on this machine, fsync on`);
const raw = await rawCopy();
console.log(`raw COPY (same rows, 20,000 a transaction, no broker/ledger): ${fmt(raw)} readings/s`);
for (const p of PROCESSES) {
  const r = await run(p);
  console.log(
    `${p} ingest process${p > 1 ? "es" : ""} × ${args.connections} connections: ${fmt(r.rate)} readings/s (${((100 * r.rate) / raw).toFixed(0)} % of raw COPY) · commit p50 ${(r.p50 * 1000).toFixed(1)} ms, p99 ${(r.p99 * 1000).toFixed(1)} ms · ${fmt(r.batches)} batches`,
  );
}
await broker.close();
await db.stop();
process.exit(0);
