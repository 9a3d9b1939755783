/**
 * `edge-agent buffer dead-letters`: what the broker refused, listed with the reason (reading the
 * file only), given back to be sent again — through the running agent, which sends them at once
 * with their own sequence numbers, or in the file when no agent runs — and purged only on purpose.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Reading } from "../../src/model/reading.js";
import { Outbox } from "../../src/store/outbox.js";
import { sharedBrokerUrl } from "../helpers/broker.js";
import { exited, runCli, startCli } from "../helpers/cli.js";
import { Collector } from "../helpers/subscriber.js";
import { tempDir } from "../helpers/tmp.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const DAY = 86_400_000;

function readings(n: number, point: string): Reading[] {
  const ts = Date.now();
  return Array.from({ length: n }, (_, i) => ({ point, ts: ts + i, value: i, quality: "good" as const }));
}

/** A config and an outbox holding 10 readings of which 3..5 and 9 were refused. */
function prepare(dir: string, uplinkUrl: string, gateway = "gw-dl"): string {
  const config = join(dir, "agent.yaml");
  writeFileSync(config, `site: dl-site\ngateway: ${gateway}\nuplink: { url: ${uplinkUrl}, reconnect: { min: 100ms, max: 300ms } }\nstore: { path: ./outbox.db }\nlog: { level: info }\n`);
  const box = Outbox.open({ path: join(dir, "outbox.db"), quota: 64 * 1024 * 1024, whenFull: "drop-oldest", maxAge: 30 * DAY, sync: "full" });
  box.append(readings(10, "meter-1/power"));
  box.deadLetter("telemetry", 3, 5, "refused by the broker: payload format invalid (0x99)");
  box.deadLetter("telemetry", 9, 9, "larger than the broker's maximum packet size (2000 bytes of payload, at most 900)");
  box.ack([
    [1, 2],
    [6, 8],
    [10, 10],
  ]);
  box.close();
  return config;
}

describe("edge-agent buffer dead-letters", () => {
  it("lists, gives back and purges them in the file when no agent runs; asks before purging", () => {
    const dir = tempDir();
    const config = prepare(dir, "mqtt://127.0.0.1:1");

    const list = runCli(["buffer", "dead-letters", "-c", config]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/telemetry\s+3 .* meter-1\/power = 2\n\s+refused by the broker: payload format invalid \(0x99\)/);
    expect(list.stdout).toMatch(/telemetry\s+9 .*\n\s+larger than the broker's maximum packet size/);
    const json = JSON.parse(runCli(["buffer", "dead-letters", "-c", config, "--json", "--seq", "4-9"]).stdout) as { total: number; items: Array<{ seq: number }> };
    expect(json.total).toBe(4);
    expect(json.items.map((i) => i.seq)).toEqual([4, 5, 9]);
    const stats = runCli(["buffer", "stats", "-c", config]);
    expect(stats.stdout).toMatch(/dead letters\s+4 refused by the broker \(3 refused by the broker: payload format invalid \(0x99\); 1 larger than/);

    // Bad flags: one line, exit 2, nothing changed.
    for (const [flag, value, msg] of [
      ["--stream", "__proto__", /--stream: expected one of telemetry, events, results/],
      ["--seq", "9-3", /--seq: expected a sequence number or a range/],
      ["--seq", "-1", /--seq: expected a sequence number or a range/],
      ["--seq", "99999999999999999999", /--seq: expected a sequence number or a range/],
    ] as const) {
      const r = runCli(["buffer", "dead-letters", "resend", "-c", config, flag, value]);
      expect(r.code, `${flag} ${value}`).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
    const r = runCli(["buffer", "dead-letters", "resend", "-c", config, "--seq", "3-5"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/gave back 3 telemetry: sent when the agent next connects/);
    let box = Outbox.inspect(join(dir, "outbox.db"), { quota: 1e9, whenFull: "drop-oldest", maxAge: DAY, sync: "full" });
    expect(box.readAfter(0, 100).map((x) => x.seq)).toEqual([3, 4, 5]);
    expect(box.stats().deadLetters.count).toBe(1);
    box.close();

    // Purging deletes readings for good: without a terminal it needs --yes.
    const noYes = runCli(["buffer", "dead-letters", "purge", "-c", config]);
    expect(noYes.code).toBe(2);
    expect(noYes.stderr).toMatch(/confirm with --yes/);
    const purge = runCli(["buffer", "dead-letters", "purge", "-c", config, "--yes"]);
    expect(purge.stdout).toMatch(/purged 1 telemetry/);
    box = Outbox.inspect(join(dir, "outbox.db"), { quota: 1e9, whenFull: "drop-oldest", maxAge: DAY, sync: "full" });
    expect(box.stats()).toMatchObject({ deadLetters: { count: 0 }, dropped: { purged: 1 } });
    box.close();
  });

  it("through a running agent: given-back rows are sent at once, with their own numbers", { timeout: 60_000 }, async () => {
    const url = await sharedBrokerUrl(cleanups);
    const dir = tempDir();
    const gateway = `gw-dl-${process.pid}-${Date.now()}`;
    const config = prepare(dir, url, gateway);
    const sub = await Collector.connect(url, `edge/dl-site/${gateway}/telemetry`);
    cleanups.push(() => sub.close());
    const agent = startCli(["run", "-c", config]);
    cleanups.push(async () => {
      if (agent.exitCode === null) agent.kill("SIGKILL");
      await exited(agent);
    });
    await sub.waitFor(() => agent.out().includes("agent running"), 20_000, "the agent to run");
    const r = runCli(["buffer", "dead-letters", "resend", "-c", config, "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ via: "agent", changed: [{ stream: "telemetry", count: 4 }] });
    await sub.waitFor(() => sub.seq.report().received >= 4, 15_000, "the given-back readings");
    expect([...sub.bySeq.keys()].sort((a, b) => a - b)).toEqual([3, 4, 5, 9]);
    agent.kill("SIGTERM");
    expect(await exited(agent)).toBe(0);
    const box = Outbox.inspect(join(dir, "outbox.db"), { quota: 1e9, whenFull: "drop-oldest", maxAge: DAY, sync: "full" });
    expect(box.stats()).toMatchObject({ depth: 0, deadLetters: { count: 0 } });
    box.close();
  });
});
