/** Modbus TCP and RTU over TCP: the agent polls through a converter that may drop the connection. */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { getProfile } from "../../drivers/modbus/registry.js";
import { Agent } from "../../src/agent/agent.js";
import { SimDevice } from "../../src/simulators/modbus/device.js";
import { ModbusSimulator } from "../../src/simulators/modbus/server.js";
import { silentLogger } from "../../src/ops/logger.js";
import { Outbox } from "../../src/store/outbox.js";
import { freePort } from "../helpers/broker.js";
import { testConfig } from "../helpers/config.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function stored(path: string, point: string) {
  const box = Outbox.inspect(path, { quota: 1e9, whenFull: "drop-oldest", maxAge: 1e12, sync: "normal" });
  try {
    return box.readAfter(0, 1_000_000).filter((r) => r.point === point);
  } finally {
    box.close();
  }
}

function simulator() {
  const sim = new ModbusSimulator();
  sim.addUnit(1, new SimDevice(getProfile("sdm630")!)).addUnit(2, new SimDevice(getProfile("epever")!));
  return sim;
}

async function agentFor(transport: Record<string, unknown>, dir: string) {
  const cfg = testConfig({
    uplink: { url: `mqtt://127.0.0.1:${await freePort()}` },
    store: { path: join(dir, "o.db"), sync: "normal" },
    sources: [
      {
        type: "modbus",
        name: "converter",
        ...transport,
        timeout: "200ms",
        interval: "300ms",
        devices: [
          { name: "meter", unit: 1, profile: "sdm630", probe_interval: "300ms" },
          { name: "solar", unit: 2, profile: "epever", probe_interval: "300ms" },
        ],
      },
    ],
  });
  const agent = new Agent(cfg, { log: silentLogger() });
  await agent.start();
  cleanups.push(() => agent.stop());
  return { agent, path: cfg.store.path };
}

describe("Modbus over TCP", () => {
  it("recovers by itself when the TCP converter closes the connection and comes back", { timeout: 20_000 }, async () => {
    const dir = tempDir();
    const port = await freePort();
    let sim = simulator();
    await sim.listenTcp({ host: "127.0.0.1", port });
    const { agent, path } = await agentFor({ tcp: { host: "127.0.0.1", port } }, dir);
    const volts = () => stored(path, "meter/voltage_l1");
    const poll = { everyMs: 100 };
    await waitFor("two good readings", () => volts().filter((r) => r.quality === "good").length >= 2, poll);
    await sim.close(); // connections dropped, nothing listening
    const cut = Date.now();
    await waitFor("a bad reading while nothing listens", () => volts().some((r) => r.ts > cut + 400 && r.quality === "bad"), poll);
    sim = simulator();
    await sim.listenTcp({ host: "127.0.0.1", port });
    cleanups.push(() => sim.close());
    const back = Date.now();
    await waitFor("two good readings after the converter is back", () => volts().filter((r) => r.ts > back + 500 && r.quality === "good").length >= 2, poll);
    const status = agent.status();
    const all = volts();
    expect(all.filter((r) => r.ts < cut && r.quality === "good").length).toBeGreaterThan(1);
    expect(all.filter((r) => r.ts > cut + 400 && r.ts < back).every((r) => r.quality === "bad")).toBe(true);
    expect(all.filter((r) => r.ts > back + 500 && r.quality === "good").length).toBeGreaterThan(1);
    expect(status.sources.meter!.errors).toBe(0);
  });

  it("polls RTU frames over TCP (a serial-to-Ethernet converter)", { timeout: 20_000 }, async () => {
    const dir = tempDir();
    const sim = simulator();
    const l = await sim.listenRtuOverTcp({ host: "127.0.0.1", port: 0 });
    cleanups.push(() => sim.close());
    if (l.transport === "rtu") throw new Error("unexpected listener");
    const { path } = await agentFor({ rtu_over_tcp: { host: "127.0.0.1", port: l.port } }, dir);
    const good = () => stored(path, "solar/battery_voltage").filter((r) => r.quality === "good");
    await waitFor("two good battery readings and the meter online", () => good().length >= 2 && stored(path, "meter/online").length > 0, { everyMs: 100 });
    const battery = good();
    expect(battery.length).toBeGreaterThan(1);
    expect(battery.at(-1)!.value as number).toBeGreaterThan(8);
    expect(stored(path, "meter/online").at(-1)?.value).toBe(true);
  });
});
