import type { Config } from "../config/schema.js";
import type { Logger } from "../ops/logger.js";
import { createModbusDevices } from "../sources/modbus/source.js";
import { SimulatedSource } from "../sources/simulated.js";
import type { Source } from "../sources/source.js";

export interface SourceDeps {
  log: Logger;
  /** Bound addresses of the embedded simulators, by name. */
  simulators: ReadonlyMap<string, { host: string; port: number }>;
}

/** Builds every source the config describes (a Modbus line gives one source per device). */
export function createSources(config: Config, deps: SourceDeps): Source[] {
  return config.sources.flatMap((cfg): Source[] => {
    switch (cfg.type) {
      case "simulated":
        return [new SimulatedSource(cfg)];
      case "modbus":
        return createModbusDevices(cfg, deps).devices;
    }
  });
}
