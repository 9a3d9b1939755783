import { closeSync, openSync, readSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import type { z } from "zod";
import { UserError } from "../model/errors.js";
import { describeIssue } from "../model/issues.js";
import { CONFIG_LIMITS } from "./limits.js";
import { decodeUtf8, readYaml } from "./yaml.js";


export type ConfigResult<C> = { ok: true; config: C } | { ok: false; errors: string[] };

function describe(issue: z.core.$ZodIssue): string[] {
  return describeIssue(issue);
}

/** The parts of a config whose paths are relative to the config file. */
interface WithPaths {
  store: { path: string };
  uplink: { tls?: { ca?: string | undefined; cert?: string | undefined; key?: string | undefined } | undefined };
  opcua?: { server?: { pki_dir?: string | undefined } | undefined } | undefined;
  updates?: { download: { ca?: string | undefined } } | undefined;
}

export interface ConfigLoader<C> {
  /** Validates an already parsed object; every problem is reported, each with its path. */
  validateConfig(raw: unknown, baseDir?: string): ConfigResult<C>;
  /**
   * Parses YAML text and validates it. Whatever the text holds, the answer is a result: YAML
   * problems come back with line and column, schema problems with their path, and anything thrown
   * below (a bug, or a case nobody foresaw) as one line instead of a stack trace.
   */
  parseConfigText(text: string, baseDir?: string): ConfigResult<C>;
  /** Reads and checks a config file; never throws (a reload relies on that to keep running). */
  checkConfigFile(file: string): ConfigResult<C>;
  /** Loads a config or throws a UserError listing every problem, for commands that need a config. */
  loadConfig(file: string): C;
}

/**
 * The loader of configs of one schema (src/agent/config.ts composes it with the source kinds).
 * `resolveMore` makes the paths of other sections relative to the config file too.
 */
export function configLoader<C extends WithPaths>(schema: z.ZodType<C>, resolveMore: (config: C, at: (p: string) => string) => void = () => {}): ConfigLoader<C> {
  const validateConfig = (raw: unknown, baseDir = process.cwd()): ConfigResult<C> => {
    const parsed = schema.safeParse(raw ?? {}, { reportInput: true });
    if (!parsed.success) return { ok: false, errors: parsed.error.issues.flatMap(describe) };
    const config = parsed.data;
    // Relative paths are relative to the config file, so the same file works from any directory.
    const at = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
    config.store.path = config.store.path === ":memory:" ? ":memory:" : at(config.store.path);
    const server = config.opcua?.server;
    if (server?.pki_dir) server.pki_dir = at(server.pki_dir);
    const tls = config.uplink.tls;
    if (tls) {
      if (tls.ca) tls.ca = at(tls.ca);
      if (tls.cert) tls.cert = at(tls.cert);
      if (tls.key) tls.key = at(tls.key);
    }
    const dl = config.updates?.download;
    if (dl?.ca) dl.ca = at(dl.ca);
    resolveMore(config, at);
    return { ok: true, config };
  };
  const parseConfigText = (text: string, baseDir = process.cwd()): ConfigResult<C> => {
    try {
      const yaml = readYaml(text);
      return yaml.ok ? validateConfig(yaml.value, baseDir) : yaml;
    } catch (err) {
      return { ok: false, errors: [`(whole file): could not be checked: ${thrownMessage(err)}`] };
    }
  };
  const checkConfigFile = (file: string): ConfigResult<C> => {
    try {
      const bytes = readBounded(file);
      if (typeof bytes === "string") return { ok: false, errors: [`cannot read ${file}: ${bytes}`] };
      const decoded = decodeUtf8(bytes);
      if (!decoded.ok) return decoded;
      return parseConfigText(decoded.text, dirname(resolve(file)));
    } catch (err) {
      return { ok: false, errors: [`${file}: could not be checked: ${thrownMessage(err)}`] };
    }
  };
  const loadConfig = (file: string): C => {
    const result = checkConfigFile(file);
    if (!result.ok) {
      const n = result.errors.length;
      throw new UserError(`${file}: ${n} error${n === 1 ? "" : "s"}`, 2, result.errors);
    }
    return result.config;
  };
  return { validateConfig, parseConfigText, checkConfigFile, loadConfig };
}

/**
 * The file's bytes, at most CONFIG_LIMITS.bytes of them, or why not. Read up to one byte past the
 * limit rather than trusting the size from stat, so a device or a growing file is bounded too.
 */
function readBounded(file: string): Uint8Array | string {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (err) {
    return openReason(err);
  }
  try {
    const buffer = Buffer.alloc(CONFIG_LIMITS.bytes + 1);
    let length = 0;
    while (length < buffer.length) {
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
    }
    if (length > CONFIG_LIMITS.bytes) return `larger than ${CONFIG_LIMITS.bytes / 1024} KB, the most a config may have`;
    return buffer.subarray(0, length);
  } catch (err) {
    return openReason(err);
  } finally {
    closeSync(fd);
  }
}

function openReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "is a directory" : thrownMessage(err);
}

function thrownMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

