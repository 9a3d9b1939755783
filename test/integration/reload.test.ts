/** SIGHUP: a good config is applied without losing what is buffered; a bad one is refused. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Outbox } from "../../src/store/outbox.js";
import { startBroker } from "../helpers/broker.js";
import { agentReady, exited, startCli, statusLines } from "../helpers/cli.js";
import { Collector } from "../helpers/subscriber.js";
import { tempDir } from "../helpers/tmp.js";
import { aliasBomb } from "../helpers/hostile-yaml.js";
import { untilThat as until, waitForOutput } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});


const config = (points: string[]) => `site: s
gateway: g
uplink: { url: "mqtt://127.0.0.1:1", reconnect: { min: 100ms, max: 200ms } }
store: { path: ./o.db }
log: { status_interval: 200ms }
sources:
  - { type: simulated, name: m, interval: 50ms, points: [${points.map((p) => `{ name: ${p} }`).join(", ")}] }
`;

/** Waits until the agent has printed two status lines after `marker`: it ran on for a while. */
function ranOnAfter(agent: ReturnType<typeof startCli>, marker: string): Promise<unknown> {
  return waitForOutput(agent, (out) => out.includes(marker) && statusLines(out.slice(out.lastIndexOf(marker))).length >= 2, `two status lines after '${marker}'`);
}

describe("config reload on SIGHUP", () => {
  it("applies a valid config, refuses a broken one, and loses nothing buffered", { timeout: 30_000 }, async () => {
    const dir = tempDir();
    const file = join(dir, "a.yaml");
    writeFileSync(file, config(["a"]));
    const agent = startCli(["run", "-c", file]);
    try {
      await agentReady(agent); // its SIGHUP handler in place
      await ranOnAfter(agent, "agent running");
      writeFileSync(file, config(["a", "b"]));
      agent.kill("SIGHUP");
      await ranOnAfter(agent, "config reloaded");
      writeFileSync(file, `${config(["a", "b"]).replace("store: { path: ./o.db }", "store: { path: ./o.db, quota: lots }")}bogus: 1\n`);
      agent.kill("SIGHUP");
      await ranOnAfter(agent, "config reload rejected");
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

  it("refuses a file that used to crash the loader (alias bomb, undefined alias, not UTF-8, a timer overflow) and keeps delivering", { timeout: 60_000 }, async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.close());
    const sub = await Collector.connect(broker.url, "edge/s/g/telemetry");
    cleanups.push(() => sub.close());
    const dir = tempDir();
    const file = join(dir, "a.yaml");
    const good = `site: s\ngateway: g\nuplink: { url: "${broker.url}", batch: { linger: 50ms } }\nstore: { path: ./o.db }\nsources:\n  - { type: simulated, name: m, interval: 50ms, points: [{ name: p }] }\n`;
    writeFileSync(file, good);
    const agent = startCli(["run", "-c", file]);
    cleanups.push(async () => {
      if (agent.exitCode === null && agent.signalCode === null) agent.kill("SIGKILL");
      await exited(agent);
    });
    await until("the first readings", () => sub.readings > 0);
    const hostile: Array<[string, string | Buffer, RegExp]> = [
      ["alias bomb", aliasBomb(), /line 9, column \d+: \*a\d expands the aliases of this file past 100000 values/],
      ["undefined alias", `${good}log: *nope\n`, /line 7, column 6: alias \*nope has no anchor &nope before it/],
      ["not UTF-8", Buffer.concat([Buffer.from(`${good}# caf`), Buffer.from([0xe9]), Buffer.from("\n")]), /line 7, column 6: not UTF-8 \(byte 0xe9\)/],
      ["timer overflow", good.replace("batch:", "connect_timeout: 25d, batch:"), /uplink\.connect_timeout: must be at most 5m/],
    ];
    for (const [what, content, place] of hostile) {
      writeFileSync(file, content);
      const from = agent.out().length;
      agent.kill("SIGHUP");
      await until(`the refusal of the ${what}`, () => agent.out().slice(from).includes("config reload rejected"));
      await until(`the place of the ${what}`, () => place.test(agent.out().slice(from)));
      const refusal = agent.out().slice(from);
      expect(refusal, what).toMatch(/config reload rejected: .*a\.yaml has 1 error; the running config stays/);
      expect(refusal, what).not.toMatch(/\n\s+at .*:\d+:\d+/);
      // Still running on the previous config, and still delivering.
      const before = sub.readings;
      await until(`readings after the ${what}`, () => sub.readings >= before + 10);
      expect(agent.exitCode, what).toBeNull();
    }
    expect(agent.out()).not.toMatch(/SIGHUP: reloading/);
    agent.kill("SIGTERM");
    expect(await exited(agent)).toBe(0);
  });
});
