/**
 * Crash safety: the agent runs as a child process on a fast simulated source and is killed with
 * SIGKILL at random moments, again and again. At the end every sequence number it ever stored
 * has reached the broker at least once, and no number was given to two different readings.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Outbox } from "../../src/store/outbox.js";
import { sharedBrokerUrl } from "../helpers/broker.js";
import { agentReady, exited, startCli } from "../helpers/cli.js";
import { Collector } from "../helpers/subscriber.js";
import { tempDir } from "../helpers/tmp.js";
import { waitForOutput } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const KILLS = 24;

describe.each(["json", "compact"] as const)("crash safety, %s payloads", (encoding) => {
  it(`loses nothing stored across ${KILLS} SIGKILLs`, { timeout: 120_000 }, async () => {
    const url = await sharedBrokerUrl(cleanups);
    const dir = tempDir();
    const gateway = `gw-crash-${process.pid}-${Date.now()}`;
    const sub = await Collector.connect(url, `edge/crash-site/${gateway}/#`);
    cleanups.push(() => sub.close());
    // The reference receiver too: `edge-agent tail --verify` reads v1 and v2 alike.
    const tailer = startCli(["tail", "--broker", url, "--site", "crash-site", "--gateway", gateway, "--verify", "--quiet", "--for", "100s"]);
    cleanups.push(async () => {
      tailer.kill("SIGKILL");
      await exited(tailer);
    });
    await waitForOutput(tailer, /tail: listening on/);
    const config = join(dir, "agent.yaml");
    writeFileSync(
      config,
      `site: crash-site
gateway: ${gateway}
uplink:
  url: ${url}
  encoding: ${encoding}
  reconnect: { min: 100ms, max: 300ms }
  batch: { max_readings: 50, linger: 5ms }
store: { path: ./outbox.db, sync: full }
log: { level: info, status_interval: 200ms }
sources:
  - type: simulated
    name: fast
    interval: 5ms
    points: [{ name: a, wave: random-walk }, { name: b, wave: sine }, { name: c, wave: ramp }]
`,
    );

    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < KILLS; i++) {
      const child = startCli(["run", "-c", config]);
      // Kill at a random moment of a running agent: storing, sending, deleting, or in between.
      await waitForOutput(child, /agent running/);
      await sleep(Math.floor(rnd() * 600));
      child.kill("SIGKILL");
      await exited(child);
    }

    // One last run, stopped cleanly once it has drained whatever the killed runs left behind.
    const before = Outbox.inspect(join(dir, "outbox.db"), { quota: 1e9, whenFull: "drop-oldest", maxAge: 1e12, sync: "full" });
    const leftBehind = before.stats().lastSeq;
    before.close();
    const last = startCli(["run", "-c", config]);
    cleanups.push(async () => {
      last.kill("SIGKILL");
      await exited(last);
    });
    await agentReady(last);
    const drained = () => {
      const r = sub.seq.report();
      return r.first === 1 && (r.last ?? 0) >= leftBehind && r.gaps.every(([from]) => from > leftBehind);
    };
    await sub.waitFor(drained, 30_000, `every reading the killed runs stored (#1..#${leftBehind}) at the subscriber`);
    last.kill("SIGTERM");
    expect(await exited(last)).toBe(0);

    const box = Outbox.inspect(join(dir, "outbox.db"), { quota: 1e9, whenFull: "drop-oldest", maxAge: 1e12, sync: "full" });
    const stats = box.stats();
    box.close();
    expect(stats.lastSeq).toBeGreaterThan(KILLS * 20);
    expect(stats.depth).toBe(0);
    await sub.waitFor(() => sub.seq.report().last === stats.lastSeq, 10_000, "the last reading at the subscriber");
    const report = sub.seq.report();
    expect(report.first).toBe(1);
    expect(report.gaps).toEqual([]);
    expect(sub.reused).toBe(0);
    if (encoding === "compact") {
      // Every message was v2, read with the gateway's dictionary, which survived every kill: an id
      // given to another point after a restart would show as a reused number above.
      expect(sub.compact).toBe(sub.messages.length);
      expect(sub.compact).toBeGreaterThan(0);
    } else expect(sub.compact).toBe(0);
    tailer.kill("SIGINT");
    await exited(tailer);
    const verdict = new RegExp(`verify crash-site/${gateway}: seq 1\\.\\.${stats.lastSeq} · \\d+ readings in \\d+ messages · no gaps`);
    expect(tailer.out()).toMatch(verdict);
    expect(tailer.out()).not.toMatch(/malformed/);
    // Killed runs leave their last will: the broker said "offline" for them.
    const statuses = sub.other.filter((m) => m.topic.endsWith("/status")).map((m) => JSON.parse(m.payload).state);
    expect(statuses.filter((s) => s === "offline").length).toBeGreaterThanOrEqual(KILLS / 2);
    expect(statuses[statuses.length - 1]).toBe("offline");
  });
});
