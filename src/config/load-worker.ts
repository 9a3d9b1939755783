/**
 * Reads and checks a config file in a short-lived worker thread. The daemon needs the YAML parser
 * and the config schema only at start and on SIGHUP; loaded in the main thread they would stay
 * resident for the life of the process (~3 MB of a gateway's ~75). The worker's heap goes with it.
 * If a worker cannot start, the file is checked in this thread instead: same result, more memory.
 */
import { Worker } from "node:worker_threads";
import { type ConfigResult, configOrThrow } from "./result.js";
import type { Config } from "./schema.js";

/**
 * checkConfigFile in a worker thread; rejects if the worker cannot start or dies. No node options
 * are passed on: the parent's (V8 flags, --input-type, preloads) are not for a worker.
 */
export function checkConfigFileInWorker(file: string): Promise<ConfigResult> {
  return new Promise<ConfigResult>((resolve, reject) => {
    let settled = false;
    const worker = new Worker(new URL("./load-worker-main.js", import.meta.url), { workerData: { file }, execArgv: [], stdout: false, stderr: false });
    worker.once("message", (result: ConfigResult) => {
      settled = true;
      resolve(result);
    });
    worker.once("error", (err) => {
      if (!settled) reject(err);
      settled = true;
    });
    worker.once("exit", (code) => {
      if (!settled) reject(new Error(`the config worker exited with code ${code} before answering`));
      settled = true;
    });
  });
}

/** checkConfigFile, in a worker when one can start, else in this thread. */
export function checkConfigFileAside(file: string): Promise<ConfigResult> {
  return checkConfigFileInWorker(file).catch(async () => (await import("./load.js")).checkConfigFile(file));
}

/** loadConfig, checked in a worker: the config, or a UserError listing every problem. */
export async function loadConfigAside(file: string): Promise<Config> {
  return configOrThrow(file, await checkConfigFileAside(file));
}
