/** SIGHUP: a good config is applied without losing what is buffered; a bad one is refused. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Outbox } from "../../src/store/outbox.js";
import { exited, startCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const config = (points: string[]) => `site: s
gateway: g
uplink: { url: "mqtt://127.0.0.1:1", reconnect: { min: 100ms, max: 200ms } }
store: { path: ./o.db }
sources:
  - { type: simulated, name: m, interval: 50ms, points: [${points.map((p) => `{ name: ${p} }`).join(", ")}] }
`;

describe("config reload on SIGHUP", () => {
  it("applies a valid config, refuses a broken one, and loses nothing buffered", { timeout: 30_000 }, async () => {
    const dir = tempDir();
    const file = join(dir, "a.yaml");
    writeFileSync(file, config(["a"]));
    const agent = startCli(["run", "-c", file]);
    try {
      while (!agent.out().includes("agent running")) await sleep(20);
      await sleep(500);
      writeFileSync(file, config(["a", "b"]));
      agent.kill("SIGHUP");
      while (!agent.out().includes("config reloaded")) await sleep(20);
      await sleep(500);
      writeFileSync(file, `${config(["a", "b"]).replace("store: { path: ./o.db }", "store: { path: ./o.db, quota: lots }")}bogus: 1\n`);
      agent.kill("SIGHUP");
      while (!agent.out().includes("config reload rejected")) await sleep(20);
      await sleep(500);
    } finally {
      agent.kill("SIGTERM");
      expect(await exited(agent)).toBe(0);
    }
    const out = agent.out();
    expect(out).toMatch(/config reload rejected: .*a\.yaml has \d+ errors?; the running config stays/);
    expect(out).toMatch(/bogus: unknown key/);
    expect(out).toMatch(/store\.quota: expected a size like 256MB/);
    const box = Outbox.inspect(join(dir, "o.db"), { quota: 1e9, whenFull: "drop-oldest", maxAge: 1e12, sync: "full" });
    const rows = box.readAfter(0, 1_000_000);
    box.close();
    // Every number from 1 to the last is there: nothing buffered was lost across the reloads.
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: rows.length }, (_, i) => i + 1));
    const b = rows.filter((r) => r.point === "m/b");
    expect(b.length).toBeGreaterThan(5); // the new point came with the reload…
    const lastA = Math.max(...rows.filter((r) => r.point === "m/a").map((r) => r.ts));
    expect(Math.max(...b.map((r) => r.ts))).toBeGreaterThan(lastA - 200); // …and kept coming after the refused one
  });
});
