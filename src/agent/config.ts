/**
 * The agent's configuration: the sections of src/config/schema.ts with `sources:` made of the
 * kinds in the source registry. Everything that reads a config file (run, config check, the CLI
 * commands that find the agent) loads it through here.
 */
import { configLoader } from "../config/load.js";
import { buildConfigSchema, type CoreConfig } from "../config/schema.js";
import type { SourceConfigType } from "../config/source-type.js";
import { SOURCE_TYPES, type SourceConfig, sourceType } from "../sources/registry.js";

export type { SourceConfig };
export type Config = CoreConfig & { sources: SourceConfig[] };

// Each kind's piece is typed for its own entries; composed, they are entries of any kind.
export const configSchema = buildConfigSchema<SourceConfig>(SOURCE_TYPES as unknown as readonly SourceConfigType<SourceConfig>[]);

const loader = configLoader<Config>(configSchema as never, (config, at) => {
  for (const src of config.sources) sourceType(src).resolvePaths?.(src, at);
});

export const { validateConfig, parseConfigText, checkConfigFile, loadConfig } = loader;
export type ConfigResult = ReturnType<typeof checkConfigFile>;
