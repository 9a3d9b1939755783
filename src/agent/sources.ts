import { I2cBusPool } from "../buses/i2c/queue.js";
import type { Config } from "../config/schema.js";
import type { Logger } from "../ops/logger.js";
import { createGpioSource } from "../sources/gpio/source.js";
import { createI2cSource } from "../sources/i2c/source.js";
import { devicePoints } from "../../drivers/modbus/registry.js";
import { createModbusDevices } from "../sources/modbus/source.js";
import { OpcuaSource } from "../sources/opcua.js";
import { SimulatedSource } from "../sources/simulated.js";
import type { Source } from "../sources/source.js";

export interface SourceDeps {
  log: Logger;
  /** Bound addresses of the embedded simulators, by name. */
  simulators: ReadonlyMap<string, { host: string; port: number }>;
}

/**
 * Builds every source the config describes (a Modbus line gives one source per device; i2c
 * sources on the same bus number share one queue).
 */
export function createSources(config: Config, deps: SourceDeps): Source[] {
  const i2cBuses = new I2cBusPool();
  return config.sources.flatMap((cfg): Source[] => {
    switch (cfg.type) {
      case "simulated":
        return [new SimulatedSource(cfg)];
      case "modbus":
        return createModbusDevices(cfg, deps).devices;
      case "i2c":
        return [createI2cSource(cfg, { log: deps.log, buses: i2cBuses })];
      case "gpio":
        return [createGpioSource(cfg, { log: deps.log })];
      case "opcua":
        return [new OpcuaSource(cfg, { log: deps.log, storePath: config.store.path })];
    }
  });
}

/** The unit of every point the config knows one for (profiles, generic points, OPC UA nodes, simulated points). */
export function unitsOf(config: Config): Map<string, string> {
  const units = new Map<string, string>();
  for (const src of config.sources) {
    if (src.type === "simulated") {
      for (const p of src.points) if (p.unit) units.set(`${src.name}/${p.name}`, p.unit);
    } else if (src.type === "modbus") {
      for (const dev of src.devices) for (const p of devicePoints(dev)) if (p.unit) units.set(`${dev.name}/${p.name}`, p.unit);
    } else if (src.type === "opcua") {
      for (const n of src.nodes) if (n.unit) units.set(`${src.name}/${n.name}`, n.unit);
    }
  }
  return units;
}
