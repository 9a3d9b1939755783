/**
 * The RabbitMQ path end to end on one node (the Debian package's 3.10 with its MQTT plugin):
 * gateways publish MQTT 3.1.1, the ingest consumes a quorum queue bound to amq.topic over AMQP
 * with manual acks. Two consumers, one killed mid-flow: every number stored once. The real agent
 * (falling back to MQTT 3.1.1 by itself); a gateway id with a dot quarantined and a replay asked through
 * amq.topic after messages were purged from the queue — removed in transit.
 */
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import amqp from "amqplib";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/agent/agent.js";
import { silentLogger } from "../../src/ops/logger.js";
import { startCli } from "../helpers/cli.js";
import { testConfig } from "../helpers/config.js";
import { connectPublisher, publish, publishGateways } from "../helpers/contract-publisher.js";
import { startPostgres, type TestPostgres } from "../helpers/postgres.js";
import { type RabbitCluster, startRabbit } from "../helpers/rabbitmq.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor, waitForOutput } from "../helpers/wait.js";

let db: TestPostgres;
let rabbit: RabbitCluster;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  [db, rabbit] = await Promise.all([startPostgres(), startRabbit({ name: "edge-ingest" })]);
}, 180_000);

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

afterAll(async () => {
  await Promise.all([db?.stop(), rabbit?.stop()]);
});

function ingest(schema: string, queue: string, extra: string[] = []): ChildProcess & { out: () => string } {
  const c = startCli(["ingest", "run", "--amqp", rabbit.nodes[0]!.amqpUrl, "-d", db.url, "--schema", schema, "--queue", queue, "--prefetch", "64", ...extra]);
  cleanups.push(async () => {
    if (c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((r) => c.once("exit", r));
      c.kill("SIGKILL");
      await gone;
    }
  });
  return c;
}

const ready = (c: ReturnType<typeof ingest>) => waitForOutput(c, /ingest running/, "ingest running", { timeoutMs: 30_000 });
const count = async (sql: string) => Number((await db.query<{ n: string }>(sql))[0]!.n);

describe("ingest from a RabbitMQ quorum queue", () => {
  it("stores every number once with two competing consumers, one killed mid-flow", async () => {
    const schema = "rabbit";
    const a = ingest(schema, "q1", ["--no-replay"]);
    const b = ingest(schema, "q1", ["--no-replay"]);
    await Promise.all([ready(a), ready(b)]);
    const pub = await connectPublisher(rabbit.nodes[0]!.mqttUrl, "rabbit-pub", 4);
    cleanups.push(async () => void pub.end(true));
    const phase1 = publishGateways(pub, { root: "edge", gateways: 5, count: 1000, perMessage: 10, window: 16 });
    await waitFor("some stored", async () => (await count(`SELECT count(*) AS n FROM ${schema}.readings`).catch(() => 0)) > 500, { timeoutMs: 30_000 });
    a.kill("SIGKILL");
    await phase1;
    await publishGateways(pub, { root: "edge", gateways: 5, count: 1000, perMessage: 10, window: 16, firstSeq: 1001 });
    // A gateway id with a dot: RabbitMQ keeps the dot in the routing key, so the message is
    // ambiguous — quarantined with the reason, not lost without a trace, not stored under a guess.
    await publish(pub, "edge/site-b/gw.5/telemetry", JSON.stringify({ v: 1, gw: "gw.5", seq: [1, 1], r: [["m/p", Date.now(), 7]] }));
    await waitFor("all stored", async () => (await count(`SELECT coalesce(sum(readings), 0) AS n FROM ${schema}.ledger`)) === 10_000, { timeoutMs: 60_000 });
    await waitFor("the dotted id quarantined", async () => (await db.query<{ reason: string }>(`SELECT reason FROM ${schema}.quarantine`)).some((q) => /a dot in the site or gateway id/.test(q.reason)), { timeoutMs: 20_000 });
    const [r] = await db.query<{ n: string; d: string }>(`SELECT count(*) AS n, count(DISTINCT (gateway_id, seq)) AS d FROM ${schema}.readings`);
    expect(r).toEqual({ n: "10000", d: "10000" });
    const ledgers = await db.query<{ received: string }>(`SELECT received::text AS received FROM ${schema}.ledger`);
    expect(ledgers.map((l) => l.received)).toEqual(Array(5).fill("{[1,2001)}"));
    // The queue is a quorum queue, as the ingest declared it.
    const conn = await amqp.connect(rabbit.nodes[0]!.amqpUrl);
    const ch = await conn.createChannel();
    const q = await ch.checkQueue("q1");
    expect(q.messageCount).toBe(0);
    const list = await rabbit.ctl(0, "list_queues", "name", "type", "--formatter", "json");
    expect(JSON.parse(list)).toContainEqual({ name: "q1", type: "quorum" });
    await conn.close();
  }, 120_000);

  it("asks the real agent for a replay through amq.topic after messages were purged from the queue", async () => {
    const schema = "rabbitreplay";
    let c = ingest(schema, "q2", ["--replay-after", "1s", "--gap-check", "300ms"]);
    await ready(c);
    const agent = new Agent(
      testConfig({
        gateway: "gw-r1",
        uplink: { url: rabbit.nodes[0]!.mqttUrl, reconnect: { min: "200ms", max: "1s" }, batch: { max_readings: 20, linger: "20ms" } },
        store: { path: join(tempDir(), "outbox.db"), replay_window: "1h" },
        sources: [{ type: "simulated", name: "meter", interval: "50ms", points: [{ name: "p0", wave: "sine" }, { name: "p1", wave: "ramp" }] }],
      }),
      { log: silentLogger() },
    );
    await agent.start();
    cleanups.push(() => agent.stop());
    const stored = () => count(`SELECT count(*) AS n FROM ${schema}.readings`).catch(() => 0);
    await waitFor("readings through RabbitMQ", async () => (await stored()) > 100, { timeoutMs: 30_000 });
    // The consumer goes away; what the gateway sends meanwhile is purged from the queue: lost in transit.
    c.kill("SIGKILL");
    await new Promise((r) => c.once("exit", r));
    const before = agent.status().outbox.lastSeq;
    await waitFor("more sent", () => agent.status().outbox.lastSeq > before + 100 && agent.status().outbox.depth === 0, { timeoutMs: 20_000 });
    const conn = await amqp.connect(rabbit.nodes[0]!.amqpUrl);
    const ch = await conn.createChannel();
    const purged = await ch.purgeQueue("q2");
    await conn.close();
    expect(purged.messageCount).toBeGreaterThan(0);
    c = ingest(schema, "q2", ["--replay-after", "1s", "--gap-check", "300ms"]);
    await ready(c);
    await waitFor(
      "the gap closed by a replay through amq.topic",
      async () => {
        const [l] = await db.query<{ received: string }>(`SELECT received::text AS received FROM ${schema}.ledger WHERE stream = 'telemetry'`);
        return l && /^\{\[1,\d+\)\}$/.test(l.received) && Number(/,(\d+)\)/.exec(l.received)![1]) > before + 100;
      },
      { timeoutMs: 60_000 },
    );
    const [g] = await db.query<{ site: string; gateway: string }>(`SELECT site, gateway FROM ${schema}.gateways`);
    expect(g).toEqual({ site: "test-site", gateway: "gw-r1" });
    const replays = await db.query<{ status: string }>(`SELECT status FROM ${schema}.replays`);
    expect(replays.length).toBeGreaterThanOrEqual(1);
    expect(replays.every((r) => r.status === "ok")).toBe(true);
    const [d] = await db.query<{ n: string; d: string }>(`SELECT count(*) AS n, count(DISTINCT seq) AS d FROM ${schema}.readings`);
    expect(d!.n).toBe(d!.d);
  }, 180_000);
});
