/**
 * `edge-agent tail` as the receiver of compact (v2) payloads, with the dictionary arriving after
 * the messages that need it (possible across topics), a corrupted message, and a message whose
 * dictionary never comes: the late ones are read once it arrives, the others are reported —
 * named, counted as malformed — and nothing is misread or stops the tail.
 */
import mqtt from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import type { StoredReading } from "../../src/model/reading.js";
import { encodeCompact } from "../../src/uplink/compact.js";
import { PointDictionary } from "../../src/uplink/dictionary.js";
import { sharedBrokerUrl } from "../helpers/broker.js";
import { exited, startCli } from "../helpers/cli.js";
import { waitForOutput } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("edge-agent tail on compact payloads", () => {
  it("reads messages whose dictionary comes later, reports a corrupted one and one whose dictionary never comes", { timeout: 60_000 }, async () => {
    const url = await sharedBrokerUrl(cleanups);
    const site = `tail-site-${process.pid}-${Date.now()}`;
    const tail = startCli(["tail", "--broker", url, "--site", site, "--verify", "--for", "20s"]);
    cleanups.push(async () => {
      tail.kill("SIGKILL");
      await exited(tail);
    });
    await waitForOutput(tail, /tail: listening on/);
    const pub = await mqtt.connectAsync(url);
    cleanups.push(() => pub.endAsync());
    const dict = new PointDictionary(null);
    const rows = (first: number, n: number): StoredReading[] => Array.from({ length: n }, (_, i) => ({ seq: first + i, point: `m/p${i % 3}`, ts: 1_764_547_200_000 + i * 1000, value: i * 1.5, quality: "good" }));
    const gw = "gw-late";
    const base = `edge/${site}/${gw}`;
    const m1 = encodeCompact(gw, rows(1, 30), dict, { maxBytes: 1 << 20 })!.payload;
    const m2 = encodeCompact(gw, rows(31, 30), dict, { maxBytes: 1 << 20 })!.payload;
    const corrupt = Buffer.from(m2);
    corrupt[corrupt.length - 3]! ^= 0xff;
    // Telemetry first, the dictionary after it.
    await pub.publishAsync(`${base}/telemetry`, m1, { qos: 1 });
    await pub.publishAsync(`${base}/telemetry`, corrupt, { qos: 1 });
    await new Promise((r) => setTimeout(r, 500));
    expect(tail.out()).not.toMatch(/ #1 /);
    await pub.publishAsync(`${base}/dict`, dict.payload(gw), { qos: 1, retain: true });
    await pub.publishAsync(`${base}/telemetry`, m2, { qos: 1 });
    // Another gateway whose dictionary never comes.
    const other = encodeCompact("gw-orphan", rows(1, 5), new PointDictionary(null), { maxBytes: 1 << 20 })!.payload;
    await pub.publishAsync(`edge/${site}/gw-orphan/telemetry`, other, { qos: 1 });
    await waitForOutput(tail, / #60 /);
    await pub.publishAsync(`${base}/dict`, "", { qos: 1, retain: true }); // clear the retained dictionary
    tail.kill("SIGINT");
    await exited(tail);
    const out = tail.out();
    // "HH:MM:SS.mmm <site>/<gw> #<seq> <point> = <value>"
    const readings = [...out.matchAll(/ #(\d+) (\S+) = (\S+)\n/g)].map((m) => ({ seq: Number(m[1]), point: m[2], value: JSON.parse(m[3]!) as number }));
    expect(readings.map((r) => r.seq)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    expect(readings[4]).toMatchObject({ point: "m/p1", value: 6 });
    expect(out).toMatch(/malformed message \(corrupt body|malformed message \(body/);
    expect(out).toMatch(/gw-orphan\/telemetry: malformed message \(its dictionary version 3 never arrived\)/);
    expect(out).toMatch(new RegExp(`verify ${site}/${gw}: seq 1\\.\\.60 · 60 readings in 2 messages · no gaps · 0 duplicates · 1 malformed messages`));
  });
});
