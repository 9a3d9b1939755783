/**
 * Upgrades keep the backlog: a gateway updated while it holds unsent readings, events and command
 * results (an outbox file written by release 0.1.0, test/fixtures/outbox-0.1.0.db, and one of
 * format 3, written by the code before format 4, with a dead letter too) starts the new release,
 * which migrates the file and delivers every pending item with its original sequence number and
 * name; a command id the old release answered is answered the same, not executed.
 */
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import mqtt from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import type { StoredReading } from "../../src/model/reading.js";
import { FORMAT, Outbox } from "../../src/store/outbox.js";
import { sharedBrokerUrl } from "../helpers/broker.js";
import { exited, startCli } from "../helpers/cli.js";
import { Collector } from "../helpers/subscriber.js";
import { tempDir } from "../helpers/tmp.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Fixture {
  version: string;
  format?: number;
  telemetry: StoredReading[];
  events: StoredReading[];
  results: StoredReading[];
  commands: Record<string, string>;
  deadLetters?: StoredReading[];
}

describe.each([
  { file: "outbox-0.1.0", format: 1 },
  { file: "outbox-format3", format: 3 },
])("upgrade from an outbox of format $format ($file)", ({ file, format }) => {
  it("delivers every pending reading, event and result with its original number and name", { timeout: 60_000 }, async () => {
    const fixture = JSON.parse(readFileSync(`test/fixtures/${file}.json`, "utf8")) as Fixture;
    expect(fixture.format ?? 1).toBe(format);
    const url = await sharedBrokerUrl(cleanups);
    const dir = tempDir();
    copyFileSync(`test/fixtures/${file}.db`, join(dir, "outbox.db"));
    const gateway = `gw-upgrade-${process.pid}-${Date.now()}`;
    const base = `edge/upgrade-site/${gateway}`;
    const sub = await Collector.connect(url, `${base}/#`);
    cleanups.push(() => sub.close());
    const config = join(dir, "agent.yaml");
    // The fixture's readings are from 2025: a max_age that keeps them.
    writeFileSync(config, `site: upgrade-site\ngateway: ${gateway}\nuplink: { url: ${url}, reconnect: { min: 100ms, max: 300ms } }\nstore: { path: ./outbox.db, max_age: 3650d }\nlog: { level: info }\n`);
    const agent = startCli(["run", "-c", config]);
    cleanups.push(async () => {
      if (agent.exitCode === null) agent.kill("SIGKILL");
      await exited(agent);
    });

    const events: Array<[number, unknown[]]> = [];
    const results: Array<Record<string, unknown>> = [];
    const collect = () => {
      events.length = 0;
      results.length = 0;
      for (const m of sub.other) {
        if (m.topic === `${base}/events`) {
          const msg = JSON.parse(m.payload) as { seq: [number, number]; r: unknown[][] };
          msg.r.forEach((r, i) => events.push([msg.seq[0] + i, r]));
        } else if (m.topic === `${base}/result`) results.push(JSON.parse(m.payload) as Record<string, unknown>);
      }
    };
    await sub.waitFor(
      () => {
        collect();
        return sub.readings >= fixture.telemetry.length && events.length >= fixture.events.length && results.length >= fixture.results.length;
      },
      30_000,
      "the old backlog at the subscriber",
    );
    expect(agent.out()).toContain(`outbox upgraded from format ${format} to ${FORMAT}`);

    // Telemetry: each number with the same point, time, value and quality as the old file held.
    const got = new Map<number, unknown[]>();
    for (const m of sub.messages) m.r.forEach((r, i) => got.set(m.seq[0] + i, r));
    for (const r of fixture.telemetry) {
      expect(got.get(r.seq), `telemetry seq ${r.seq}`).toEqual(r.quality === "good" ? [r.point, r.ts, r.value] : [r.point, r.ts, r.value, r.quality]);
    }
    expect(got.size).toBe(fixture.telemetry.length);
    expect(events).toEqual(fixture.events.map((e) => [e.seq, [e.point, e.ts, e.value]]));
    expect(results.map((r) => r.seq)).toEqual(fixture.results.map((r) => r.seq));
    for (const [i, r] of results.entries()) expect(r).toMatchObject(JSON.parse(String(fixture.results[i]!.value)) as Record<string, unknown>);

    // An id the old release answered is answered the same, and not executed.
    const client = await mqtt.connectAsync(url);
    cleanups.push(() => client.endAsync());
    await client.publishAsync(`${base}/cmd/street-3`, JSON.stringify({ id: "cmd-1", action: "set", args: { on: false } }), { qos: 1 });
    await sub.waitFor(
      () => {
        collect();
        return results.length > fixture.results.length;
      },
      10_000,
      "the answer to cmd-1",
    );
    expect(results.at(-1)).toMatchObject({ id: "cmd-1", status: "ok", target: "street-3", state: { mode: "override", on: true } });

    agent.kill("SIGTERM");
    expect(await exited(agent)).toBe(0);
    const box = Outbox.inspect(join(dir, "outbox.db"), { quota: 1e9, whenFull: "drop-oldest", maxAge: 1e12, sync: "full" });
    const stats = box.stats();
    box.close();
    expect(stats).toMatchObject({ format: FORMAT, depth: 0, streams: { events: { depth: 0 } } });
    // A dead letter stays one (an operator resends or purges it), with its number.
    expect(stats.deadLetters.count).toBe(fixture.deadLetters?.length ?? 0);
    // New numbers continue above the old ones: the answer to cmd-1 took the next result number.
    expect(stats.streams.results.lastSeq).toBe(fixture.results.at(-1)!.seq + 1);
  });
});
