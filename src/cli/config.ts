import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Command } from "commander";
import { z } from "zod";
import { checkConfigFile, type Config, configSchema } from "../agent/config.js";
import { UserError } from "../model/errors.js";
import { sourceType } from "../sources/registry.js";
import { printJson } from "./output.js";

/** The JSON Schema editors use to complete and check configs (configs/edge-agent.schema.json). */
export function configJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
  return {
    $schema: schema.$schema,
    $id: "https://edge-agent.invalid/schema/config-v1.json",
    title: "edge-agent configuration",
    ...schema,
  };
}

export function registerConfig(program: Command): void {
  const config = program.command("config").description("check a configuration file, or print its JSON Schema");

  config
    .command("check")
    .description("validate FILE and list every error with its path; exit 2 when it is not valid")
    .argument("<file>", "YAML configuration file")
    .option("--json", "print the result as JSON")
    .action((file: string, opts: { json?: boolean }) => {
      const result = checkConfigFile(file);
      if (opts.json) {
        printJson(result.ok ? { ok: true, errors: [] } : { ok: false, errors: result.errors });
      } else if (result.ok) {
        process.stdout.write(`${file}: ok (${summarizeSources(result.config)})\n`);
      }
      if (!result.ok) {
        const n = result.errors.length;
        throw new UserError(`${file}: ${n} error${n === 1 ? "" : "s"}`, 2, opts.json ? [] : result.errors);
      }
    });

  config
    .command("schema")
    .description("print the configuration's JSON Schema (or write it to --out FILE)")
    .option("--out <file>", "write to this file instead of standard output")
    .action((opts: { out?: string }) => {
      const text = `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
      if (opts.out) {
        mkdirSync(dirname(opts.out), { recursive: true });
        writeFileSync(opts.out, text);
      } else process.stdout.write(text);
    });
}

/** `2 sources, 7 points` or `1 source, 2 Modbus devices, 45 points`: each kind counts its own. */
export function summarizeSources(cfg: Config): string {
  let points = 0;
  const devices = new Map<string, number>();
  for (const s of cfg.sources) {
    const summary = sourceType(s).summary?.(s);
    if (!summary) continue;
    points += summary.points;
    if (summary.devices && summary.deviceKind) devices.set(summary.deviceKind, (devices.get(summary.deviceKind) ?? 0) + summary.devices);
  }
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  return [plural(cfg.sources.length, "source"), ...[...devices].map(([kind, n]) => plural(n, kind)), plural(points, "point")].join(", ");
}
