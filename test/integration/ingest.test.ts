/**
 * `edge-agent ingest` against a real PostgreSQL (initdb in a temp dir) and a real Mosquitto:
 * exactly once per sequence number with two processes on one shared subscription while one is
 * killed again and again, compact (v2) messages, and hostile messages quarantined.
 */
import type { ChildProcess } from "node:child_process";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PointDictionary } from "../../src/uplink/dictionary.js";
import { encodeCompact } from "../../src/uplink/compact.js";
import { type TestBroker, mosquittoBin, startBroker } from "../helpers/broker.js";
import { startCli } from "../helpers/cli.js";
import { connectPublisher, publish, publishGateways, readingOf, telemetryPayload } from "../helpers/contract-publisher.js";
import { startPostgres, type TestPostgres } from "../helpers/postgres.js";
import { waitFor, waitForOutput } from "../helpers/wait.js";

let db: TestPostgres;
let broker: TestBroker;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  if (!mosquittoBin) throw new Error("these tests need Mosquitto (EDGE_TEST_MOSQUITTO, set by .ci/run): shared subscriptions are the point");
  [db, broker] = await Promise.all([startPostgres(), startBroker()]);
}, 60_000);

afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await Promise.all([db?.stop(), broker?.close()]);
});

function ingest(args: string[], clientId: string): ChildProcess & { out: () => string } {
  const c = startCli(["ingest", "run", "-b", broker.url, "-d", db.url, "--client-id", clientId, "--log-level", "info", ...args]);
  children.add(c);
  c.once("exit", () => children.delete(c));
  return c;
}

const ready = (c: ReturnType<typeof ingest>) => waitForOutput(c, /ingest running/, "ingest running", { timeoutMs: 30_000 });

async function stopped(c: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise<void>((r) => c.once("exit", () => r()));
  c.kill(signal);
  await gone;
}

describe("ingest over an MQTT 5 shared subscription", () => {
  it("stores every sequence number of 20 gateways exactly once while one of two processes is killed three times", async () => {
    const schema = "killed";
    const args = ["--schema", schema, "--root", "k", "--group", "g1", "--no-replay", "--connections", "4"];
    const a = ingest(args, "ing-a");
    const b = ingest(args, "ing-b");
    await Promise.all([ready(a), ready(b)]);
    const pub = await connectPublisher(broker.url, "pub-killed");
    const GATEWAYS = 20;
    const COUNT = 3000;
    let killer = a;
    // Four phases of 750 readings per gateway; A is SIGKILLed in the middle of each of the first three.
    let sent = 0;
    for (let k = 0; k < 4; k++) {
      const phase = publishGateways(pub, { root: "k", gateways: GATEWAYS, count: COUNT / 4, firstSeq: 1 + (k * COUNT) / 4, perMessage: 10, window: 32 });
      if (k < 3) {
        await waitFor("A stores something of this phase", async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.readings WHERE seq > ${(k * COUNT) / 4}`).catch(() => [{ n: "0" }]))[0]!.n) > 0, { timeoutMs: 20_000 });
        await stopped(killer, "SIGKILL");
        killer = ingest(args, "ing-a");
        await ready(killer);
      }
      sent += await phase;
    }
    expect(sent).toBe(GATEWAYS * COUNT);
    await waitFor(
      "every reading stored",
      async () => {
        const [r] = await db.query<{ n: string }>(`SELECT sum(readings) AS n FROM ${schema}.ledger WHERE stream = 'telemetry'`);
        return Number(r?.n ?? 0) === GATEWAYS * COUNT;
      },
      { timeoutMs: 60_000 },
    );
    const [rows] = await db.query<{ n: string; distinct: string }>(`SELECT count(*) AS n, count(DISTINCT (gateway_id, seq)) AS distinct FROM ${schema}.readings`);
    expect(Number(rows!.n)).toBe(GATEWAYS * COUNT);
    expect(Number(rows!.distinct)).toBe(GATEWAYS * COUNT);
    // The values are the ones sent, reading by reading (a sample per gateway).
    const sample = await db.query<{ gateway: string; seq: string; num: number; name: string; ts: Date }>(
      `SELECT g.gateway, r.seq, r.num, p.name, r.ts FROM ${schema}.readings r JOIN ${schema}.gateways g ON g.id = r.gateway_id JOIN ${schema}.points p ON p.id = r.point_id WHERE r.seq % 997 = 0`,
    );
    expect(sample.length).toBe(GATEWAYS * Math.floor(COUNT / 997));
    for (const s of sample) {
      const gi = Number(s.gateway.slice(3));
      const [point, ts, value] = readingOf(gi, Number(s.seq));
      expect([s.name, s.ts.getTime(), s.num]).toEqual([point, ts, value]);
    }
    const ledger = await db.query<{ received: string }>(`SELECT received::text AS received FROM ${schema}.ledger WHERE stream = 'telemetry'`);
    expect(ledger).toHaveLength(GATEWAYS);
    for (const l of ledger) expect(l.received).toBe(`{[1,${COUNT + 1})}`);
    const report = startCli(["ingest", "report", "-d", db.url, "--schema", schema, "--json"]);
    await new Promise((r) => report.once("exit", r));
    const parsed = JSON.parse(report.out()) as { gateways: Array<{ streams: Array<{ open: number; received: number }> }> };
    expect(parsed.gateways).toHaveLength(GATEWAYS);
    expect(parsed.gateways.every((g) => g.streams[0]!.open === 0 && g.streams[0]!.received === COUNT)).toBe(true);
    expect(report.exitCode).toBe(0);
    pub.end(true);
    await Promise.all([stopped(killer), stopped(b)]);
  }, 180_000);

  it("acknowledges nothing while the database is down: an ingest killed during the outage loses nothing", async () => {
    const schema = "dbdown";
    const args = ["--schema", schema, "--root", "d", "--group", "g4", "--no-replay", "--connections", "4"];
    let c = ingest(args, "ing-d");
    await ready(c);
    const pub = await connectPublisher(broker.url, "pub-dbdown");
    await publishGateways(pub, { root: "d", gateways: 5, count: 200, perMessage: 20 });
    await waitFor("first half stored", async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.readings`))[0]!.n) === 1000, { timeoutMs: 20_000 });
    await db.kill();
    await publishGateways(pub, { root: "d", gateways: 5, count: 200, perMessage: 20, firstSeq: 201 });
    await waitForOutput(c, /cannot store a batch/, "the ingest reports the database down", { timeoutMs: 20_000 });
    // Had it acknowledged what it holds in memory, this kill would lose it.
    await stopped(c, "SIGKILL");
    await db.start();
    c = ingest(args, "ing-d");
    await waitFor("all stored", async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.readings`))[0]!.n) === 2000, { timeoutMs: 60_000 });
    const [l] = await db.query<{ n: string; d: string }>(`SELECT count(*) AS n, count(DISTINCT (gateway_id, seq)) AS d FROM ${schema}.readings`);
    expect(l).toEqual({ n: "2000", d: "2000" });
    const ledgers = await db.query<{ received: string }>(`SELECT received::text AS received FROM ${schema}.ledger`);
    expect(ledgers.map((x) => x.received)).toEqual(Array(5).fill("{[1,401)}"));
    pub.end(true);
    await stopped(c);
  }, 120_000);

  it("retries storing while the database is down and says when it stores again", async () => {
    const schema = "dbdown2";
    const c = ingest(["--schema", schema, "--root", "d2", "--group", "g6", "--no-replay", "--connections", "4"], "ing-d2");
    await ready(c);
    const pub = await connectPublisher(broker.url, "pub-dbdown2");
    await publishGateways(pub, { root: "d2", gateways: 2, count: 100, perMessage: 20 });
    await waitFor("stored", async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.readings`))[0]!.n) === 200, { timeoutMs: 20_000 });
    await db.kill();
    await publishGateways(pub, { root: "d2", gateways: 2, count: 100, perMessage: 20, firstSeq: 101 });
    await waitForOutput(c, /cannot store a batch/, "the ingest reports the database down", { timeoutMs: 20_000 });
    await db.start();
    await waitFor("all stored", async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.readings`))[0]!.n) === 400, { timeoutMs: 60_000 });
    await waitForOutput(c, /storing again/, "the ingest says it stores again", { timeoutMs: 10_000 });
    expect(c.exitCode).toBeNull();
    pub.end(true);
    await stopped(c);
  }, 120_000);

  it("stores compact (v2) messages with their dictionary, and a message sent twice once", async () => {
    const schema = "compact";
    const c = ingest(["--schema", schema, "--root", "c", "--group", "g2", "--no-replay", "--connections", "2", "--metrics", "127.0.0.1:0"], "ing-c");
    await ready(c);
    const metricsUrl = /metrics (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(c.out())![1]!;
    const pub: MqttClient = await connectPublisher(broker.url, "pub-compact");
    const dict = new PointDictionary(null);
    const rows = Array.from({ length: 50 }, (_, i) => ({ seq: i + 1, point: i % 3 === 0 ? "room-1/occupied" : `room-1/t${i % 2}`, ts: 1_764_547_200_000 + i * 1000, value: i % 3 === 0 ? i % 2 === 0 : i === 4 ? Number.NaN : i * 0.5, quality: "good" as const }));
    const batch = encodeCompact("gw-c", rows, dict, { maxBytes: 65536 })!;
    await publish(pub, "c/site-a/gw-c/dict", dict.payload("gw-c"), true);
    await publish(pub, "c/site-a/gw-c/telemetry", batch.payload);
    await publish(pub, "c/site-a/gw-c/telemetry", batch.payload);
    await waitFor("stored", async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.readings`))[0]!.n) === 50, { timeoutMs: 20_000 });
    const [l] = await db.query<{ readings: string; duplicates: string }>(`SELECT readings, duplicates FROM ${schema}.ledger`);
    expect(l).toEqual({ readings: "50", duplicates: "50" });
    const nan = await db.query<{ num: number }>(`SELECT num FROM ${schema}.readings WHERE seq = 5`);
    expect(Number.isNaN(nan[0]!.num)).toBe(true);
    const bools = await db.query<{ kind: string }>(`SELECT kind FROM ${schema}.points WHERE name = 'room-1/occupied'`);
    expect(bools[0]!.kind).toBe("boolean");
    const metrics = await (await fetch(metricsUrl)).text();
    expect(metrics).toMatch(/^edge_ingest_readings_total 50$/m);
    expect(metrics).toMatch(/^edge_ingest_duplicates_total 50$/m);
    expect(metrics).toMatch(/^edge_ingest_messages_total\{kind="telemetry"\} 2$/m);
    expect(metrics).toMatch(/^edge_ingest_commit_seconds_count \d+$/m);
    pub.end(true);
    await stopped(c);
  }, 60_000);

  it("stores events, results and status, and readings in monthly partitions (a clock gone wrong in readings_other)", async () => {
    const schema = "kinds";
    const c = ingest(["--schema", schema, "--root", "e", "--group", "g5", "--no-replay", "--connections", "2"], "ing-e");
    await ready(c);
    const pub = await connectPublisher(broker.url, "pub-kinds");
    const now = Date.now();
    const month = `${new Date(now).getUTCFullYear()}${String(new Date(now).getUTCMonth() + 1).padStart(2, "0")}`;
    await publish(pub, "e/site-a/gw-e/status", JSON.stringify({ state: "online", ts: now, version: "0.1.0" }), true);
    await publish(pub, "e/site-a/gw-e/events", JSON.stringify({ v: 1, gw: "gw-e", seq: [1, 2], r: [["room-1/occupied", now, true], ["charger-1/session", now, '{"kwh":0.6}']] }));
    await publish(pub, "e/site-a/gw-e/result", JSON.stringify({ v: 1, gw: "gw-e", seq: 1, id: "cmd-1", target: "street-1", action: "set", status: "ok", state: { on: true }, ts: now }));
    await publish(pub, "e/site-a/gw-e/telemetry", JSON.stringify({ v: 1, gw: "gw-e", seq: [1, 2], r: [["m/p", now, 1], ["m/p", Date.UTC(2001, 0, 1), 2]] }));
    await waitFor("stored", async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.readings`))[0]!.n) === 2, { timeoutMs: 20_000 });
    await waitFor("results stored", async () => (await db.query(`SELECT 1 FROM ${schema}.results`)).length === 1, { timeoutMs: 20_000 });
    const parts = await db.query<{ part: string; num: number }>(`SELECT tableoid::regclass::text AS part, num FROM ${schema}.readings ORDER BY num`);
    expect(parts).toEqual([
      { part: `${schema}.readings_${month}`, num: 1 },
      { part: `${schema}.readings_other`, num: 2 },
    ]);
    const events = await db.query<{ seq: string; name: string; value: unknown }>(`SELECT seq, name, value FROM ${schema}.events ORDER BY seq`);
    expect(events).toEqual([
      { seq: "1", name: "room-1/occupied", value: true },
      { seq: "2", name: "charger-1/session", value: '{"kwh":0.6}' },
    ]);
    const [r] = await db.query<{ id: string; target: string; status: string; body: { state: unknown } }>(`SELECT id, target, status, body FROM ${schema}.results`);
    expect(r).toMatchObject({ id: "cmd-1", target: "street-1", status: "ok", body: { state: { on: true } } });
    await waitFor("status stored", async () => (await db.query<{ state: string }>(`SELECT state FROM ${schema}.gateways WHERE state = 'online'`)).length === 1, { timeoutMs: 20_000 });
    const streams = await db.query<{ stream: string; received: string }>(`SELECT stream, received::text AS received FROM ${schema}.ledger ORDER BY stream`);
    expect(streams).toEqual([
      { stream: "events", received: "{[1,3)}" },
      { stream: "results", received: "{[1,2)}" },
      { stream: "telemetry", received: "{[1,3)}" },
    ]);
    pub.end(true);
    await stopped(c);
  }, 60_000);

  it("quarantines hostile messages with their reason and goes on storing the good ones", async () => {
    const schema = "hostile";
    const c = ingest(["--schema", schema, "--root", "h", "--group", "g3", "--no-replay", "--connections", "2", "--dictionary-wait", "1s"], "ing-h");
    await ready(c);
    const pub = await connectPublisher(broker.url, "pub-hostile");
    const t = "h/site-a/gw-h/telemetry";
    const bad: Array<[string, string | Buffer]> = [
      [t, "not json"],
      [t, "[]"],
      [t, JSON.stringify({ v: 1, gw: "other", seq: [1, 1], r: [["a/b", 1, 1]] })],
      [t, JSON.stringify({ v: 1, gw: "gw-h", seq: [1, 3], r: [["a/b", 1, 1]] })],
      [t, JSON.stringify({ v: 1, gw: "gw-h", seq: [-5, -5], r: [["a/b", 1, 1]] })],
      [t, JSON.stringify({ v: 1, gw: "gw-h", seq: [1e300, 1e300], r: [["a/b", 1, 1]] })],
      [t, Buffer.from([0xc5, 2, 0, 4, 0x67, 0x77, 0x2d, 0x68, 1, 1, 99])], // compact, dictionary 99 never sent
      ["h/site-a/gw-h/result", '{"v":1,"gw":"gw-h","seq":"x"}'],
      ["h/site-a/gw-h/status", '{"state":{"toString":1}}'],
      ["h/site-a/gw-h/dict", '{"v":2,"gw":"gw-h","version":1,"points":{"__proto__":"x"}}'],
    ];
    for (const [topic, payload] of bad) await publish(pub, topic, payload);
    // A good message with prototype keys beside the contract's (ignored, nothing polluted); then one
    // with a wrong type for a known point, a time in year 300000, an object value, toString and __proto__ as point names.
    await publish(pub, t, '{"v":1,"gw":"gw-h","seq":[1,1],"r":[["m/p",1764547200000,1.5]],"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":1}}}');
    await publish(
      pub,
      t,
      JSON.stringify({
        v: 1,
        gw: "gw-h",
        seq: [2, 7],
        r: [
          ["m/p", 1_764_547_201_000, "text now"],
          ["m/p", 9e15, 2],
          ["m/q", 1_764_547_202_000, { a: 1 }],
          ["toString", 1_764_547_203_000, 3],
          ["__proto__", 1_764_547_204_000, 4],
          ["m/p", 1_764_547_205_000, -1e308],
        ],
      }),
    );
    await waitFor("all handled", async () => Number((await db.query<{ n: string }>(`SELECT coalesce(sum(messages), 0) AS n FROM ${schema}.ledger WHERE stream = 'telemetry'`))[0]!.n) === 2, { timeoutMs: 20_000 });
    await waitFor("quarantined", async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.quarantine`))[0]!.n) >= bad.length + 3, { timeoutMs: 20_000 });
    const q = await db.query<{ reason: string; seq: string | null; topic: string }>(`SELECT reason, seq, topic FROM ${schema}.quarantine ORDER BY id`);
    const reasons = q.map((x) => x.reason).join("\n");
    expect(reasons).toMatch(/not JSON/);
    expect(reasons).toMatch(/gw 'other' in the payload differs from the topic's 'gw-h'/);
    expect(reasons).toMatch(/seq 1\.\.3 does not match 1 readings/);
    expect(reasons).toMatch(/needs dictionary version 99/);
    expect(reasons).toMatch(/point 'm\/p' carries number values; got a text/);
    expect(reasons).toMatch(/outside 1970…9999/);
    expect(reasons).toMatch(/not a number, boolean, text or null/);
    const stored = await db.query<{ seq: string; name: string; num: number }>(`SELECT r.seq, p.name, r.num FROM ${schema}.readings r JOIN ${schema}.points p ON p.id = r.point_id ORDER BY r.seq`);
    expect(stored.map((s) => [Number(s.seq), s.name, s.num])).toEqual([
      [1, "m/p", 1.5],
      [5, "toString", 3],
      [6, "__proto__", 4],
      [7, "m/p", -1e308],
    ]);
    // Every number of 1..7 is accounted for: stored or quarantined, no gap.
    const [l] = await db.query<{ received: string; quarantined: string }>(`SELECT received::text AS received, quarantined FROM ${schema}.ledger WHERE stream = 'telemetry'`);
    expect(l).toEqual({ received: "{[1,8)}", quarantined: "3" });
    // A replay answer no one asked for settles nothing: the gap 8..9 stays open.
    await publish(pub, t, JSON.stringify({ v: 1, gw: "gw-h", seq: [10, 10], r: [["m/p", 1_764_547_210_000, 10]] }));
    await publish(
      pub,
      "h/site-a/gw-h/result",
      JSON.stringify({ v: 1, gw: "gw-h", seq: 1, id: "replay-1-t-8-9-1", target: "outbox", action: "replay", status: "ok", state: { stream: "telemetry", from: 1, to: 100, resent: [], pending: [], missing: [{ from: 1, to: 100, reason: "quota" }] } }),
    );
    await waitFor("the result stored", async () => (await db.query(`SELECT 1 FROM ${schema}.results`)).length === 1, { timeoutMs: 20_000 });
    const [after] = await db.query<{ received: string; settled: string }>(`SELECT received::text AS received, settled::text AS settled FROM ${schema}.ledger WHERE stream = 'telemetry'`);
    expect(after).toEqual({ received: "{[1,8),[10,11)}", settled: "{}" });
    expect(await db.query(`SELECT * FROM ${schema}.final_gaps`)).toEqual([]);
    expect(c.exitCode).toBeNull();
    pub.end(true);
    await stopped(c);
  }, 60_000);
});

export { telemetryPayload };
