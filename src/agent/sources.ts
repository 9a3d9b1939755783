import { I2cBusPool } from "../buses/i2c/queue.js";
import { PortRegistry } from "../buses/ports.js";
import type { Logger } from "../model/logger.js";
import type { SourceConfig } from "../sources/registry.js";
import type { Source } from "../sources/source.js";
import { sourceModule } from "../sources/type.js";
import type { Config } from "./config.js";

export interface SourcesDeps {
  log: Logger;
  /** Bound addresses of the embedded simulators, by name. */
  simulators: ReadonlyMap<string, { host: string; port: number }>;
  /** The outbox's committed cursors (a pushing source's position; none before the outbox opens). */
  cursor?: (key: string) => number | undefined;
}

/**
 * Builds every source the config describes, each by its kind's factory (a Modbus line gives one
 * source per device; sources on one physical bus share its queue). Only the kinds the config
 * uses are loaded.
 */
export async function createSources(config: Config, deps: SourcesDeps): Promise<Array<{ source: Source; type: string }>> {
  const ports = new PortRegistry();
  const shared = { log: deps.log, storePath: config.store.path, simulators: deps.simulators, ports, i2cBuses: new I2cBusPool(ports), cursor: deps.cursor ?? (() => undefined) };
  const out: Array<{ source: Source; type: string }> = [];
  for (const cfg of config.sources) {
    const kind = await sourceModule<SourceConfig>(cfg.type);
    for (const source of kind.create(cfg, shared)) out.push({ source, type: cfg.type });
  }
  return out;
}
