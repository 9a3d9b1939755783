import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Reading } from "../../src/model/reading.js";
import { silentLogger } from "../../src/ops/logger.js";
import { Outbox } from "../../src/store/outbox.js";
import { Uplink } from "../../src/uplink/uplink.js";
import { type TestBroker, freePort, startBroker } from "../helpers/broker.js";
import { testConfig } from "../helpers/config.js";
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

async function setup(uplink: Record<string, unknown>, broker?: TestBroker) {
  const b = broker ?? (await startBroker());
  if (!broker) cleanups.push(() => b.close());
  const dir = tempDir();
  const cfg = testConfig({ uplink: { url: b.url, reconnect: { min: "100ms", max: "500ms" }, ...uplink }, store: { path: join(dir, "o.db"), sync: "normal" } });
  const outbox = Outbox.open({ path: cfg.store.path, quota: cfg.store.quota, whenFull: "drop-oldest", maxAge: cfg.store.max_age, sync: "normal" });
  const up = new Uplink({ config: cfg.uplink, site: cfg.site, gateway: cfg.gateway, version: "test", outbox, log: silentLogger() });
  cleanups.push(async () => {
    await up.stop(500);
    outbox.close();
  });
  return { broker: b, outbox, up, cfg };
}


describe("uplink", () => {
  it("delivers every stored reading once acknowledged, in batches, and then deletes the rows", async () => {
    const { broker, outbox, up } = await setup({ batch: { max_readings: 300, linger: "10ms" } });
    const sub = await Collector.connect(broker.url, "edge/test-site/gw-test/#");
    cleanups.push(() => sub.close());
    outbox.append(readings(2500));
    up.start();
    up.notify();
    await sub.waitFor(() => sub.seq.report().received >= 2500, 15_000, "2500 readings");
    await until(() => outbox.depth === 0, "outbox to empty");
    expect(sub.seq.report()).toMatchObject({ first: 1, last: 2500, gaps: [], duplicates: 0 });
    expect(Math.max(...sub.messages.map((m) => m.r.length))).toBeLessThanOrEqual(300);
    const status = sub.other.find((m) => m.topic === "edge/test-site/gw-test/status");
    expect(JSON.parse(status!.payload)).toMatchObject({ state: "online", version: "test" });
    expect(up.stats()).toMatchObject({ state: "online", readingsAcked: 2500, publishFailures: 0 });
  });

  it("keeps readings while the broker is unreachable and delivers them when it comes", async () => {
    const port = await freePort();
    const { outbox, up } = await setup({ url: `mqtt://127.0.0.1:${port}` });
    up.start();
    outbox.append(readings(100));
    up.notify();
    await until(() => up.stats().lastError !== null, "a connection error");
    expect(up.stats().lastError).toMatch(/connection refused/);
    expect(up.stats().state).not.toBe("online");
    expect(outbox.depth).toBe(100);
    // A broker appears on that port: the retries find it.
    const { AedesLike } = await import("../helpers/late-broker.js");
    const late = await AedesLike.listen(port);
    cleanups.push(() => late.close());
    await until(() => outbox.depth === 0, "the backlog to drain");
    expect(up.stats().readingsAcked).toBe(100);
  });

  it("sends live readings while a rate-limited backlog drains, each in sequence order", async () => {
    const { broker, outbox, up } = await setup({ batch: { max_readings: 200, linger: "20ms" }, backlog: { rate: 4000, max_inflight: 2 } });
    const sub = await Collector.connect(broker.url, "edge/+/+/telemetry");
    cleanups.push(() => sub.close());
    outbox.append(readings(8000, "old/p"));
    up.start();
    const live = setInterval(() => {
      outbox.append(readings(10, "live/p"));
      up.notify();
    }, 50);
    cleanups.push(() => clearInterval(live));
    await sub.waitFor(() => sub.seq.report().last !== null && sub.seq.report().received >= 8000 && sub.seq.report().gaps.length === 0, 20_000, "the backlog");
    clearInterval(live);
    const backlog = sub.messages.filter((m) => m.r[0]![0] === "old/p");
    const liveMsgs = sub.messages.filter((m) => m.r[0]![0] === "live/p");
    const lastBacklog = sub.messages.indexOf(backlog[backlog.length - 1]!);
    // Live messages arrived while the backlog was still draining (about two seconds at 4000/s).
    expect(liveMsgs.filter((m) => sub.messages.indexOf(m) < lastBacklog).length).toBeGreaterThan(5);
    const ascending = (ms: typeof backlog) => ms.every((m, i) => i === 0 || m.seq[0] > ms[i - 1]!.seq[1]);
    expect(ascending(backlog)).toBe(true);
    expect(ascending(liveMsgs)).toBe(true);
    expect(sub.seq.report()).toMatchObject({ first: 1, gaps: [], duplicates: 0 });
  });

  it("names bad credentials in one line and keeps buffering", async () => {
    const broker = await startBroker({ credentials: { username: "gw", password: "right" } });
    cleanups.push(() => broker.close());
    const bad = await setup({ username: "gw", password: "wrong" }, broker);
    bad.up.start();
    bad.outbox.append(readings(10));
    bad.up.notify();
    await until(() => bad.up.stats().lastError !== null, "a refusal");
    expect(bad.up.stats().lastError).toMatch(/broker (refused the credentials|says not authorized)/);
    expect(bad.up.stats().lastError).not.toMatch(/wrong/);
    expect(bad.outbox.depth).toBe(10);
    const good = await setup({ username: "gw", password: "right" }, broker);
    good.up.start();
    good.outbox.append(readings(10));
    good.up.notify();
    await until(() => good.outbox.depth === 0, "delivery with the right password");
  });

  it("names a TLS mismatch (mqtts:// to a plain listener)", async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.close());
    const { up } = await setup({ url: `mqtts://127.0.0.1:${broker.port}`, connect_timeout: "2s" }, broker);
    up.start();
    await until(() => up.stats().lastError !== null, "a TLS error");
    expect(up.stats().lastError).toMatch(/TLS|no answer to CONNECT/);
  });

  it("keeps the rows when the broker takes messages but never acknowledges them", async () => {
    // A broker that says CONNACK and then swallows everything: no PUBACK ever comes.
    const { createServer } = await import("node:net");
    const server = createServer((sock) => {
      sock.once("data", () => sock.write(Buffer.from([0x20, 0x02, 0x00, 0x00])));
      sock.on("data", () => {});
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const addr = server.address();
    const port = typeof addr === "object" && addr ? addr.port : 0;
    const { outbox, up } = await setup({ url: `mqtt://127.0.0.1:${port}`, publish_timeout: "300ms" });
    outbox.append(readings(20));
    up.start();
    up.notify();
    await until(() => up.stats().publishFailures > 0, "a publish timeout");
    expect(up.stats().lastError).toMatch(/publish of telemetry seq 1\.\.20 failed: no PUBACK within 300 ms; reconnecting/);
    expect(outbox.depth).toBe(20);
    expect(up.stats().readingsAcked).toBe(0);
  });

  it("speaks MQTT 5 when configured (Mosquitto), or names the refusal (aedes speaks 3.1.1 only)", async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.close());
    const { outbox, up } = await setup({ protocol: "5" }, broker);
    outbox.append(readings(10));
    up.start();
    up.notify();
    if (broker.kind === "mosquitto") {
      await until(() => outbox.depth === 0, "delivery over MQTT 5");
      expect(up.stats().readingsAcked).toBe(10);
    } else {
      await until(() => up.stats().lastError !== null, "a refusal");
      expect(outbox.depth).toBe(10);
    }
  });

  it("flushes pending readings on stop and publishes offline", async () => {
    const { broker, outbox, up } = await setup({ batch: { linger: "10s" } });
    const sub = await Collector.connect(broker.url, "edge/test-site/gw-test/#");
    cleanups.push(() => sub.close());
    up.start();
    await until(() => up.stats().state === "online", "online");
    outbox.append(readings(5));
    up.notify(); // the long linger would hold these back; stop must send them anyway
    await up.stop(3000);
    expect(outbox.depth).toBe(0);
    await sub.waitFor(() => sub.other.some((m) => m.payload.includes('"offline"')), 5000, "offline status");
    expect(sub.seq.report().received).toBe(5);
  });
});
