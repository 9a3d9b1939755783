/**
 * A message the broker will not take must never block the uplink, nor vanish: it is split and
 * retried, what the broker still refuses reading by reading becomes a dead letter (kept, counted),
 * and everything behind it keeps flowing. Against a scripted MQTT 5 peer for the refusals real
 * brokers cannot be made to give on demand, and against Mosquitto's own size limits.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Reading } from "../../src/model/reading.js";
import { silentLogger } from "../../src/ops/logger.js";
import { Outbox } from "../../src/store/outbox.js";
import { Uplink } from "../../src/uplink/uplink.js";
import { mosquittoBin, startBroker } from "../helpers/broker.js";
import { testConfig } from "../helpers/config.js";
import { Mqtt5Peer, type PeerRules } from "../helpers/mqtt5-peer.js";
import { Collector } from "../helpers/subscriber.js";
import { tempDir } from "../helpers/tmp.js";
import { until } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function readings(n: number, point = "meter-1/power_total"): Reading[] {
  const ts = Date.now();
  return Array.from({ length: n }, (_, i) => ({ point, ts: ts + i, value: i, quality: "good" as const }));
}

function setup(url: string, uplink: Record<string, unknown> = {}) {
  const dir = tempDir();
  const cfg = testConfig({ uplink: { url, reconnect: { min: "100ms", max: "400ms" }, publish_timeout: "2s", ...uplink }, store: { path: join(dir, "o.db"), sync: "normal" } });
  const outbox = Outbox.open({ path: cfg.store.path, quota: cfg.store.quota, whenFull: "drop-oldest", maxAge: cfg.store.max_age, sync: "normal" });
  const up = new Uplink({ config: cfg.uplink, site: cfg.site, gateway: cfg.gateway, version: "test", outbox, log: silentLogger() });
  cleanups.push(async () => {
    await up.stop(500);
    outbox.close();
  });
  return { outbox, up };
}


const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

async function peer(rules: PeerRules) {
  const p = await Mqtt5Peer.start(rules);
  cleanups.push(() => p.close());
  return p;
}

describe("uplink: refused messages", () => {
  it("splits a refused batch, sets the one reading the broker refuses aside, and delivers everything behind it", async () => {
    const p = await peer({ puback: (pkt) => (pkt.payload.toString().includes("poison") ? 0x99 : 0) });
    const { outbox, up } = setup(p.url, { batch: { max_readings: 50, linger: "5ms" } });
    const rows = readings(300);
    rows[56] = { ...rows[56]!, point: "meter-1/poison" };
    outbox.append(rows);
    outbox.stream("results").append([{ point: "street-3", ts: Date.now(), value: JSON.stringify({ id: "c1", status: "ok", note: "poison" }), quality: "good" }]);
    outbox.stream("results").append([{ point: "street-3", ts: Date.now(), value: JSON.stringify({ id: "c2", status: "ok" }), quality: "good" }]);
    up.start();
    up.notify();
    await until(() => outbox.depth === 0 && outbox.stream("results").depth === 0, "the outbox to empty");
    await until(() => p.acceptedSeqs().length >= 299, "299 readings at the broker");
    expect(new Set(p.acceptedSeqs())).toEqual(new Set(range(1, 300).filter((s) => s !== 57)));
    expect(p.acceptedSeqs("/result")).toEqual([2]);
    const dead = outbox.deadLetters({ stream: "telemetry" });
    expect(dead.map((d) => [d.stream, d.seq, d.point])).toEqual([["telemetry", 57, "meter-1/poison"]]);
    expect(dead[0]!.reason).toMatch(/refused by the broker: payload format invalid \(0x99\)/);
    expect(outbox.deadLetters({ stream: "results" }).map((d) => d.seq)).toEqual([1]);
    expect(up.stats()).toMatchObject({ state: "online", deadLettered: 2 });
    // Split in halves, not one reading at a time: a handful of refusals, not hundreds.
    expect(up.stats().refused).toBeLessThan(15);
    expect(p.connects).toBe(1);
  });

  it("keeps rows refused for a reason that is not theirs (not authorized), and delivers them once the broker takes them", async () => {
    const p = await peer({ puback: (pkt, n) => (pkt.topic.endsWith("/telemetry") && n < 4 ? 0x87 : 0) });
    const { outbox, up } = setup(p.url, { batch: { max_readings: 40, linger: "5ms" } });
    outbox.append(readings(100));
    up.start();
    up.notify();
    await until(() => up.stats().lastError?.includes("not authorized") === true, "the refusal in lastError");
    await until(() => outbox.depth === 0, "the outbox to empty");
    expect(new Set(p.acceptedSeqs())).toEqual(new Set(range(1, 100)));
    expect(outbox.stats().deadLetters.count).toBe(0);
    expect(up.stats().refused).toBeGreaterThanOrEqual(1);
  });

  it("honours the broker's Maximum Packet Size: no message above it, and a reading that alone is larger goes to the dead letters", async () => {
    const p = await peer({ connack: { maximumPacketSize: 700 } });
    const { outbox, up } = setup(p.url, { batch: { max_readings: 1000, linger: "5ms" } });
    const rows = readings(400);
    rows[199] = { ...rows[199]!, point: "display-1/text", value: "x".repeat(2000) };
    outbox.append(rows);
    up.start();
    up.notify();
    await until(() => outbox.depth === 0, "the outbox to empty");
    await until(() => p.acceptedSeqs().length >= 399, "399 readings");
    expect(new Set(p.acceptedSeqs())).toEqual(new Set(range(1, 400).filter((s) => s !== 200)));
    for (const pkt of p.accepted) expect(pkt.length).toBeLessThanOrEqual(700);
    expect(up.stats()).toMatchObject({ maxPacketSize: 700, deadLettered: 1 });
    expect(outbox.deadLetters()[0]!.reason).toMatch(/larger than the broker's maximum packet size/);
  });

  it("after a DISCONNECT 'packet too large' sends the message again in smaller parts, and loses nothing", async () => {
    const p = await peer({ disconnect: (pkt) => (pkt.payload.length > 900 ? 0x95 : null) });
    const { outbox, up } = setup(p.url, { batch: { max_readings: 200, linger: "5ms" } });
    outbox.append(readings(600));
    up.start();
    up.notify();
    await until(() => outbox.depth === 0, "the outbox to empty");
    expect(new Set(p.acceptedSeqs())).toEqual(new Set(range(1, 600)));
    expect(outbox.stats().deadLetters.count).toBe(0);
    // Each strike halves the suspect message: a few reconnects, not one per reading.
    expect(p.connects).toBeLessThan(40);
  });

  it("speaks MQTT 3.1.1 to a broker that refuses MQTT 5 (protocol: auto), at once", async () => {
    const p = await peer({ only311: true });
    const { outbox, up } = setup(p.url);
    outbox.append(readings(20));
    up.start();
    up.notify();
    await until(() => outbox.depth === 0, "delivery over 3.1.1");
    expect(p.protocols.slice(0, 2)).toEqual([5, 4]);
    expect(up.stats().protocol).toBe("3.1.1");
  });

  it("stops within its flush time when the broker never acknowledges", async () => {
    // A broker that answers CONNECT (MQTT 5 CONNACK) and then swallows everything.
    const { createServer } = await import("node:net");
    const sockets = new Set<import("node:net").Socket>();
    const silent = createServer((sock) => {
      sockets.add(sock);
      sock.once("data", () => sock.write(Buffer.from([0x20, 0x03, 0x00, 0x00, 0x00])));
      sock.on("data", () => {});
      sock.on("error", () => {});
    });
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          silent.close(() => r());
        }),
    );
    const addr = silent.address();
    const { outbox, up } = setup(`mqtt://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`, { protocol: "5", publish_timeout: "30s" });
    outbox.append(readings(50));
    up.start();
    up.notify();
    await until(() => up.stats().state === "online" && up.stats().inflight > 0, "a message in flight");
    const t0 = Date.now();
    await up.stop(1000);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(outbox.depth).toBe(50);
  });
});

describe("uplink: a connection given up after a PUBACK timeout", () => {
  it("sends nothing more on it: the backlog is not run through while the connection ends", async () => {
    // A broker that takes every message and never acknowledges one.
    const { createServer } = await import("node:net");
    const sockets = new Set<import("node:net").Socket>();
    const silent = createServer((sock) => {
      sockets.add(sock);
      sock.once("data", () => sock.write(Buffer.from([0x20, 0x02, 0x00, 0x00])));
      sock.on("data", () => {});
      sock.on("error", () => {});
    });
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          silent.close(() => r());
        }),
    );
    const addr = silent.address();
    const { outbox, up } = setup(`mqtt://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`, {
      protocol: "3.1.1",
      publish_timeout: "300ms",
      reconnect: { min: "10s", max: "10s" },
    });
    for (let b = 0; b < 100; b++) outbox.append(readings(1000, `m/p${b % 7}`));
    const tel = outbox.stream("telemetry");
    let reads = 0;
    const read = tel.readAfter.bind(tel);
    (tel as unknown as { readAfter: typeof read }).readAfter = (a, l, u) => {
      reads++;
      return read(a, l, u);
    };
    up.start();
    await until(() => up.stats().publishFailures > 0, "the PUBACK timeout");
    await until(() => up.stats().state === "offline", "the connection to end");
    // Only what was in flight was read: the rest waits for the next connection.
    expect(reads).toBeLessThan(40);
    expect(up.stats().backlogRemaining).toBeGreaterThan(50_000);
    expect(outbox.depth).toBe(100_000);
  });
});

describe.skipIf(!mosquittoBin)("uplink: Mosquitto's size limits (MQTT 5)", () => {
  it("message_size_limit (not announced): oversized batches are split, a reading that alone is too large is set aside, the rest flows", { timeout: 90_000 }, async () => {
    const broker = await startBroker({ extra: ["message_size_limit 1000"] });
    cleanups.push(() => broker.close());
    const sub = await Collector.connect(broker.url, "edge/test-site/gw-test/telemetry");
    cleanups.push(() => sub.close());
    const { outbox, up } = setup(broker.url, { batch: { max_readings: 500, linger: "5ms" } });
    const rows = readings(1500);
    rows[700] = { ...rows[700]!, point: "display-1/text", value: "x".repeat(1500) };
    outbox.append(rows);
    up.start();
    up.notify();
    await until(() => outbox.depth === 0, "the outbox to empty", 60_000);
    await sub.waitFor(() => sub.seq.report().received >= 1499, 15_000, "1499 readings at the subscriber");
    expect(sub.seq.report()).toMatchObject({ first: 1, last: 1500, gaps: [[701, 701]] });
    expect(outbox.deadLetters().map((d) => d.seq)).toEqual([701]);
    // Readings stored after the refusals flow as usual.
    outbox.append(readings(30, "meter-2/power"));
    up.notify();
    await sub.waitFor(() => sub.seq.report().last === 1530, 15_000, "the readings stored afterwards");
  });

  it("max_packet_size (announced in CONNACK): no message is ever refused", async () => {
    const broker = await startBroker({ extra: ["max_packet_size 1000"] });
    cleanups.push(() => broker.close());
    const sub = await Collector.connect(broker.url, "edge/test-site/gw-test/telemetry");
    cleanups.push(() => sub.close());
    const { outbox, up } = setup(broker.url, { batch: { max_readings: 500, linger: "5ms" } });
    outbox.append(readings(1500));
    up.start();
    up.notify();
    await until(() => outbox.depth === 0, "the outbox to empty");
    await sub.waitFor(() => sub.seq.report().received >= 1500, 15_000, "1500 readings");
    expect(sub.seq.report()).toMatchObject({ first: 1, last: 1500, gaps: [] });
    expect(up.stats()).toMatchObject({ maxPacketSize: 1000, refused: 0, deadLettered: 0, connects: 1 });
  });
});
