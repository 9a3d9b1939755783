import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { type Config, validateConfig } from "../../src/agent/config.js";

/** A full config (defaults filled in) from the parts a test cares about. */
export function testConfig(raw: Record<string, unknown> & { uplink: Record<string, unknown> }): Config {
  const r = validateConfig({ site: "test-site", gateway: "gw-test", ...raw });
  if (!r.ok) throw new Error(`test config invalid:\n${r.errors.join("\n")}`);
  return r.config;
}

/** The demo's config (configs/demo.yaml) with its outbox at `storePath` and every port free (no vitest: scripts use it). */
export function demoConfig(storePath: string): Config {
  // The repository's root from test/helpers/ (vitest) or dist/test/helpers/ (a built script).
  const root = new URL(import.meta.url.includes("/dist/") ? "../../../" : "../../", import.meta.url);
  const raw = parse(readFileSync(new URL("configs/demo.yaml", root), "utf8")) as Record<string, Record<string, unknown>>;
  raw.store!.path = storePath;
  (raw.uplink!.embedded_broker as Record<string, unknown>).port = 0;
  raw.live_feed = { port: 0 };
  const v = validateConfig(raw);
  if (!v.ok) throw new Error(v.errors.join("\n"));
  return v.config;
}
