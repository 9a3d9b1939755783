/**
 * Gap replay from the platform's side, end to end: the real agent publishes to its broker; a relay
 * carries everything to the platform's broker, where `edge-agent ingest` (PostgreSQL started by
 * the test) stores it. Messages removed in transit leave a gap; the ingest asks the gateway for a
 * replay, the gateway resends those readings with their original numbers, and the ledger closes
 * the gap. Readings the gateway dropped for its quota while its broker was away make a gap the
 * gateway answers `missing … quota`: it becomes final with that reason.
 */
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/agent/agent.js";
import { silentLogger } from "../../src/ops/logger.js";
import { decodeTelemetry } from "../../src/uplink/codec.js";
import { type TestBroker, mosquittoBin, startBroker } from "../helpers/broker.js";
import { runCli, startCli } from "../helpers/cli.js";
import { connectPublisher, publish } from "../helpers/contract-publisher.js";
import { testConfig } from "../helpers/config.js";
import { startRelay } from "../helpers/mqtt-relay.js";
import { startPostgres, type TestPostgres } from "../helpers/postgres.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor, waitForOutput } from "../helpers/wait.js";

let db: TestPostgres;
let platformBroker: TestBroker;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  if (!mosquittoBin) throw new Error("these tests need Mosquitto (EDGE_TEST_MOSQUITTO, set by .ci/run)");
  [db, platformBroker] = await Promise.all([startPostgres(), startBroker()]);
}, 60_000);

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

afterAll(async () => {
  await Promise.all([db?.stop(), platformBroker?.close()]);
});

function ingest(schema: string): ChildProcess & { out: () => string } {
  const c = startCli([
    "ingest", "run", "-b", platformBroker.url, "-d", db.url, "--schema", schema, "--group", schema, "--client-id", `ing-${schema}`,
    "--replay-after", "1s", "--gap-check", "300ms", "--replay-retry", "5s", "--connections", "2",
  ]);
  cleanups.push(async () => {
    if (c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((r) => c.once("exit", r));
      c.kill("SIGTERM");
      const t = setTimeout(() => c.kill("SIGKILL"), 15_000); // never leave one behind
      await gone;
      clearTimeout(t);
      expect(c.signalCode, `ingest did not stop on SIGTERM:\n${c.out().slice(-2000)}`).toBeNull();
    }
  });
  return c;
}

function agentConfig(url: string, dir: string, gateway: string, over: { quota?: string; interval?: string; points?: number } = {}) {
  return testConfig({
    gateway,
    uplink: { url, reconnect: { min: "200ms", max: "1s" }, batch: { max_readings: 20, linger: "20ms" } },
    store: { path: join(dir, "outbox.db"), replay_window: "1h", ...(over.quota ? { quota: over.quota } : {}) },
    sources: [{ type: "simulated", name: "meter", interval: over.interval ?? "50ms", points: Array.from({ length: over.points ?? 5 }, (_, i) => ({ name: `p${i}`, wave: "random-walk" })) }],
  });
}

interface Ledger {
  received: string;
  settled: string;
}

const ledger = async (schema: string, gateway: string): Promise<Ledger | undefined> =>
  (
    await db.query<Ledger>(
      `SELECT l.received::text AS received, l.settled::text AS settled FROM ${schema}.ledger l JOIN ${schema}.gateways g ON g.id = l.gateway_id WHERE g.gateway = $1 AND l.stream = 'telemetry'`,
      [gateway],
    )
  )[0];

describe("ingest: gap replay with the real agent", () => {
  it("asks for the readings removed in transit; the gateway resends them with their numbers and the gap closes", async () => {
    const schema = "transit";
    const gatewayBroker = await startBroker();
    cleanups.push(() => gatewayBroker.close());
    const c = ingest(schema);
    await waitForOutput(c, /ingest running/, "ingest running", { timeoutMs: 30_000 });
    // Telemetry messages 4 and 5 never reach the platform.
    let n = 0;
    const relay = await startRelay({ gatewaySide: gatewayBroker.url, platformSide: platformBroker.url, root: "edge", drop: (topic) => topic.endsWith("/telemetry") && [4, 5].includes(++n) });
    cleanups.push(() => relay.close());
    const agent = new Agent(agentConfig(gatewayBroker.url, tempDir(), "gw-transit"), { log: silentLogger() });
    await agent.start();
    cleanups.push(() => agent.stop());

    await waitFor("two messages dropped in transit", () => relay.dropped.length === 2, { timeoutMs: 20_000 });
    const lost = relay.dropped.map((d) => decodeTelemetry(d.payload)).map((d) => (d.ok ? d.msg : null));
    expect(lost.every((m) => m !== null)).toBe(true);
    const [first, last] = [lost[0]!.seq[0], lost[1]!.seq[1]];
    await waitFor("the gap seen by the ingest", async () => {
      const l = await ledger(schema, "gw-transit");
      return l !== undefined && l.received.startsWith(`{[1,${first}),`);
    });
    await waitFor(
      "the gap closed by a replay",
      async () => {
        const l = await ledger(schema, "gw-transit");
        return l !== undefined && /^\{\[1,\d+\)\}$/.test(l.received) ? l : undefined;
      },
      { timeoutMs: 30_000 },
    );
    // The replayed readings are the ones that were lost: same numbers, points, times and values.
    const rows = await db.query<{ seq: string; name: string; ts: Date; num: number }>(
      `SELECT r.seq, p.name, r.ts, r.num FROM ${schema}.readings r JOIN ${schema}.points p ON p.id = r.point_id WHERE r.seq BETWEEN $1 AND $2 ORDER BY r.seq`,
      [first, last],
    );
    const expected = lost.flatMap((m) => m!.r.map((r, i) => [m!.seq[0] + i, r[0], r[1], r[2]]));
    expect(rows.map((r) => [Number(r.seq), r.name, r.ts.getTime(), r.num])).toEqual(expected);
    // The answer (on result) may come after the readings it put back.
    const replays = await waitFor("the replay answered", async () => {
      const rows = await db.query<{ status: string | null; lo: string; hi: string }>(`SELECT status, lo, hi FROM ${schema}.replays ORDER BY asked_at`);
      return rows.length > 0 && rows[0]!.status !== null ? rows : undefined;
    });
    expect(replays.length).toBeGreaterThanOrEqual(1);
    expect(replays[0]).toMatchObject({ status: "ok", lo: String(first), hi: String(last) });
    const [dup] = await db.query<{ n: string; d: string }>(`SELECT count(*) AS n, count(DISTINCT seq) AS d FROM ${schema}.readings`);
    expect(dup!.n).toBe(dup!.d);
    const report = runCli(["ingest", "report", "-d", db.url, "--schema", schema]);
    expect(report.stdout).toMatch(/test-site\/gw-transit: online since .* replays asked [1-9]\d*, answered [1-9]\d*/);
    expect(report.stdout).toMatch(/telemetry: seq 1\.\.\d+ · \d+ stored in \d+ messages · no open gaps/);

    // A forged message with the largest safe number opens a gap of ~9·10^15 numbers: one replay
    // command (not billions), the gateway answers not-issued, and the whole gap settles at once.
    const forger = await connectPublisher(platformBroker.url, "forger");
    cleanups.push(async () => void forger.end(true));
    const top = Number.MAX_SAFE_INTEGER;
    await publish(forger, "edge/test-site/gw-transit/telemetry", JSON.stringify({ v: 1, gw: "gw-transit", seq: [top, top], r: [["meter/p0", Date.now(), 1]] }));
    const settled = await waitFor(
      "the forged gap settled as not-issued",
      async () => (await db.query<{ lo: string; hi: string; reason: string }>(`SELECT lo, hi, reason FROM ${schema}.final_gaps WHERE reason = 'not-issued'`))[0],
      { timeoutMs: 30_000 },
    );
    expect(Number(settled.hi)).toBe(top - 1);
    const forged = await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.replays WHERE lo > $1`, [first]);
    expect(Number(forged[0]!.n)).toBeLessThanOrEqual(2);
    expect(c.exitCode).toBeNull();
  }, 90_000);

  it("marks final, with the gateway's reason, a gap of readings it dropped for its quota", async () => {
    const schema = "quota";
    const gatewayBroker = await startBroker();
    cleanups.push(() => gatewayBroker.close());
    const c = ingest(schema);
    await waitForOutput(c, /ingest running/, "ingest running", { timeoutMs: 30_000 });
    const relay = await startRelay({ gatewaySide: gatewayBroker.url, platformSide: platformBroker.url, root: "edge", drop: () => false });
    cleanups.push(() => relay.close());
    const agent = new Agent(agentConfig(gatewayBroker.url, tempDir(), "gw-quota", { quota: "160KB", interval: "10ms", points: 20 }), { log: silentLogger() });
    await agent.start();
    cleanups.push(() => agent.stop());
    await waitFor("readings stored by the ingest", async () => (await ledger(schema, "gw-quota")) !== undefined, { timeoutMs: 20_000 });
    // The gateway's broker goes away while readings pile up past the quota: the oldest unsent are dropped.
    await gatewayBroker.stop();
    await waitFor("unsent readings dropped for the quota", () => agent.status().outbox.dropped.quota_oldest >= 2000, { timeoutMs: 40_000 });
    await gatewayBroker.start();
    const settled = await waitFor(
      "the gap settled as final",
      async () => {
        const l = await ledger(schema, "gw-quota");
        return l && l.settled !== "{}" && /^\{\[1,\d+\)\}$/.test(unionText(l)) ? l : undefined;
      },
      { timeoutMs: 40_000 },
    );
    const finals = await db.query<{ lo: string; hi: string; reason: string }>(`SELECT lo, hi, reason FROM ${schema}.final_gaps`);
    expect(finals.length).toBeGreaterThanOrEqual(1);
    expect(finals.every((f) => f.reason === "quota")).toBe(true);
    const dropped = finals.reduce((s, f) => s + Number(f.hi) - Number(f.lo) + 1, 0);
    expect(dropped).toBeGreaterThanOrEqual(2000);
    expect(settled.settled).toMatch(/^\{\[\d+,\d+\)/);
    const report = runCli(["ingest", "report", "-d", db.url, "--schema", schema, "--json"]);
    const g = (JSON.parse(report.stdout) as { gateways: Array<{ gateway: string; streams: Array<{ stream: string; open: number; final: number; finalGaps: Array<{ reason: string }> }> }> }).gateways.find((x) => x.gateway === "gw-quota")!;
    const t = g.streams.find((s) => s.stream === "telemetry")!;
    expect(t.open).toBe(0);
    expect(t.final).toBe(dropped);
    expect(t.finalGaps[0]!.reason).toBe("quota");
    expect(report.code).toBe(0);
  }, 120_000);
});

/** received ∪ settled as multirange text (the ledger is complete when it is one range). */
function unionText(l: Ledger): string {
  const parse = (t: string) => [...t.matchAll(/\[(\d+),(\d+)\)/g)].map((m) => [Number(m[1]), Number(m[2])] as [number, number]);
  const all = [...parse(l.received), ...parse(l.settled)].sort((a, b) => a[0] - b[0]);
  const out: Array<[number, number]> = [];
  for (const [a, b] of all) {
    const last = out[out.length - 1];
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return `{${out.map(([a, b]) => `[${a},${b})`).join(",")}}`;
}
