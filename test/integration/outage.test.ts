/**
 * The broker goes away for a while and comes back: everything stored meanwhile arrives, the
 * backlog in sequence order, and live readings keep flowing while it drains.
 */
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each(["json", "compact"] as const)("broker outage, %s payloads", (encoding) => {
  it("delivers everything stored during the outage, live first, backlog in order", async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.close());
    // A persistent session, so the broker keeps our messages while we too are cut off.
    // (The dictionary of compact payloads too: retained, and again at each reconnect.)
    const sub = await Collector.connect(broker.url, ["edge/+/+/telemetry", "edge/+/+/dict"], { clientId: `platform-${encoding}-${Date.now()}`, clean: false });
    cleanups.push(() => sub.close());
    const dir = tempDir();
    const cfg = testConfig({
      uplink: {
        url: broker.url,
        encoding,
        reconnect: { min: "200ms", max: "1s" },
        batch: { max_readings: 100, linger: "20ms" },
        // Slower than a burst: the store commits live readings every 100 ms (Recorder), so a
        // backlog drained in one burst would be over before the first live message.
        backlog: { rate: 1000, max_inflight: 2 },
      },
      store: { path: join(dir, "outbox.db") },
      sources: [
        {
          type: "simulated",
          name: "meter",
          interval: "10ms",
          points: Array.from({ length: 10 }, (_, i) => ({ name: `p${i}`, wave: "random-walk" })),
        },
      ],
    });
    const agent = new Agent(cfg, { log: silentLogger() });
    await agent.start();
    cleanups.push(() => agent.stop());

    await sub.waitFor(() => sub.readings > 500, 10_000, "live readings before the outage");
    await broker.stop();
    const lastBefore = sub.seq.report().last!;
    // An outage long enough to pile up a backlog worth draining (3 s of readings).
    await waitFor("3000 readings stored during the outage", () => agent.status().outbox.depth >= 3000);
    expect(agent.status().uplink.state).not.toBe("online");
    await broker.start();
    const countAtRestart = sub.messages.length;

    await sub.waitFor(() => agent.status().uplink.backlogRemaining === 0 && agent.status().uplink.state === "online", 20_000, "the backlog to drain");
    await sleep(500);
    await agent.stop();
    cleanups.pop();
    await sub.waitFor(() => sub.seq.report().last === agent.status().outbox.lastSeq, 10_000, "the last reading");

    const report = sub.seq.report();
    expect(report.gaps).toEqual([]);
    expect(report.first).toBe(1);
    expect(sub.reused).toBe(0);
    expect(sub.compact).toBe(encoding === "compact" ? sub.messages.length : 0);
    expect(agent.status().outbox.depth).toBe(0);

    // After the restart: messages of the backlog (seq below what was stored when the link came
    // back) and live messages interleave, and each stream is in sequence order.
    const after = sub.messages.slice(countAtRestart).filter((m) => m.seq[1] > lastBefore);
    const maxSeen: number[] = [];
    after.forEach((m, i) => maxSeen.push(Math.max(m.seq[1], maxSeen[i - 1] ?? 0)));
    const backlog = after.filter((m, i) => i > 0 && m.seq[1] < maxSeen[i - 1]!);
    const live = after.filter((m) => !backlog.includes(m));
    expect(backlog.length).toBeGreaterThan(5);
    const lastBacklogAt = after.indexOf(backlog[backlog.length - 1]!);
    const liveDuringDrain = live.filter((m) => after.indexOf(m) < lastBacklogAt);
    expect(liveDuringDrain.length).toBeGreaterThan(3);
    const ascending = (ms: typeof after) => ms.every((m, i) => i === 0 || m.seq[0] > ms[i - 1]!.seq[0]);
    expect(ascending(backlog)).toBe(true);
    expect(ascending(live)).toBe(true);
  });
});
