/** The live feed for panels and signage: latest values as JSON, changes as Server-Sent Events. */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Agent } from "../../src/agent/agent.js";
import { silentLogger } from "../../src/ops/logger.js";
import { testConfig } from "../helpers/config.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("live feed", () => {
  it("serves the latest value of each point and streams the changes, read-only", async () => {
    const cfg = testConfig({
      uplink: { url: "mqtt://127.0.0.1:1", health_interval: "0s" },
      store: { path: join(tempDir(), "o.db") },
      live_feed: { port: 0 },
      sources: [
        { type: "simulated", name: "room-101", interval: "50ms", points: [{ name: "co2", wave: "ramp", min: 400, max: 1400, period: "1s", decimals: 0 }] },
        { type: "simulated", name: "hall", interval: "50ms", points: [{ name: "lux", wave: "constant", min: 300 }] },
      ],
    });
    const agent = new Agent(cfg, { log: silentLogger() });
    await agent.start();
    cleanups.push(() => agent.stop());
    const base = agent.liveFeedUrl!;

    type Points = Record<string, { value: number; ts: number; quality: string }>;
    const all = await waitFor("a value of each point", async () => {
      const points = (await (await fetch(`${base}/points`)).json()) as Points;
      return points["hall/lux"] && points["room-101/co2"] ? points : undefined;
    });
    expect(all["hall/lux"]).toMatchObject({ value: 300, quality: "good" });
    expect(all["room-101/co2"]!.value).toBeGreaterThanOrEqual(400);
    const room = (await (await fetch(`${base}/points?prefix=room-101/`)).json()) as Record<string, unknown>;
    expect(Object.keys(room)).toEqual(["room-101/co2"]);

    // The stream: first the current picture, then each change of the ramp; the constant does not repeat.
    const ac = new AbortController();
    cleanups.push(() => ac.abort());
    const res = await fetch(`${base}/stream`, { signal: ac.signal });
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const reader = res.body!.getReader();
    let text = "";
    const deadline = Date.now() + 5000;
    while ((text.match(/room-101\/co2/g) ?? []).length < 6 && Date.now() < deadline) {
      const { value } = await reader.read();
      text += new TextDecoder().decode(value);
    }
    const events = text.split("\n\n").filter((b) => b.startsWith("event: reading")).map((b) => JSON.parse(b.split("data: ")[1]!) as { point: string; value: number });
    const co2 = events.filter((e) => e.point === "room-101/co2").map((e) => e.value);
    expect(co2.length).toBeGreaterThanOrEqual(6);
    expect(new Set(co2).size).toBe(co2.length); // only changes
    expect(events.filter((e) => e.point === "hall/lux")).toHaveLength(1);
    ac.abort();

    expect((await fetch(`${base}/points`, { method: "POST", body: "{}" })).status).toBe(405);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });
});
