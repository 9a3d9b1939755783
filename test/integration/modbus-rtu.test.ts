/**
 * The agent's RTU master over a real serial path: socat joins two ptys, the simulator serves
 * several units on one end, the agent polls them on the other.
 */
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
import { PtyPair } from "../helpers/socat.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function readingsOf(path: string, prefix: string) {
  const box = Outbox.inspect(path, { quota: 1e9, whenFull: "drop-oldest", maxAge: 1e12, sync: "normal" });
  try {
    return box.readAfter(0, 1_000_000).filter((r) => r.point.startsWith(prefix));
  } finally {
    box.close();
  }
}

describe("Modbus RTU over a virtual serial pair", () => {
  it("polls several units on one line; a dead unit does not cost the healthy ones their interval", { timeout: 30_000 }, async () => {
    const dir = tempDir();
    const pty = await PtyPair.open(dir);
    cleanups.push(() => pty.unplug());
    const sim = new ModbusSimulator();
    sim.addUnit(1, new SimDevice(getProfile("sdm120")!)).addUnit(2, new SimDevice(getProfile("sdm630")!)).addUnit(3, new SimDevice(getProfile("epever")!));
    sim.setFault(3, { kind: "no-answer" });
    // 19200 baud: the healthy meters take about a quarter of each second on the wire, a probe of
    // the dead unit 300 ms more. The rest absorbs a busy machine's delays (the simulator, socat
    // and the agent share its cores); a dead unit costing three timeouts a poll would not fit.
    await sim.openSerial({ path: pty.a, baudRate: 19200 });
    cleanups.push(() => sim.close());

    const cfg = testConfig({
      // Nothing listens there: the outbox just keeps the readings, which is what we inspect.
      uplink: { url: `mqtt://127.0.0.1:${await freePort()}` },
      store: { path: join(dir, "o.db"), sync: "normal" },
      sources: [
        {
          type: "modbus",
          name: "rs485-1",
          rtu: { device: pty.b, baud: 19200 },
          timeout: "300ms",
          retries: 0,
          interval: "1s",
          devices: [
            { name: "flat-1", unit: 1, profile: "sdm120" },
            { name: "main", unit: 2, profile: "sdm630" },
            { name: "dead", unit: 3, profile: "epever", offline_after: 2, probe_interval: "3s" },
          ],
        },
      ],
    });
    const agent = new Agent(cfg, { log: silentLogger() });
    await agent.start();
    cleanups.push(() => agent.stop());
    // Seven polls: the dead unit is probed twice meanwhile (every 3 s).
    const polls = (name: string) => agent.status().sources[name]?.polls ?? 0;
    await waitFor("7 polls of each healthy meter", () => polls("flat-1") >= 7 && polls("main") >= 7);
    const status = agent.status();
    await agent.stop();
    cleanups.pop();

    for (const name of ["flat-1", "main"]) {
      // The first poll may overrun once while the device teaches the planner where its holes are.
      expect(status.sources[name]!.overruns, `${name} overruns`).toBeLessThanOrEqual(1);
      const online = readingsOf(cfg.store.path, `${name}/online`);
      expect(online.length, `${name} polls`).toBeGreaterThanOrEqual(4);
      // From then on every poll lands on its second: one interval apart, no drift, no skips,
      // although the dead unit on the same line times out on every probe.
      const ts = online.slice(1).map((r) => r.ts);
      ts.slice(1).forEach((t, i) => expect(t - ts[i]!).toBe(1000));
      expect(online.every((r) => r.value === true)).toBe(true);
      const bad = readingsOf(cfg.store.path, `${name}/`).filter((r) => r.quality !== "good");
      expect(bad).toEqual([]);
    }
    const voltage = readingsOf(cfg.store.path, "main/voltage_l1");
    expect(voltage.length).toBeGreaterThanOrEqual(5);
    expect(voltage[0]!.value as number).toBeGreaterThan(200);
    const dead = readingsOf(cfg.store.path, "dead/online");
    expect(dead.at(-1)?.value).toBe(false);
    expect(dead.every((r) => r.quality === "good")).toBe(true);
    expect(readingsOf(cfg.store.path, "dead/battery_voltage").every((r) => r.quality === "bad" && r.value === null)).toBe(true);
  });

  it("survives the adapter being unplugged and plugged back, and names what happened", { timeout: 30_000 }, async () => {
    const dir = tempDir();
    const pty = await PtyPair.open(dir);
    cleanups.push(() => pty.unplug());
    const serve = async () => {
      const sim = new ModbusSimulator();
      sim.addUnit(1, new SimDevice(getProfile("sdm120")!));
      await sim.openSerial({ path: pty.a, baudRate: 9600 });
      return sim;
    };
    let sim = await serve();
    cleanups.push(() => sim.close());
    const cfg = testConfig({
      uplink: { url: `mqtt://127.0.0.1:${await freePort()}` },
      store: { path: join(dir, "o.db"), sync: "normal" },
      sources: [{ type: "modbus", name: "usb", rtu: { device: pty.b, baud: 9600 }, timeout: "200ms", interval: "500ms", devices: [{ name: "m", unit: 1, profile: "sdm120", probe_interval: "500ms" }] }],
    });
    const agent = new Agent(cfg, { log: silentLogger() });
    await agent.start();
    cleanups.push(() => agent.stop());
    const meter = () => agent.status().sources.m!.devices.find((d) => d.name === "m")!;
    await waitFor("a first good poll", () => meter().online && meter().lastOkTs !== null);
    await sim.close();
    await pty.unplug();
    await waitFor("the meter offline while the adapter is out", () => !meter().online);
    const during = agent.status().sources.m!;
    await pty.plug();
    sim = await serve();
    const pluggedAt = Date.now();
    await waitFor("a good poll after the adapter came back", () => (meter().lastOkTs ?? 0) > pluggedAt);
    await agent.stop();
    cleanups.pop();
    const voltage = readingsOf(cfg.store.path, "m/voltage");
    expect(voltage.some((r) => r.quality === "good" && r.ts > pluggedAt)).toBe(true);
    expect(voltage.some((r) => r.quality === "bad")).toBe(true);
    expect(during.errors).toBe(0); // the device reports errors as bad readings, never as a thrown poll
  });
});
