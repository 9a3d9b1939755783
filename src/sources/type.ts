/**
 * A kind of source: its config piece and checks (SourceConfigType, in src/sources/<type>/type.ts,
 * listed once in src/sources/registry.ts) and the factory that turns a config entry into sources
 * (`create`, exported by src/sources/<type>/source.ts). The agent loads the factory of the kinds
 * its config uses and nothing else: neither the other kinds' code nor the config schemas (type.ts
 * and zod belong to the config check, which `run` does in a child process).
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

export type SourceType<C extends { type: string; name: string } = { type: string; name: string }> = SourceConfigType<C>;

/** What src/sources/<type>/source.ts exports for the agent. */
export interface SourceModule<C extends { type: string; name: string } = { type: string; name: string }> {
  create(cfg: C, deps: SourceDeps): Source[];
}

/** The factory of a kind (its folder's source.ts), loaded when a config first uses the kind. */
export async function sourceModule<C extends { type: string; name: string }>(type: C["type"]): Promise<SourceModule<C>> {
  // @vite-ignore: resolved when called (vitest maps the .js to the .ts, node runs the built file).
  return (await import(/* @vite-ignore */ `./${type}/source.js`)) as SourceModule<C>;
}
