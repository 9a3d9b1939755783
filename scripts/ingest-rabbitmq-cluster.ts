/**
 * RabbitMQ failover during ingest, on one machine (issue 16; docs/ingest.md "RabbitMQ"). Usage:
 *   npm run ingest:rabbitmq-cluster [-- --seconds 10]
 *
 * Starts a three-node RabbitMQ cluster (Debian's rabbitmq-server with the MQTT plugin,
 * test/helpers/rabbitmq.ts) and a PostgreSQL; two `edge-agent ingest` processes consume the
 * quorum queue over AMQP (each given all three nodes); three real agents publish MQTT, one to each
 * node. Then node 1 — where the queue was declared, so its first leader — is SIGKILLed mid-flow,
 * and started again later. At the end every gateway's outbox is drained and the script prints,
 * per gateway, the last sequence number it issued against what the database holds: stored once,
 * duplicates dropped, gaps. Exit 0 when nothing is missing.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Agent } from "../src/agent/agent.js";
import { validateConfig } from "../src/agent/config.js";
import { silentLogger } from "../src/ops/logger.js";
import { startPostgres } from "../test/helpers/postgres.js";
import { startRabbit } from "../test/helpers/rabbitmq.js";

const MAIN = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const { values: args } = parseArgs({ options: { seconds: { type: "string", default: "10" } } });
const PHASE_MS = Number(args.seconds) * 1000;
const t0 = Date.now();
const say = (text: string) => console.log(`${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s  ${text}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

say("starting a 3-node RabbitMQ cluster and PostgreSQL");
const [rabbit, db] = await Promise.all([startRabbit({ nodes: 3, name: "edge-failover" }), startPostgres()]);
const dir = mkdtempSync(join(tmpdir(), "edge-failover-"));
const children = new Set<ChildProcess>();
const agents: Agent[] = [];
const cleanup = async () => {
  for (const a of agents) await a.stop().catch(() => undefined);
  for (const c of children) c.kill("SIGKILL");
  await Promise.all([rabbit.stop(), db.stop()]);
  rmSync(dir, { recursive: true, force: true });
};
try {
  say(`nodes: ${rabbit.nodes.map((n, i) => `${i + 1} amqp ${n.amqpUrl} mqtt ${n.mqttUrl}`).join(" · ")}`);
  const urls = rabbit.nodes.map((n) => n.amqpUrl);
  const ingest = (name: string, order: string[]) => {
    const c = spawn(process.execPath, [MAIN, "ingest", "run", ...order.flatMap((u) => ["--amqp", u]), "-d", db.url, "--queue", "city", "--client-id", name, "--log-level", "warn"], {
      stdio: ["ignore", "inherit", "inherit"],
    });
    children.add(c);
    return c;
  };
  ingest("ingest-a", urls);
  await sleep(3000); // ingest-a declares the queue on node 1 first: its leader starts there
  ingest("ingest-b", [...urls].reverse());
  for (let i = 0; i < 3; i++) {
    const r = validateConfig({
      site: "failover",
      gateway: `gw-${i + 1}`,
      uplink: { url: rabbit.nodes[i]!.mqttUrl, reconnect: { min: "200ms", max: "1s" }, batch: { max_readings: 100, linger: "50ms" } },
      store: { path: join(dir, `gw-${i + 1}.db`) },
      sources: [{ type: "simulated", name: "meter", interval: "20ms", points: Array.from({ length: 10 }, (_, k) => ({ name: `p${k}`, wave: "random-walk" })) }],
    });
    if (!r.ok) throw new Error(r.errors.join("\n"));
    const a = new Agent(r.config, { log: silentLogger() });
    await a.start();
    agents.push(a);
  }
  say("3 gateways publishing (one per node, 500 readings/s each); 2 ingest processes consuming the quorum queue 'city'");
  await sleep(PHASE_MS);
  const stored = async () => Number((await db.query<{ n: string }>("SELECT coalesce(sum(readings), 0) AS n FROM edge.ledger"))[0]!.n);
  say(`${await stored()} readings stored; SIGKILL node 1 (the queue's first leader, gw-1's broker, a consumer's first node)`);
  const killedAt = Date.now();
  await rabbit.nodes[0]!.kill();
  const before = await stored();
  for (;;) {
    await sleep(100);
    if ((await stored()) > before) break;
  }
  say(`storing again ${Date.now() - killedAt} ms after the kill`);
  await sleep(PHASE_MS);
  say(`${await stored()} readings stored; gw-1 buffering: ${agents[0]!.status().outbox.depth} readings in its outbox. Starting node 1 again`);
  await rabbit.nodes[0]!.start();
  await sleep(PHASE_MS);
  say("stopping the gateways (each sends what it holds first)");
  const last: number[] = [];
  for (const a of agents) {
    await a.stop();
    last.push(a.status().outbox.lastSeq);
  }
  agents.length = 0;
  const expected = last.reduce((n, x) => n + x, 0);
  const deadline = Date.now() + 60_000;
  while ((await stored()) < expected && Date.now() < deadline) await sleep(200);
  const rows = await db.query<{ gateway: string; received: string; readings: string; duplicates: string }>(
    "SELECT g.gateway, l.received::text AS received, l.readings, l.duplicates FROM edge.ledger l JOIN edge.gateways g ON g.id = l.gateway_id WHERE l.stream = 'telemetry' ORDER BY g.gateway",
  );
  const [distinct] = await db.query<{ n: string; d: string }>("SELECT count(*) AS n, count(DISTINCT (gateway_id, seq)) AS d FROM edge.readings");
  let ok = distinct!.n === distinct!.d;
  for (let i = 0; i < 3; i++) {
    const r = rows.find((x) => x.gateway === `gw-${i + 1}`);
    const complete = r?.received === `{[1,${last[i]! + 1})}`;
    ok &&= complete;
    say(`gw-${i + 1}: issued 1..${last[i]} · stored ${r?.readings ?? 0} · duplicates dropped ${r?.duplicates ?? 0} · received ${r?.received ?? "{}"} ${complete ? "· complete" : "· MISSING"}`);
  }
  say(`readings table: ${distinct!.n} rows, ${distinct!.d} distinct (gateway, seq)`);
  say(ok ? "RESULT: nothing lost, nothing stored twice" : "RESULT: something is missing or doubled");
  await cleanup();
  process.exit(ok ? 0 : 1);
} catch (err) {
  console.error(err);
  await cleanup();
  process.exit(1);
}
