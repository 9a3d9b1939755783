/**
 * `edge-agent run` owns SIGTERM from its first moment: a stop asked for while the agent is still
 * starting (a slow start, a gateway still booting) waits for the start and stops cleanly — exit
 * 0, outbox closed — instead of the process dying mid-start.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { sharedBrokerUrl } from "../helpers/broker.js";
import { exited, startCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("edge-agent run and signals", () => {
  it("a SIGTERM during the start stops cleanly once started", { timeout: 60_000 }, async () => {
    const url = await sharedBrokerUrl(cleanups);
    const dir = tempDir();
    const file = join(dir, "a.yaml");
    // The OPC UA server takes a second or more to start: time enough to be stopped in between.
    writeFileSync(
      file,
      `site: s\ngateway: g-${process.pid}\nuplink: { url: ${url} }\nstore: { path: ./o.db }\nopcua: { server: { port: 0, allow_anonymous: true, security: [None] } }\nsources:\n  - { type: simulated, name: m, interval: 100ms, points: [{ name: p }] }\n`,
    );
    const child = startCli(["run", "-c", file]);
    cleanups.push(async () => {
      if (child.exitCode === null) child.kill("SIGKILL");
      await exited(child);
    });
    const deadline = Date.now() + 30_000;
    while (!child.out().includes("outbox open") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(child.out()).not.toMatch(/agent running/);
    child.kill("SIGTERM");
    expect(await exited(child)).toBe(0);
    expect(child.out()).toMatch(/SIGTERM: stopping/);
    expect(child.out()).toMatch(/agent stopped/);
  });
});
