import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import { Agent } from "../agent/agent.js";
import { checkConfigApart, loadConfigApart } from "../agent/config-apart.js";
import { createLogger, type Logger, type LogLevel } from "../ops/logger.js";
import { Notifier, Watchdog } from "../ops/systemd.js";

/**
 * Runs the agent until SIGINT/SIGTERM. SIGHUP reloads the config file: a valid new config
 * replaces the running agent (stopped with its outbox flushed and closed, so nothing buffered is
 * lost); an invalid one is rejected with its errors and the running agent carries on.
 */
export async function runAgent(configFile: string, opts: { logLevel?: LogLevel }): Promise<void> {
  const config = await loadConfigApart(configFile);
  const log = createLogger({ level: opts.logLevel ?? config.log.level });
  const unguard = guardProcess(log);
  let current = config;
  let agent = new Agent(current, { log });
  // Under systemd (Type=notify): ready once started, and a watchdog ping only while the agent is healthy.
  const notifier = new Notifier({ log: { info: (m: string) => log.info(m), warn: (m: string) => log.warn(m) } });
  let lastProblems = "";
  const watchdog = new Watchdog(
    () => {
      const problems = agent.healthProblems();
      const text = problems.join("; ");
      if (text && text !== lastProblems) log.error(`unhealthy, withholding the watchdog ping: ${text}`);
      lastProblems = text;
      return problems.length === 0;
    },
    { notifier },
  );
  let stopping = false;

  const reload = async () => {
    const result = await checkConfigApart(configFile);
    if (!result.ok) {
      log.error(`config reload rejected: ${configFile} has ${result.errors.length} error${result.errors.length === 1 ? "" : "s"}; the running config stays`);
      for (const e of result.errors) log.error(`  ${e}`);
      return;
    }
    log.info(`SIGHUP: reloading ${configFile}`);
    const previous = agent;
    await previous.stop();
    if (!opts.logLevel) log.level = result.config.log.level;
    // Building the new agent is inside the try too: the previous one is already stopped, and
    // whatever fails here must bring it back, not end the process.
    let next: Agent | undefined;
    try {
      next = new Agent(result.config, { log });
      await next.start();
      agent = next;
      current = result.config;
      log.info("config reloaded");
    } catch (err) {
      log.error(`the new config could not start (${thrownMessage(err)}); going back to the previous one`);
      await next?.stop().catch(() => {});
      if (!opts.logLevel) log.level = current.log.level;
      agent = new Agent(current, { log });
      await agent.start();
    }
  };

  // The signals are ours before the agent starts: a stop asked for during a slow start (a
  // gateway still booting) waits for the start, then stops cleanly — chargers off, outbox closed.
  let busy: Promise<void> = Promise.resolve();
  let stopped!: () => void;
  const done = new Promise<void>((resolve) => (stopped = resolve));
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn(`${signal} again: exiting without flushing`);
      process.exit(1);
    }
    stopping = true;
    log.info(`${signal}: stopping (flushing the outbox; press Ctrl-C again to force)`);
    watchdog.stop();
    void notifier.stopping();
    busy
      .then(() => agent.stop())
      .then(stopped, (err: unknown) => {
        log.error({ err: thrownMessage(err) }, "error while stopping");
        stopped();
      });
  };
  const hangUp = () => {
    if (stopping) return;
    busy = busy.then(reload).catch((err: unknown) => reportFatal(log, err));
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  process.on("SIGHUP", hangUp);
  const starting = agent.start();
  busy = starting;
  try {
    await starting;
  } catch (err) {
    for (const [signal, f] of [["SIGINT", stop], ["SIGTERM", stop], ["SIGHUP", hangUp]] as const) process.off(signal, f);
    unguard();
    throw err;
  }
  if (!stopping) {
    watchdog.start();
    await notifier.ready(agent.statusLine());
  }
  await done;
  unguard();
}

function reportFatal(log: Logger, err: unknown): never {
  log.fatal({ err: thrownMessage(err) }, "reload failed and the previous config could not restart either; exiting");
  process.exit(1);
}

function thrownMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The folder holding src/ and drivers/: dist/ when built, the checkout under vitest. */
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const FRAME = /(?:\(|at )((?:file:\/\/)?\/[^()]*?):(\d+):\d+\)?$/;

/**
 * Which part of ours a thrown value came from: the room of the first stack frame in our own code
 * (`uplink`, `control`, `drivers/modbus`…) and that frame's place, or `unknown`.
 */
export function originOf(thrown: unknown): { part: string; at?: string } {
  const stack = thrown instanceof Error && typeof thrown.stack === "string" ? thrown.stack : "";
  for (const line of stack.split("\n").slice(1)) {
    const m = FRAME.exec(line.trim());
    if (!m) continue;
    const file = relative(ROOT, m[1]!.startsWith("file://") ? fileURLToPath(m[1]!) : m[1]!);
    const room = /^(src|drivers)\/([^/]+)\//.exec(file);
    if (room) return { part: room[1] === "src" ? room[2]! : `drivers/${room[2]}`, at: `${file}:${m[2]}` };
  }
  return { part: "unknown" };
}

/**
 * The daemon's last line of defence (docs/operations.md, "What still stops the agent").
 * - A rejection nobody handled (a promise fired and forgotten) failed one asynchronous step of
 *   one part; the rest is intact: log it in one line with its part and go on. A rejection that
 *   repeats is logged once a minute with a count, not once per occurrence.
 * - An exception nobody caught interrupted synchronous code that may have left a part half
 *   updated: log it and exit 1, so systemd restarts the agent from a clean state (the outbox is
 *   transactional and loses nothing; actuators take their safe state at start).
 * Returns a function that removes both handlers.
 */
export function guardProcess(
  log: Pick<Logger, "error" | "fatal">,
  opts: { process?: NodeJS.EventEmitter; exit?: (code: number) => void; now?: () => number } = {},
): () => void {
  const proc = opts.process ?? process;
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  const now = opts.now ?? Date.now;
  const recent = new Map<string, { until: number; repeats: number }>();
  let total = 0;
  const onRejection = (reason: unknown) => {
    total++;
    const { part, at } = originOf(reason);
    const message = thrownMessage(reason);
    const key = `${part}\u0000${message}`;
    const seen = recent.get(key);
    if (seen && now() < seen.until) {
      seen.repeats++;
      return;
    }
    const repeats = seen?.repeats ? ` (${seen.repeats} more like it in the last minute)` : "";
    // Bounded: a flood of distinct messages must not grow this map without end.
    if (recent.size >= 100) recent.clear();
    recent.set(key, { until: now() + 60_000, repeats: 0 });
    log.error({ part, ...(at ? { at } : {}), unhandled_total: total }, `unhandled rejection in ${part}: ${message}${repeats}; the gateway goes on`);
  };
  const onException = (err: unknown) => {
    const { part, at } = originOf(err);
    log.fatal({ part, ...(at ? { at } : {}) }, `uncaught exception in ${part}: ${thrownMessage(err)}; exiting so that systemd restarts the agent from a clean state`);
    exit(1);
  };
  proc.on("unhandledRejection", onRejection);
  proc.on("uncaughtException", onException);
  return () => {
    proc.off("unhandledRejection", onRejection);
    proc.off("uncaughtException", onException);
  };
}

export function registerRun(program: Command): void {
  program
    .command("run")
    .description("run the agent: poll the sources, keep readings in the outbox, deliver them over MQTT (SIGHUP reloads the config)")
    .requiredOption("-c, --config <file>", "YAML configuration file")
    .option("--log-level <level>", "trace, debug, info, warn or error (overrides log.level)")
    .action(async (opts: { config: string; logLevel?: LogLevel }) => {
      await runAgent(opts.config, opts);
    });
}
