/**
 * Simulators the config asks the agent to run in-process (the zero-setup demo): a Modbus TCP
 * server with simulated meters and controllers, which the agent then polls like real ones.
 */
import { getProfile } from "../../drivers/modbus/registry.js";
import type { ModbusSimulatorConfig } from "../config/schema.js";
import type { ModbusSimulator } from "../simulators/modbus/server.js";

export class EmbeddedSimulators {
  private readonly running: ModbusSimulator[] = [];
  readonly addresses = new Map<string, { host: string; port: number }>();

  constructor(private readonly configs: readonly ModbusSimulatorConfig[]) {}

  async start(): Promise<void> {
    if (this.configs.length === 0) return;
    // Loaded only when the config runs a simulator (the demo): a field gateway never does.
    const [{ ModbusSimulator }, { SimDevice }] = await Promise.all([import("../simulators/modbus/server.js"), import("../simulators/modbus/device.js")]);
    for (const cfg of this.configs) {
      const sim = new ModbusSimulator();
      for (const u of cfg.units) {
        const profile = getProfile(u.profile);
        if (profile) sim.addUnit(u.unit, new SimDevice(profile));
      }
      const listener = await sim.listenTcp({ host: cfg.host, port: cfg.port });
      this.running.push(sim);
      if (listener.transport !== "rtu") this.addresses.set(cfg.name, { host: listener.host, port: listener.port });
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.running.splice(0).map((s) => s.close()));
  }
}
