/**
 * The daemon's last line of defence: a rejection nobody handled is logged with its part and the
 * gateway keeps delivering; an uncaught exception is logged and ends the process with 1, so that
 * systemd restarts it from a clean state.
 */
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { startBroker } from "../helpers/broker.js";
import { exited, startCli } from "../helpers/cli.js";
import { Collector } from "../helpers/subscriber.js";
import { tempDir } from "../helpers/tmp.js";
import { untilThat as until } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const FAULT = pathToFileURL(resolve("test/fixtures/fault-on-signal.mjs")).href;


async function agentWithFault(fault: "reject" | "throw") {
  const broker = await startBroker();
  cleanups.push(() => broker.close());
  const sub = await Collector.connect(broker.url, "edge/s/g/telemetry");
  cleanups.push(() => sub.close());
  const dir = tempDir();
  const file = join(dir, "a.yaml");
  writeFileSync(
    file,
    `site: s\ngateway: g\nuplink: { url: "${broker.url}", batch: { linger: 50ms } }\nstore: { path: ./o.db }\nsources:\n  - { type: simulated, name: m, interval: 50ms, points: [{ name: p }] }\n`,
  );
  const agent = startCli(["run", "-c", file], { NODE_OPTIONS: `--import=${FAULT}`, EDGE_TEST_FAULT: fault });
  cleanups.push(async () => {
    if (agent.exitCode === null && agent.signalCode === null) agent.kill("SIGKILL");
    await exited(agent);
  });
  await until("the first readings", () => sub.readings > 0);
  return { agent, sub };
}

describe("process guard of edge-agent run", () => {
  it("logs an unhandled rejection with its part in one line, and keeps delivering", async () => {
    const { agent, sub } = await agentWithFault("reject");
    agent.kill("SIGUSR2");
    await until("the rejection logged", () => agent.out().includes("unhandled rejection"));
    const line = agent.out().split("\n").find((l) => l.includes("unhandled rejection"))!;
    const entry = JSON.parse(line) as Record<string, unknown>;
    expect(entry).toMatchObject({ level: 50, part: "model", at: expect.stringMatching(/^src\/model\/path\.js:\d+$/), unhandled_total: 1 });
    expect(entry.msg).toMatch(/^unhandled rejection in model: .*not iterable.*; the gateway goes on$/);
    // Still polling, storing and delivering after it.
    const before = sub.readings;
    await until("readings after the rejection", () => sub.readings >= before + 10);
    expect(agent.exitCode).toBeNull();
    // The same again within a minute is counted, not logged again.
    agent.kill("SIGUSR2");
    const after = sub.readings;
    await until("more readings", () => sub.readings >= after + 10);
    expect(agent.out().match(/unhandled rejection/g)).toHaveLength(1);
    agent.kill("SIGTERM");
    expect(await exited(agent)).toBe(0);
    expect(agent.out()).not.toMatch(/\n\s+at .*:\d+:\d+/);
  });

  it("ends the process with 1 after logging an uncaught exception, for systemd to restart it", async () => {
    const { agent } = await agentWithFault("throw");
    agent.kill("SIGUSR2");
    expect(await exited(agent)).toBe(1);
    const fatal = agent
      .out()
      .split("\n")
      .filter((l) => l.includes("uncaught exception"));
    expect(fatal).toHaveLength(1);
    expect(JSON.parse(fatal[0]!)).toMatchObject({ level: 60, part: "model", msg: expect.stringMatching(/^uncaught exception in model: .*not iterable.*; exiting so that systemd restarts the agent/) });
    expect(agent.out()).not.toMatch(/\n\s+at .*:\d+:\d+/);
  });
});
