/**
 * The agent's stop when a part fails to stop: the others stop anyway, and first of all the
 * actuators take their safe state while the Modbus line is still open — the charger's relay off
 * (its session recorded), the streetlight back in its automatic state (a manual override ended).
 */
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { getProfile } from "../../drivers/modbus/registry.js";
import { Agent } from "../../src/agent/agent.js";
import { part } from "../../src/agent/parts.js";
import { askAgent, controlSocketPath } from "../../src/ops/control-socket.js";
import { createLogger } from "../../src/ops/logger.js";
import { SimDevice } from "../../src/simulators/modbus/device.js";
import { ModbusSimulator } from "../../src/simulators/modbus/server.js";
import { Outbox } from "../../src/store/outbox.js";
import { sharedBrokerUrl } from "../helpers/broker.js";
import { testConfig } from "../helpers/config.js";
import { tempDir } from "../helpers/tmp.js";
import { until } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});


describe("agent stop", () => {
  it("stops every part when one throws, with chargers off and streetlights in their safe state first", { timeout: 30_000 }, async () => {
    const url = await sharedBrokerUrl(cleanups);
    const sim = new ModbusSimulator();
    sim.addUnit(1, new SimDevice(getProfile("epever")!, { freeze: true })); // the lamp's controller
    sim.addUnit(3, new SimDevice(getProfile("sdm120")!, { freeze: true })); // the charging point's meter
    sim.addUnit(4, new SimDevice(getProfile("epever")!, { freeze: true })); // its load output is the charger's relay
    sim.device(3)!.set("import_active_energy", 100);
    sim.device(3)!.set("active_power", 400);
    const l = await sim.listenTcp({ host: "127.0.0.1", port: 0 });
    cleanups.push(() => sim.close());
    if (l.transport === "rtu") throw new Error("unexpected");
    const dir = tempDir();
    const cfg = testConfig({
      gateway: `gw-stop-${process.pid}`,
      uplink: { url, reconnect: { min: "100ms", max: "300ms" }, batch: { linger: "20ms" } },
      store: { path: join(dir, "o.db") },
      sources: [
        {
          type: "modbus",
          name: "cabinet",
          tcp: { host: "127.0.0.1", port: l.port },
          timeout: "300ms",
          interval: "200ms",
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
    const lines: string[] = [];
    const log = createLogger({ level: "info", pretty: false, destination: new Writable({ write: (c: Buffer, _e, done) => (lines.push(...c.toString().trim().split("\n")), done()) }) });
    let stopped: string[] = [];
    const agent = new Agent(cfg, {
      log,
      parts: [
        part("broken", () => {}, () => {
          stopped.push("broken");
          throw new Error("cannot stop");
        }),
      ],
    });
    await agent.start();
    cleanups.push(() => agent.stop());
    const socket = controlSocketPath(cfg)!;
    await until(() => agent.status().uplink.state === "online" && agent.status().actuators["bike-1"]?.meter === "online", "the meter read and the broker up");

    // A session on, and the lamp forced to the opposite of what the schedule wants.
    const started = (await askAgent(socket, { op: "command", target: "bike-1", payload: JSON.stringify({ id: "s1", action: "start" }) })) as { status: string };
    expect(started.status).toBe("ok");
    expect(sim.device(4)!.get("load_output")).toBe(true);
    const autoOn = agent.status().actuators["street-1"]!.on as boolean;
    const forced = (await askAgent(socket, { op: "command", target: "street-1", payload: JSON.stringify({ id: "l1", action: "set", args: { on: !autoOn, duration_s: 3600 } }) })) as { status: string };
    expect(forced.status).toBe("ok");
    expect(sim.device(1)!.get("load_output")).toBe(!autoOn);

    stopped = [];
    await agent.stop();
    cleanups.pop();
    // The broken part's stop was logged and skipped; the rest stopped.
    expect(stopped).toEqual(["broken"]);
    expect(lines.some((l) => /broken did not stop cleanly: cannot stop/.test(l))).toBe(true);
    const s = agent.status();
    expect(s.parts.every((p) => p.state === "stopped")).toBe(true);
    expect(s.uplink.state).toBe("stopped");
    // Safe states, written to the devices while the line was open.
    expect(sim.device(4)!.get("load_output")).toBe(false);
    expect(s.actuators["bike-1"]).toMatchObject({ charging: false, relay: "off" });
    expect(sim.device(1)!.get("load_output")).toBe(autoOn);
    expect(s.actuators["street-1"]).toMatchObject({ mode: "auto", on: autoOn });
    // The session's record is in the outbox (or already delivered), and the outbox was closed cleanly.
    const box = Outbox.inspect(cfg.store.path, { quota: 1e9, whenFull: "drop-oldest", maxAge: 1e12, sync: "full" });
    const events = box.stream("events").lastSeq;
    box.close();
    expect(events).toBeGreaterThanOrEqual(1);
    // And no command moves an actuator once the agent is stopping.
    expect(lines.some((l) => /session ended/.test(l) && /shutdown/.test(l))).toBe(true);
  });
});
