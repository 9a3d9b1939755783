import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Agent } from "../../src/agent/agent.js";
import { silentLogger } from "../../src/ops/logger.js";
import { startBroker } from "../helpers/broker.js";
import { testConfig } from "../helpers/config.js";
import { Collector } from "../helpers/subscriber.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("gateway health", () => {
  it("is published on <root>/<site>/<gateway>/health at its interval", async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.close());
    const sub = await Collector.connect(broker.url, "edge/test-site/gw-test/health");
    cleanups.push(() => sub.close());
    const cfg = testConfig({
      uplink: { url: broker.url, health_interval: "300ms" },
      store: { path: join(tempDir(), "o.db") },
      sources: [{ type: "simulated", name: "m", interval: "100ms", points: [{ name: "p" }] }],
    });
    const agent = new Agent(cfg, { log: silentLogger() });
    await agent.start();
    cleanups.push(() => agent.stop());
    await sub.waitFor(() => sub.other.length >= 2, 10_000, "two health messages");
    const h = JSON.parse(sub.other[1]!.payload);
    expect(h).toMatchObject({ v: 1, gw: "gw-test", versions: { node: process.version }, devices: { online: 0, offline: 0 } });
    expect(h.uptime_s).toBeGreaterThanOrEqual(0);
    expect(h.memory.rss_bytes).toBeGreaterThan(10_000_000);
    expect(h.disk.total_bytes).toBeGreaterThan(h.disk.free_bytes);
    expect(h.outbox.quota_bytes).toBe(cfg.store.quota);
    expect(h.cpu.cores).toBeGreaterThan(0);
    expect(sub.other[1]!.retain).toBe(false);
  });

  it("is scraped from the metrics endpoint the config asks for", async () => {
    const cfg = testConfig({
      uplink: { url: "mqtt://127.0.0.1:1", health_interval: "0s" },
      store: { path: join(tempDir(), "o.db") },
      metrics: { port: 0 },
      sources: [{ type: "simulated", name: "m", interval: "50ms", points: [{ name: "p" }] }],
    });
    const agent = new Agent(cfg, { log: silentLogger() });
    await agent.start();
    cleanups.push(() => agent.stop());
    await waitFor("readings stored", () => agent.status().stored > 0);
    const text = await (await fetch(`${agent.metricsUrl}/metrics`)).text();
    const sample = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text)?.[1]);
    expect(sample("edge_agent_readings_stored_total")).toBeGreaterThan(0);
    expect(sample("edge_agent_uplink_connected")).toBe(0);
    expect(sample('edge_agent_outbox_depth\\{stream="telemetry"\\}')).toBeGreaterThan(0);
    const health = await fetch(`${agent.metricsUrl}/healthz`);
    expect(health.status).toBe(200);
  });
});

describe("agent health (watchdog and /healthz)", () => {
  it("turns unhealthy when a poll loop stops finishing its runs", async () => {
    let hang = false;
    const source = {
      name: "stuck",
      interval: 50,
      poll: (ts: number) =>
        hang ? new Promise<never>(() => {}) : Promise.resolve([{ point: "stuck/p", ts, value: 1, quality: "good" as const }]),
    };
    const cfg = testConfig({ uplink: { url: "mqtt://127.0.0.1:1", health_interval: "0s" }, store: { path: join(tempDir(), "o.db") }, metrics: { port: 0 } });
    // A grace a busy machine's pauses stay well inside: a false alarm here would be the load's.
    const agent = new Agent(cfg, { log: silentLogger(), sources: [source], healthGraceMs: 1500 });
    await agent.start();
    cleanups.push(() => agent.stop()); // a stuck poll delays the stop by at most the scheduler's wait
    await waitFor("a few runs of the loop", () => (agent.status().sources.stuck?.polls ?? 0) >= 3);
    expect(agent.healthProblems()).toEqual([]);
    expect((await fetch(`${agent.metricsUrl}/healthz`)).status).toBe(200);
    hang = true;
    const problems = await waitFor("the stuck loop reported", () => agent.healthProblems().join() || undefined);
    expect(problems).toMatch(/task stuck: last run finished \d+\.\d s ago/);
    expect((await fetch(`${agent.metricsUrl}/healthz`)).status).toBe(503);
  });
});
