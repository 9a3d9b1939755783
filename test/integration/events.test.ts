/** Events (state changes derived on the gateway) travel like readings: outbox first, own sequence, PUBACK. */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Agent } from "../../src/agent/agent.js";
import type { Reading } from "../../src/model/reading.js";
import { silentLogger } from "../../src/ops/logger.js";
import type { Processor } from "../../src/model/processor.js";
import { decodeTelemetry } from "../../src/uplink/codec.js";
import { SeqTracker } from "../../src/uplink/seq-tracker.js";
import { startBroker } from "../helpers/broker.js";
import { exited, startCli } from "../helpers/cli.js";
import { testConfig } from "../helpers/config.js";
import { Collector } from "../helpers/subscriber.js";
import { tempDir } from "../helpers/tmp.js";
import { waitForOutput } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Emits an event each time the square wave flips, and a derived reading every tick. */
class Flips implements Processor {
  readonly name = "flips";
  private last: unknown;
  process(readings: readonly Reading[]) {
    const r = readings.find((x) => x.point === "sq/level");
    if (!r) return { readings: [], events: [] };
    const events = this.last !== undefined && r.value !== this.last ? [{ point: "sq/flipped", ts: r.ts, value: r.value, quality: "good" as const }] : [];
    this.last = r.value;
    return { readings: [{ point: "sq/double", ts: r.ts, value: (r.value as number) * 2, quality: "good" as const }], events };
  }
}

describe("events", () => {
  it("are stored, published on /events with their own sequence numbers, and deleted on PUBACK", async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.close());
    const sub = await Collector.connect(broker.url, "edge/test-site/gw-test/#");
    cleanups.push(() => sub.close());
    const dir = tempDir();
    const cfg = testConfig({
      uplink: { url: broker.url, batch: { linger: "20ms" } },
      store: { path: join(dir, "o.db") },
      sources: [{ type: "simulated", name: "sq", interval: "20ms", points: [{ name: "level", wave: "square", min: 0, max: 1, period: "200ms", decimals: 0 }] }],
    });
    const tail = startCli(["tail", "--broker", broker.url, "--events", "--verify", "--json"]);
    cleanups.push(async () => {
      tail.kill("SIGKILL");
      await exited(tail);
    });
    const agent = new Agent(cfg, { log: silentLogger(), processors: [new Flips()] });
    await agent.start();
    cleanups.push(() => agent.stop());
    await sub.waitFor(() => sub.other.filter((m) => m.topic.endsWith("/events")).length >= 5, 10_000, "events");
    // The reference receiver has seen both streams (one JSON line per reading) before it stops.
    await waitForOutput(tail, (out) => out.includes('"gw":"test-site/gw-test events"') && out.includes('"gw":"test-site/gw-test"'), "tail's first reading of each stream");
    await agent.stop();
    cleanups.pop();
    const status = agent.status();
    const events = new SeqTracker();
    let count = 0;
    for (const m of sub.other.filter((x) => x.topic === "edge/test-site/gw-test/events")) {
      const d = decodeTelemetry(m.payload);
      if (!d.ok) throw new Error(d.reason);
      events.add(d.msg.seq[0], d.msg.seq[1]);
      count += d.msg.r.length;
      for (const r of d.msg.r) expect(r[0]).toBe("sq/flipped");
    }
    expect(events.report()).toMatchObject({ first: 1, gaps: [], duplicates: 0 });
    expect(count).toBe(status.events);
    expect(status.outbox.streams.events.depth).toBe(0);
    // Telemetry numbers its readings alone: no gap where an event was stored.
    expect(sub.seq.report()).toMatchObject({ first: 1, gaps: [] });
    expect(sub.messages.some((m) => m.r.some((r) => r[0] === "sq/double"))).toBe(true);
    // The reference receiver tracks the two sequences apart, and finds no gap in either.
    tail.kill("SIGINT");
    expect(await exited(tail)).toBe(0);
    const report = JSON.parse(tail.out().slice(tail.out().indexOf("{\n"))) as { gateways: { gateway: string; missing: number; received: number }[] };
    expect(report.gateways.map((g) => g.gateway)).toEqual(["test-site/gw-test", "test-site/gw-test events"]);
    expect(report.gateways.every((g) => g.missing === 0 && g.received > 0)).toBe(true);
  });
});
