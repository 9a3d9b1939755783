/**
 * A kind of source, as the agent builds it: its config piece and checks (SourceConfigType) plus
 * the factory that turns a config entry into sources. Each kind lives in its own folder
 * (src/sources/<type>/type.ts) and is listed once in src/sources/registry.ts.
 */
import type { I2cBusPool } from "../buses/i2c/queue.js";
import type { PortRegistry } from "../buses/ports.js";
import type { SourceConfigType } from "../config/source-type.js";
import type { Logger } from "../model/logger.js";
import type { Source } from "./source.js";

export interface SourceDeps {
  log: Logger;
  /** Where the outbox lives: state a source keeps (OPC UA's PKI) goes next to it. */
  storePath: string;
  /** Bound addresses of the embedded simulators, by name. */
  simulators: ReadonlyMap<string, { host: string; port: number }>;
  /** The physical ports of this agent: sources naming one port share its queue (one writer per bus). */
  ports: PortRegistry;
  /** The I²C buses of this agent (in the same registry). */
  i2cBuses: I2cBusPool;
  /** The outbox's committed cursor for a key: what a pushing source (a bridged board) already stored. */
  cursor(key: string): number | undefined;
}

export interface SourceType<C extends { type: string; name: string } = { type: string; name: string }> extends SourceConfigType<C> {
  create(cfg: C, deps: SourceDeps): Source[];
}
