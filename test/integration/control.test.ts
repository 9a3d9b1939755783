/**
 * Commands end to end through a real broker: a command in on cmd/<target>, the coil changed in
 * the Modbus simulator, the result out on result. And a charging session whose limit is reached
 * while the broker is away: the gateway still cuts it, and the session record arrives later.
 */
import { join } from "node:path";
import mqtt from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { getProfile } from "../../drivers/modbus/registry.js";
import { Agent } from "../../src/agent/agent.js";
import { SimDevice } from "../../src/simulators/modbus/device.js";
import { ModbusSimulator } from "../../src/simulators/modbus/server.js";
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

async function cabinet(brokerUrl: string) {
  const sim = new ModbusSimulator();
  sim.addUnit(1, new SimDevice(getProfile("epever")!, { freeze: true })); // the lamp's controller
  sim.addUnit(3, new SimDevice(getProfile("sdm120")!, { freeze: true })); // the charging point's meter
  sim.addUnit(4, new SimDevice(getProfile("epever")!, { freeze: true })); // its load output switches the charger
  sim.device(3)!.set("import_active_energy", 100);
  sim.device(3)!.set("active_power", 400);
  const l = await sim.listenTcp({ host: "127.0.0.1", port: 0 });
  cleanups.push(() => sim.close());
  if (l.transport === "rtu") throw new Error("unexpected");
  const dir = tempDir();
  const cfg = testConfig({
    uplink: { url: brokerUrl, reconnect: { min: "100ms", max: "300ms" }, batch: { linger: "20ms" } },
    store: { path: join(dir, "o.db") },
    sources: [
      {
        type: "modbus",
        name: "cabinet",
        tcp: { host: "127.0.0.1", port: l.port },
        timeout: "300ms",
        interval: "250ms",
        devices: [
          { name: "solar-1", unit: 1, profile: "epever", only: ["battery_voltage", "load_output"] },
          { name: "bike-meter", unit: 3, profile: "sdm120", only: ["active_power", "import_active_energy"] },
          { name: "bike-relay", unit: 4, profile: "epever", only: ["load_output"] },
        ],
      },
    ],
    streetlights: [{ name: "street-1", relay: { modbus: { device: "solar-1", point: "load_output" } }, latitude: 45.46, longitude: 9.19 }],
    chargers: [{ name: "bike-1", relay: { modbus: { device: "bike-relay", point: "load_output" } }, meter: "bike-meter", max_power: 2000, max_kwh: 5, max_duration: "1h" }],
  });
  const agent = new Agent(cfg, { log: silentLogger() });
  await agent.start();
  cleanups.push(() => agent.stop());
  return { sim, agent };
}

async function publisher(url: string) {
  const c = await mqtt.connectAsync(url, { reconnectPeriod: 200 });
  cleanups.push(() => c.endAsync());
  return c;
}

const results = (sub: Collector) => sub.other.filter((m) => m.topic === "edge/test-site/gw-test/result").map((m) => JSON.parse(m.payload) as Record<string, unknown>);

describe("commands through the broker", () => {
  it("switches the lamp's coil in the device, answers on result, and rejects what it must", { timeout: 20_000 }, async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.close());
    const sub = await Collector.connect(broker.url, "edge/test-site/gw-test/#");
    cleanups.push(() => sub.close());
    const { sim, agent } = await cabinet(broker.url);
    await sub.waitFor(() => agent.status().uplink.state === "online", 10_000, "online");
    const lampOnAtStart = sim.device(1)!.get("load_output");
    const pub = await publisher(broker.url);
    const want = !lampOnAtStart;
    await pub.publishAsync("edge/test-site/gw-test/cmd/street-1", JSON.stringify({ id: "c-1", action: "set", args: { on: want, duration_s: 600 } }), { qos: 1 });
    await sub.waitFor(() => results(sub).some((r) => r.id === "c-1"), 10_000, "the result of c-1");
    expect(sim.device(1)!.get("load_output")).toBe(want);
    const r1 = results(sub).find((r) => r.id === "c-1")!;
    expect(r1).toMatchObject({ v: 1, gw: "gw-test", target: "street-1", action: "set", status: "ok", state: { mode: "override", on: want } });
    expect(typeof r1.seq).toBe("number");

    // A repeat is answered again (same result), not executed again; garbage and strangers are refused.
    await pub.publishAsync("edge/test-site/gw-test/cmd/street-1", JSON.stringify({ id: "c-1", action: "set", args: { on: !want, duration_s: 600 } }), { qos: 1 });
    await pub.publishAsync("edge/test-site/gw-test/cmd/street-1", "{oops", { qos: 1 });
    await pub.publishAsync("edge/test-site/gw-test/cmd/street-9", JSON.stringify({ id: "c-3", action: "set", args: { on: true } }), { qos: 1 });
    await pub.publishAsync("edge/test-site/gw-test/cmd/bike-1", JSON.stringify({ id: "c-4", action: "start", args: { max_kwh: 50 } }), { qos: 1 });
    await sub.waitFor(() => results(sub).length >= 5, 10_000, "five results");
    expect(sim.device(1)!.get("load_output")).toBe(want);
    expect(sim.device(4)!.get("load_output")).toBe(false);
    const byId = (id: string | null) => results(sub).filter((r) => r.id === id);
    expect(byId("c-1")).toHaveLength(2);
    expect(byId("c-1")[1]).toMatchObject({ status: "ok", state: { on: want } });
    expect(byId(null)[0]).toMatchObject({ status: "rejected", reason: "malformed JSON" });
    expect(byId("c-3")[0]).toMatchObject({ status: "rejected", reason: "unknown target 'street-9' (declared actuators: street-1, bike-1, outbox)" });
    expect(byId("c-4")[0]).toMatchObject({ status: "rejected", reason: expect.stringMatching(/^args\.max_kwh: /) });
    // Results carry the results stream's own sequence numbers, one per message.
    expect(results(sub).map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
  });

  it("cuts a charging session at its limit while the broker is down, and reports the session when it is back", { timeout: 30_000 }, async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.close());
    const sub = await Collector.connect(broker.url, "edge/test-site/gw-test/#", { clientId: `platform-${Date.now()}`, clean: false });
    cleanups.push(() => sub.close());
    const { sim, agent } = await cabinet(broker.url);
    await sub.waitFor(() => agent.status().uplink.state === "online", 10_000, "online");
    const charger = () => agent.status().actuators["bike-1"] as { charging: boolean; energy_kwh: number | null; session?: { kwh: number } };
    await waitFor("the charger reading its meter", () => charger().energy_kwh === 100);
    const pub = await publisher(broker.url);
    await pub.publishAsync("edge/test-site/gw-test/cmd/bike-1", JSON.stringify({ id: "s-1", action: "start", args: { max_kwh: 0.5 } }), { qos: 1 });
    await sub.waitFor(() => results(sub).some((r) => r.id === "s-1"), 10_000, "session started");
    expect(results(sub).find((r) => r.id === "s-1")).toMatchObject({ status: "ok", state: { charging: true } });
    expect(sim.device(4)!.get("load_output")).toBe(true);

    await broker.stop();
    sim.device(3)!.set("import_active_energy", 100.3);
    await waitFor("the charger seeing 0.3 kWh charged", () => Math.abs((charger().session?.kwh ?? 0) - 0.3) < 1e-6);
    expect(charger().charging).toBe(true);
    expect(sim.device(4)!.get("load_output")).toBe(true);
    sim.device(3)!.set("import_active_energy", 100.6); // past the 0.5 kWh of the session
    await waitFor("the charger switched off", () => sim.device(4)!.get("load_output") === false); // cut locally, no uplink needed
    expect(charger().charging).toBe(false);
    expect(agent.status().uplink.state).not.toBe("online");

    await broker.start();
    await sub.waitFor(() => sub.other.some((m) => m.topic.endsWith("/events") && m.payload.includes("bike-1/session")), 15_000, "the session record");
    const ev = sub.other.find((m) => m.topic.endsWith("/events") && m.payload.includes("bike-1/session"))!;
    const entry = (JSON.parse(ev.payload) as { r: [string, number, string][] }).r.find((e) => e[0] === "bike-1/session")!;
    expect(JSON.parse(entry[2])).toMatchObject({ reason: "kwh-limit", kwh: 0.6 });
  });
});
