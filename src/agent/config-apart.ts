/**
 * `run` checks its config file in a short-lived child process (config-child.ts) and gets the
 * checked config back: the schema (zod), the YAML parser and every kind's config piece are loaded
 * there and leave with the child, so the daemon never carries them (~6 MB of a gateway's heap for
 * its whole life, issue 12). The answer is checkConfigFile's: the config, or every error with its
 * place. At start and at each SIGHUP; a config check costs a Node start (~0.3 s here).
 */
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { UserError } from "../model/errors.js";
import type { Config, ConfigResult } from "./config.js";

const CHILD = fileURLToPath(new URL("./config-child.js", import.meta.url));

/** Reads and checks a config file apart; never throws (a reload relies on that to keep running). */
export function checkConfigApart(file: string): Promise<ConfigResult> {
  return new Promise((resolve) => {
    let answer: ConfigResult | null = null;
    let stderr = "";
    const failed = (why: string): ConfigResult => ({ ok: false, errors: [`${file}: could not be checked (${why})`] });
    // No node flags of ours (the unit's memory flags, a test's loader): the check is short and alone.
    const child = fork(CHILD, [file], { execArgv: [], serialization: "advanced", stdio: ["ignore", "ignore", "pipe", "ipc"] });
    child.stderr!.on("data", (b: Buffer) => (stderr = (stderr + b.toString()).slice(-2000)));
    child.on("message", (m) => (answer ??= m as ConfigResult));
    child.once("error", (err) => {
      answer ??= failed(err.message);
    });
    // After the IPC channel too: the answer, if any, came before.
    child.once("close", (code, signal) => {
      const last = stderr.trim().split("\n").at(-1);
      resolve(answer ?? failed(`the checking process ${signal ? `was killed (${signal})` : `exited with ${code}`}${last ? `: ${last}` : ""}`));
    });
  });
}

/** Loads a config apart or throws a UserError listing every problem (as loadConfig does). */
export async function loadConfigApart(file: string): Promise<Config> {
  const result = await checkConfigApart(file);
  if (!result.ok) {
    const n = result.errors.length;
    throw new UserError(`${file}: ${n} error${n === 1 ? "" : "s"}`, 2, result.errors);
  }
  return result.config;
}
