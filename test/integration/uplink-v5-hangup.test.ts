/**
 * A broker that hangs up on an MQTT 5 CONNECT without a CONNACK (RabbitMQ 3.10 does): with
 * `uplink.protocol: auto` the gateway tries 3.1.1 after two such hang-ups and keeps it once it
 * connects; while the broker hangs up on every version (it is down), it goes back to 5.
 */
import { createServer, type Socket, connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Agent } from "../../src/agent/agent.js";
import { silentLogger } from "../../src/ops/logger.js";
import { startBroker } from "../helpers/broker.js";
import { testConfig } from "../helpers/config.js";
import { Collector } from "../helpers/subscriber.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Forwards to the broker on `port`, but hangs up on a CONNECT asking for a refused protocol level. */
async function pickyProxy(port: number) {
  return pickyProxyAt(port, 0);
}

async function pickyProxyAt(port: number, listenPort: number) {
  const levels: number[] = [];
  const sockets = new Set<Socket>();
  const proxy = { refused: new Set<number>([5]), levels, url: "", dropAll: () => sockets.forEach((s) => s.destroy()), close: async () => {} };
  const track = (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
    s.on("error", () => s.destroy());
  };
  const server = createServer((client) => {
    track(client);
    client.once("data", (first) => {
      // CONNECT: fixed header (1 byte + remaining length 1–4 bytes), then "\0\4MQTT", then the level.
      let i = 1;
      while (first[i]! & 0x80) i++;
      const level = first[i + 7]!;
      levels.push(level);
      if (proxy.refused.has(level)) {
        client.destroy();
        return;
      }
      const up = tcpConnect(port, "127.0.0.1", () => {
        up.write(first);
        client.pipe(up).pipe(client);
      });
      track(up);
      up.once("close", () => client.destroy());
      client.once("close", () => up.destroy());
    });
  });
  await new Promise<void>((r) => server.listen(listenPort, "127.0.0.1", () => r()));
  const addr = server.address();
  proxy.url = `mqtt://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  proxy.close = async () => {
    proxy.dropAll();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return proxy;
}

function agentVia(url: string): Agent {
  return new Agent(
    testConfig({
      uplink: { url, reconnect: { min: "100ms", max: "300ms" }, batch: { max_readings: 50, linger: "20ms" } },
      store: { path: join(tempDir(), "outbox.db") },
      sources: [{ type: "simulated", name: "m", interval: "20ms", points: [{ name: "p", wave: "sine" }] }],
    }),
    { log: silentLogger() },
  );
}

describe("uplink.protocol auto against a broker that hangs up on MQTT 5", () => {
  it("falls back to 3.1.1 after two silent hang-ups and keeps it", async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.close());
    const proxy = await pickyProxy(broker.port);
    cleanups.push(() => proxy.close());
    const sub = await Collector.connect(broker.url, ["edge/+/+/telemetry"], { clientId: `v5-hangup-${Date.now()}` });
    cleanups.push(() => sub.close());
    const agent = agentVia(proxy.url);
    await agent.start();
    cleanups.push(() => agent.stop());
    await sub.waitFor(() => sub.readings > 20, 15_000, "readings through the proxy over 3.1.1");
    expect(agent.status().uplink.protocol).toBe("3.1.1");
    expect(proxy.levels).toEqual([5, 5, 4]);
    // A connection lost later comes back over 3.1.1 at once.
    proxy.dropAll();
    await waitFor("reconnected", () => proxy.levels.length === 4 && agent.status().uplink.state === "online", { timeoutMs: 15_000 });
    expect(proxy.levels[3]).toBe(4);
  }, 60_000);

  it("goes back to 5 when 3.1.1 is hung up on too (a broker down, not a 3.1.1 broker)", async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.close());
    const proxy = await pickyProxy(broker.port);
    proxy.refused = new Set([4, 5]);
    cleanups.push(() => proxy.close());
    const agent = agentVia(proxy.url);
    await agent.start();
    cleanups.push(() => agent.stop());
    await waitFor("5, 5, 4, then 5 again", () => proxy.levels.join(",").startsWith("5,5,4,5"), { timeoutMs: 15_000 });
    expect(agent.status().uplink.state).not.toBe("online");
    proxy.refused = new Set();
    await waitFor("online", () => agent.status().uplink.state === "online", { timeoutMs: 15_000 });
  }, 60_000);

  it("does not count a broker that is not listening (no connection opened) as hanging up on 5", async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.close());
    const proxy = await pickyProxy(broker.port);
    cleanups.push(() => proxy.close());
    proxy.refused = new Set();
    const port = Number(new URL(proxy.url).port);
    await proxy.close();
    const agent = agentVia(proxy.url);
    await agent.start();
    cleanups.push(() => agent.stop());
    await new Promise((r) => setTimeout(r, 1500)); // several refused TCP connections
    const again = await pickyProxyAt(broker.port, port);
    cleanups.push(() => again.close());
    again.refused = new Set();
    await waitFor("online", () => agent.status().uplink.state === "online", { timeoutMs: 15_000 });
    expect(agent.status().uplink.protocol).toBe("5");
    expect(again.levels[0]).toBe(5);
  }, 60_000);
});
