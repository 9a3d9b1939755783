/**
 * The data budget end to end (real agent, Mosquitto): a month almost spent (the gateway's
 * count file says so), so the forecast is over at the first message. The uplink says so (status,
 * event), live readings then travel in fewer, larger messages, and every stored reading still
 * reaches the broker once with no gap.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Agent } from "../../src/agent/agent.js";
import { silentLogger } from "../../src/ops/logger.js";
import { startBroker } from "../helpers/broker.js";
import { testConfig } from "../helpers/config.js";
import { Collector } from "../helpers/subscriber.js";
import { tempDir } from "../helpers/tmp.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("monthly data budget", () => {
  it("over the forecast: batches longer, reports it, loses nothing", { timeout: 60_000 }, async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.close());
    const sub = await Collector.connect(broker.url, ["edge/+/+/telemetry", "edge/+/+/events"]);
    cleanups.push(() => sub.close());
    const dir = tempDir();
    const month = new Date().toISOString().slice(0, 7);
    // A fake month: 9.9 of the 10 MB already spent.
    writeFileSync(join(dir, "data-budget.json"), JSON.stringify({ month, bytes: 9_900_000 }));
    const cfg = testConfig({
      uplink: {
        url: broker.url,
        // meter/p0 is non-critical: while saving, stored once a second instead of 20 times.
        budget: { limit: "10MB", saving_linger: "1500ms", non_critical: ["meter/p0"], non_critical_interval: "1s" },
        batch: { linger: "10ms" },
        reconnect: { min: "200ms", max: "1s" },
      },
      store: { path: join(dir, "outbox.db") },
      sources: [{ type: "simulated", name: "meter", interval: "50ms", points: Array.from({ length: 5 }, (_, i) => ({ name: `p${i}`, wave: "random-walk" })) }],
    });
    const agent = new Agent(cfg, { log: silentLogger() });
    await agent.start();
    cleanups.push(() => agent.stop());
    await sub.waitFor(() => sub.readings > 600, 30_000, "600 readings at the broker");
    const budget = agent.status().uplink.budget!;
    expect(budget).toMatchObject({ month, limit: 10 * 1024 * 1024, saving: true });
    expect(budget.bytes).toBeGreaterThan(9_900_000);
    expect(budget.forecast).toBeGreaterThan(budget.limit);
    // Messages after the first: ~1.5 s of readings each (100 readings/s), not a few every 10 ms.
    const later = sub.messages.slice(1);
    const perMessage = later.reduce((n, m) => n + m.r.length, 0) / later.length;
    expect(perMessage).toBeGreaterThan(50);
    // The platform heard it: an event on the gateway's data_budget point.
    const ev = sub.other.filter((m) => m.topic.endsWith("/events")).map((m) => JSON.parse(m.payload) as { r: Array<[string, number, string]> });
    const said = ev.flatMap((m) => m.r).find((r) => r[0] === "gw-test/data_budget");
    expect(said).toBeDefined();
    expect(JSON.parse(said![2])).toMatchObject({ over: true, saving: true, month });
    await agent.stop();
    cleanups.pop();
    await sub.waitFor(() => sub.seq.report().last === agent.status().outbox.lastSeq, 10_000, "every stored reading");
    expect(sub.seq.report()).toMatchObject({ first: 1, gaps: [] });
    expect(sub.reused).toBe(0);
    // The non-critical point was thinned (counted, never numbered: no gap above); the others were not.
    const at = (p: string) => sub.messages.flatMap((m) => m.r).filter((r) => r[0] === p);
    const p0 = at("meter/p0");
    const p1 = at("meter/p1");
    expect(p1.length).toBeGreaterThan(10 * p0.length);
    expect(agent.status().thinned).toBeGreaterThan(p1.length / 2);
    for (let i = 1; i < p0.length; i++) expect(p0[i]![1] - p0[i - 1]![1]).toBeGreaterThanOrEqual(1000);
  });
});
