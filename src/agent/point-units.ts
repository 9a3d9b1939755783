import { sourceType } from "../sources/registry.js";
import type { Config } from "./config.js";

/**
 * The unit of every point the config knows one for (from each kind's facts). For the OPC UA
 * server, which loads this with itself: the facts live with the config pieces (type.ts, zod).
 */
export function unitsOf(config: Config): Map<string, string> {
  const units = new Map<string, string>();
  config.sources.forEach((src, i) => {
    for (const p of sourceType(src).facts(src, ["sources", i]).points) if (p.unit) units.set(p.id, p.unit);
  });
  return units;
}
