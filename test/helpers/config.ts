import { type Config, validateConfig } from "../../src/agent/config.js";

/** A full config (defaults filled in) from the parts a test cares about. */
export function testConfig(raw: Record<string, unknown> & { uplink: Record<string, unknown> }): Config {
  const r = validateConfig({ site: "test-site", gateway: "gw-test", ...raw });
  if (!r.ok) throw new Error(`test config invalid:\n${r.errors.join("\n")}`);
  return r.config;
}
