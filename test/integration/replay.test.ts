/**
 * Gap replay end to end, the real agent and Mosquitto: with store.replay_window the gateway keeps
 * what the broker acknowledged; a replay command on cmd/outbox (sent over MQTT, as the platform
 * would) makes the same numbers arrive again with the same content — telemetry in both encodings,
 * and command results — and a range the gateway dropped for its quota while the broker was away
 * is answered missing with the reason `quota`.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import mqtt from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { Agent } from "../../src/agent/agent.js";
import type { ReplayAnswer } from "../../src/model/replay.js";
import { silentLogger } from "../../src/ops/logger.js";
import { startBroker } from "../helpers/broker.js";
import { runCli } from "../helpers/cli.js";
import { testConfig } from "../helpers/config.js";
import { Collector } from "../helpers/subscriber.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const BASE = "edge/test-site/gw-test";

interface ResultMessage {
  seq: number;
  id: string | null;
  status: string;
  reason?: string;
  state?: ReplayAnswer;
}

/** The platform's side: a subscriber of everything the gateway sends, and a client that commands it. */
async function platform(url: string, name: string) {
  const sub = await Collector.connect(url, [`${BASE}/#`], { clientId: `platform-${name}-${Date.now()}`, clean: false });
  const client = await mqtt.connectAsync(url, { clientId: `platform-cmd-${name}-${Date.now()}` });
  cleanups.push(() => sub.close(), () => client.endAsync());
  const results = () => sub.other.filter((m) => m.topic === `${BASE}/result`).map((m) => JSON.parse(m.payload) as ResultMessage);
  /** How often each telemetry number arrived. */
  const arrivals = () => {
    const n = new Map<number, number>();
    for (const m of sub.messages) for (let s = m.seq[0]; s <= m.seq[1]; s++) n.set(s, (n.get(s) ?? 0) + 1);
    return n;
  };
  const replay = async (id: string, args: Record<string, unknown>): Promise<ResultMessage> => {
    await client.publishAsync(`${BASE}/cmd/outbox`, JSON.stringify({ id, action: "replay", args }), { qos: 1 });
    return waitFor(`the answer to ${id}`, () => results().find((r) => r.id === id));
  };
  return { sub, results, arrivals, replay };
}

function agentConfig(url: string, dir: string, over: { encoding?: "json" | "compact"; quota?: string; points?: number; interval?: string } = {}) {
  return testConfig({
    uplink: { url, encoding: over.encoding ?? "json", reconnect: { min: "200ms", max: "1s" }, batch: { max_readings: 100, linger: "20ms" } },
    store: { path: join(dir, "outbox.db"), replay_window: "1h", ...(over.quota ? { quota: over.quota } : {}) },
    sources: [
      {
        type: "simulated",
        name: "meter",
        interval: over.interval ?? "20ms",
        points: Array.from({ length: over.points ?? 5 }, (_, i) => ({ name: `p${i}`, wave: "random-walk" })),
      },
    ],
  });
}

describe.each(["json", "compact"] as const)("replay, %s payloads", (encoding) => {
  it("sends the same numbers again with the same content, and command results too", { timeout: 60_000 }, async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.close());
    const p = await platform(broker.url, encoding);
    const agent = new Agent(agentConfig(broker.url, tempDir(), { encoding }), { log: silentLogger() });
    await agent.start();
    cleanups.push(() => agent.stop());

    await p.sub.waitFor(() => p.sub.readings >= 400, 20_000, "400 readings");
    await waitFor("300 readings kept after their PUBACK", () => agent.status().outbox.streams.telemetry.kept >= 300);
    const before = new Map(p.sub.bySeq);
    expect(p.arrivals().get(100)).toBe(1);

    const answer = await p.replay("replay-telemetry-100-250-1", { stream: "telemetry", from: 100, to: 250 });
    expect(answer).toMatchObject({ status: "ok", state: { stream: "telemetry", from: 100, to: 250, resent: [[100, 250]], pending: [], missing: [] } });
    await p.sub.waitFor(
      () => {
        const n = p.arrivals();
        for (let s = 100; s <= 250; s++) if (n.get(s) !== 2) return false;
        return true;
      },
      20_000,
      "100..250 a second time",
    );
    // The same content under each number (the subscriber counts a number carrying other content).
    expect(p.sub.reused).toBe(0);
    for (let s = 100; s <= 250; s++) expect(p.sub.bySeq.get(s)).toBe(before.get(s));
    // Only those: the numbers around the range came once.
    expect(p.arrivals().get(99)).toBe(1);
    expect(p.arrivals().get(251)).toBe(1);
    if (encoding === "compact") expect(p.sub.compact).toBe(p.sub.messages.length);

    // Command results: the answer above (results seq 1) is sent again when asked for.
    await waitFor("the first result kept", () => agent.status().outbox.streams.results.kept >= 1);
    const first = p.sub.other.find((m) => m.topic === `${BASE}/result`)!.payload;
    const again = await p.replay("replay-results-1-1", { stream: "results", from: 1, to: 1 });
    expect(again.state).toEqual({ stream: "results", from: 1, to: 1, resent: [[1, 1]], pending: [], missing: [] });
    await waitFor("result seq 1 a second time", () => p.sub.other.filter((m) => m.topic === `${BASE}/result` && m.payload === first).length === 2);

    // Numbers above the last one issued are not-issued; a hostile replay is refused over MQTT too.
    const last = agent.status().outbox.lastSeq;
    const high = await p.replay("replay-high", { stream: "telemetry", from: last + 1_000_000, to: last + 1_000_010 });
    expect(high.state).toEqual({ stream: "telemetry", from: last + 1_000_000, to: last + 1_000_010, resent: [], pending: [], missing: [{ from: last + 1_000_000, to: last + 1_000_010, reason: "not-issued" }] });
    const bad = await p.replay("replay-bad", { stream: "telemetry", from: 10, to: 5 });
    expect(bad).toMatchObject({ status: "rejected", reason: "args.to: must be at least from (10), got 5" });
    expect(p.sub.seq.report().gaps).toEqual([]);
  });
});

describe("replay of a range dropped for the quota", () => {
  it("is answered missing with the reason quota", { timeout: 90_000 }, async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.close());
    const p = await platform(broker.url, "quota");
    const dir = tempDir();
    const agent = new Agent(agentConfig(broker.url, dir, { quota: "160KB", points: 20, interval: "10ms" }), { log: silentLogger() });
    await agent.start();
    cleanups.push(() => agent.stop());

    await p.sub.waitFor(() => p.sub.readings >= 500, 20_000, "readings before the outage");
    // The broker is away while readings pile up past the quota: the kept rows go first, then the oldest unsent.
    await broker.stop();
    await waitFor("unsent readings dropped for the quota", () => agent.status().outbox.dropped.quota_oldest >= 2000, { timeoutMs: 40_000 });
    await broker.start();
    await waitFor("the backlog drained", () => agent.status().uplink.state === "online" && agent.status().uplink.backlogRemaining === 0 && agent.status().outbox.depth < 1000, { timeoutMs: 30_000 });

    const gaps = p.sub.seq.report().gaps;
    expect(gaps.length).toBeGreaterThan(0);
    const [from, to] = gaps[0]!;
    const answer = await p.replay("replay-quota-gap", { stream: "telemetry", from, to });
    expect(answer).toMatchObject({ status: "ok", state: { stream: "telemetry", from, to, resent: [], pending: [], missing: [{ from, to, reason: "quota" }] } });

    // The whole story from 1: what went for the quota (kept rows first, then unsent ones) is quota;
    // what is still kept is sent again; every number answered once.
    const state = (await p.replay("replay-quota-all", { stream: "telemetry", from: 1, to })).state!;
    expect(state.missing.every((m) => m.reason === "quota")).toBe(true);
    expect(state.missing.at(-1)).toMatchObject({ to, reason: "quota" });
    const answered = [...state.resent, ...state.pending, ...state.missing.map((m): [number, number] => [m.from, m.to])].reduce((n, [a, b]) => n + b - a + 1, 0);
    expect(answered).toBe(to);

    // buffer stats (read-only beside the running agent): kept rows apart from what waits, and the ledger.
    const file = join(dir, "agent.yaml");
    writeFileSync(file, `site: test-site\ngateway: gw-test\nuplink: { url: "${broker.url}" }\nstore: { path: ./outbox.db, quota: 160KB, replay_window: 1h }\n`);
    const stats = runCli(["buffer", "stats", "-c", file]);
    expect(stats.code).toBe(0);
    expect(stats.stdout).toMatch(/^kept for replay +\d+ rows .*delivered, kept 1h after the broker took them, for a replay$/m);
    expect(stats.stdout).toMatch(/^drop ledger +[1-9]\d* ranges/m);
    const json = JSON.parse(runCli(["buffer", "stats", "-c", file, "--json"]).stdout) as { kept: number; depth: number; replayWindowMs: number; droppedRanges: number };
    expect(json.replayWindowMs).toBe(3_600_000);
    expect(json.kept).toBeGreaterThan(0);
    expect(json.droppedRanges).toBeGreaterThan(0);
  });
});
