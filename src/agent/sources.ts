import { I2cBusPool } from "../buses/i2c/queue.js";
import { PortRegistry } from "../buses/ports.js";
import type { Logger } from "../model/logger.js";
import { sourceType } from "../sources/registry.js";
import type { Source } from "../sources/source.js";
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
 * source per device; sources on one physical bus share its queue).
 */
export function createSources(config: Config, deps: SourcesDeps): Array<{ source: Source; type: string }> {
  const ports = new PortRegistry();
  const shared = { log: deps.log, storePath: config.store.path, simulators: deps.simulators, ports, i2cBuses: new I2cBusPool(ports), cursor: deps.cursor ?? (() => undefined) };
  return config.sources.flatMap((cfg) => sourceType(cfg).create(cfg, shared).map((source) => ({ source, type: cfg.type })));
}

/** The unit of every point the config knows one for (from each kind's facts). */
export function unitsOf(config: Config): Map<string, string> {
  const units = new Map<string, string>();
  config.sources.forEach((src, i) => {
    for (const p of sourceType(src).facts(src, ["sources", i]).points) if (p.unit) units.set(p.id, p.unit);
  });
  return units;
}
