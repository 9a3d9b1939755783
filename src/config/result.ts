/** The outcome of checking a config, shared by the in-process loader and the worker one. */
import { UserError } from "../model/errors.js";
import type { Config } from "./schema.js";

export type ConfigResult = { ok: true; config: Config } | { ok: false; errors: string[] };

/** The config, or a UserError (exit code 2) listing every problem of `file`. */
export function configOrThrow(file: string, result: ConfigResult): Config {
  if (result.ok) return result.config;
  const n = result.errors.length;
  throw new UserError(`${file}: ${n} error${n === 1 ? "" : "s"}`, 2, result.errors);
}
