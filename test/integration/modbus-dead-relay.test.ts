/**
 * A relay module that never answers, on the line of two meters (issue 11, item 7): a whole agent
 * polls the meters through the Modbus TCP simulator while a charging point keeps trying to
 * switch its relay off every second. Once the relay is offline, its writes fail at once and only
 * a probe now and then reaches the line, so the meters keep their poll interval.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { ModbusPoint } from "../../drivers/modbus/types.js";
import { Agent } from "../../src/agent/agent.js";
import { SimDevice } from "../../src/simulators/modbus/device.js";
import { ModbusSimulator } from "../../src/simulators/modbus/server.js";
import { silentLogger } from "../../src/ops/logger.js";
import type { DeviceHealth } from "../../src/sources/modbus/device.js";
import { freePort } from "../helpers/broker.js";
import { testConfig } from "../helpers/config.js";
import { profile } from "../helpers/modbus.js";
import { tempDir } from "../helpers/tmp.js";
import { untilThat as until } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});


const relayPoints: ModbusPoint[] = [
  { name: "relay_1", table: "coil", address: 0, type: "bool", writable: true },
  { name: "relay_2", table: "coil", address: 1, type: "bool", writable: true },
];

describe("a relay that never answers, on a line shared with healthy meters", () => {
  it("leaves the meters their poll interval while a charger keeps trying to switch it off", { timeout: 60_000 }, async () => {
    const sim = new ModbusSimulator({ turnaroundMs: 1 });
    sim.addUnit(1, new SimDevice(profile("sdm120"), { freeze: true, seed: 1 }));
    sim.addUnit(2, new SimDevice(profile("sdm120"), { freeze: true, seed: 2 }));
    sim.addUnit(20, new SimDevice(relayPoints));
    sim.setFault(20, { kind: "no-answer" });
    const l = await sim.listenTcp({ host: "127.0.0.1", port: 0 });
    cleanups.push(() => sim.close());
    if (l.transport === "rtu") throw new Error("unexpected");

    const only = ["active_power", "import_active_energy"];
    const cfg = testConfig({
      uplink: { url: `mqtt://127.0.0.1:${await freePort()}` },
      store: { path: join(tempDir(), "o.db"), sync: "normal" },
      sources: [
        {
          type: "modbus",
          name: "charger-line",
          tcp: { host: "127.0.0.1", port: l.port },
          timeout: "1s",
          interval: "200ms",
          devices: [
            { name: "meter-a", unit: 1, profile: "sdm120", only },
            { name: "meter-b", unit: 2, profile: "sdm120", only },
            { name: "relays", unit: 20, interval: "2s", offline_after: 3, probe_interval: "30s", points: relayPoints },
          ],
        },
      ],
      chargers: [{ name: "point-1", relay: { modbus: { device: "relays", point: "relay_1" } }, meter: "meter-a", max_power: 800, max_kwh: 2, max_duration: "4h" }],
    });
    const agent = new Agent(cfg, { log: silentLogger() });
    await agent.start();
    cleanups.push(() => agent.stop());
    const relays = () => agent.status().sources.relays!.health as DeviceHealth;

    // The relay's first timeouts (the charger's off at start, its retries, the relay's polls)
    // take it offline; from then on, watch the meters while the charger goes on trying.
    await until("the relay to go offline", () => !relays().online, 20_000);
    // A write still on the line then, and the polls queued behind it, end within a timeout.
    const polls = () => agent.status().sources["meter-a"]!.polls;
    const settled = polls() + 3;
    await until("the meter polls queued behind the relay's last timeout", () => polls() >= settled, 10_000);
    const before = agent.status();
    const writesBefore = relays().writes;
    const ticks = (s: typeof before, name: string) => s.sources[name]!.polls + s.sources[name]!.overruns;
    // 30 ticks of the meters (6 s at 200 ms), all before the relay's next probe.
    await until("30 meter ticks", () => ticks(agent.status(), "meter-a") - ticks(before, "meter-a") >= 30, 30_000);
    const after = agent.status();
    const writesAfter = relays().writes;

    for (const name of ["meter-a", "meter-b"]) {
      const runs = after.sources[name]!.polls - before.sources[name]!.polls;
      const overruns = after.sources[name]!.overruns - before.sources[name]!.overruns;
      // None expected; a write on the line every second would skip about half of the ticks
      // (each timeout is five of them). Generous: a loaded machine may skip a few.
      expect(overruns, `${name}: ${runs} polls, ${overruns} overruns`).toBeLessThanOrEqual(Math.ceil((runs + overruns) * 0.2));
      expect((after.sources[name]!.health as DeviceHealth).online).toBe(true);
    }
    // The charger went on trying (about once a second); the device refused each try off the line.
    expect(writesAfter.refusedOffline - writesBefore.refusedOffline).toBeGreaterThanOrEqual(3);
    expect(writesAfter.sent - writesBefore.sent).toBe(0);
    expect(after.actuators["point-1"]).toMatchObject({ relay: "off-pending", fault: expect.stringMatching(/relays is offline since .*; next attempt within 30s/) });
  });
});
