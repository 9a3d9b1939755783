import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { LineCounter, parseDocument } from "yaml";
import type { z } from "zod";
import { UserError } from "../model/errors.js";
import { describeIssue } from "./issues.js";
import { type Config, configSchema } from "./schema.js";


export type ConfigResult = { ok: true; config: Config } | { ok: false; errors: string[] };

function describe(issue: z.core.$ZodIssue): string[] {
  return describeIssue(issue);
}

/** Validates an already parsed object; every problem is reported, each with its path. */
export function validateConfig(raw: unknown, baseDir = process.cwd()): ConfigResult {
  const parsed = configSchema.safeParse(raw ?? {}, { reportInput: true });
  if (!parsed.success) return { ok: false, errors: parsed.error.issues.flatMap(describe) };
  const config = parsed.data;
  // Relative paths are relative to the config file, so the same file works from any directory.
  const at = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  config.store.path = config.store.path === ":memory:" ? ":memory:" : at(config.store.path);
  const server = config.opcua?.server;
  if (server?.pki_dir) server.pki_dir = at(server.pki_dir);
  for (const src of config.sources) if (src.type === "opcua" && src.pki_dir) src.pki_dir = at(src.pki_dir);
  const tls = config.uplink.tls;
  if (tls) {
    if (tls.ca) tls.ca = at(tls.ca);
    if (tls.cert) tls.cert = at(tls.cert);
    if (tls.key) tls.key = at(tls.key);
  }
  return { ok: true, config };
}

/** Parses YAML text; syntax errors come back with line and column. */
export function parseConfigText(text: string, baseDir = process.cwd()): ConfigResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      errors: doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0]);
        return `line ${pos.line}, column ${pos.col}: ${e.message.split("\n")[0]}`;
      }),
    };
  }
  return validateConfig(doc.toJS(), baseDir);
}

export function checkConfigFile(file: string): ConfigResult {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "is a directory" : String(err);
    return { ok: false, errors: [`cannot read ${file}: ${why}`] };
  }
  return parseConfigText(text, dirname(resolve(file)));
}

/** Loads a config or throws a UserError listing every problem, for commands that need a config. */
export function loadConfig(file: string): Config {
  const result = checkConfigFile(file);
  if (!result.ok) {
    const n = result.errors.length;
    throw new UserError(`${file}: ${n} error${n === 1 ? "" : "s"}`, 2, result.errors);
  }
  return result.config;
}
