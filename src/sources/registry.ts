/**
 * Every kind of source the agent knows: a kind is a folder under src/sources/ with its config
 * piece, checks, factory and status (its type.ts), and one line here. The config schema, the
 * JSON Schema, `config check`, the agent and the status/metrics code all follow this list
 * (docs/adding-a-source-type.md).
 */
import { bridge } from "./bridge/type.js";
import { gpio } from "./gpio/type.js";
import { i2c } from "./i2c/type.js";
import { modbus } from "./modbus/type.js";
import { opcua } from "./opcua/type.js";
import { simulated } from "./simulated/type.js";
import type { SourceType } from "./type.js";

export const SOURCE_TYPES = [simulated, modbus, i2c, gpio, opcua, bridge] as const;

type ConfigOf<T> = T extends SourceType<infer C> ? C : never;
/** A `sources:` entry of any kind. */
export type SourceConfig = ConfigOf<(typeof SOURCE_TYPES)[number]>;

/** The kind of an entry (every entry has one: the schema only lets known types through). */
export function sourceType(cfg: SourceConfig): SourceType<SourceConfig> {
  return SOURCE_TYPES.find((t) => t.type === cfg.type) as unknown as SourceType<SourceConfig>;
}
