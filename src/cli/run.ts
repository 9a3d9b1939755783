import type { Command } from "commander";
import { Agent } from "../agent/agent.js";
import { checkConfigFile, loadConfig } from "../config/load.js";
import { createLogger, type Logger, type LogLevel } from "../ops/logger.js";
import { Notifier, Watchdog } from "../ops/systemd.js";

/**
 * Runs the agent until SIGINT/SIGTERM. SIGHUP reloads the config file: a valid new config
 * replaces the running agent (stopped with its outbox flushed and closed, so nothing buffered is
 * lost); an invalid one is rejected with its errors and the running agent carries on.
 */
export async function runAgent(configFile: string, opts: { logLevel?: LogLevel }): Promise<void> {
  const config = loadConfig(configFile);
  const log = createLogger({ level: opts.logLevel ?? config.log.level });
  let current = config;
  let agent = new Agent(current, { log });
  await agent.start();
  // Under systemd (Type=notify): ready now, and a watchdog ping only while the agent is healthy.
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
  watchdog.start();
  await notifier.ready(agent.statusLine());
  let busy: Promise<void> = Promise.resolve();
  let stopping = false;

  const reload = async () => {
    const result = checkConfigFile(configFile);
    if (!result.ok) {
      log.error(`config reload rejected: ${configFile} has ${result.errors.length} error${result.errors.length === 1 ? "" : "s"}; the running config stays`);
      for (const e of result.errors) log.error(`  ${e}`);
      return;
    }
    log.info(`SIGHUP: reloading ${configFile}`);
    const previous = agent;
    await previous.stop();
    if (!opts.logLevel) log.level = result.config.log.level;
    const next = new Agent(result.config, { log });
    try {
      await next.start();
      agent = next;
      current = result.config;
      log.info("config reloaded");
    } catch (err) {
      log.error(`the new config could not start (${(err as Error).message}); going back to the previous one`);
      await next.stop().catch(() => {});
      agent = new Agent(current, { log });
      await agent.start();
    }
  };

  await new Promise<void>((resolve) => {
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
        .then(resolve, (err: unknown) => {
          log.error({ err: (err as Error).message }, "error while stopping");
          resolve();
        });
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    process.on("SIGHUP", () => {
      if (stopping) return;
      busy = busy.then(reload).catch((err: unknown) => reportFatal(log, err));
    });
  });
}

function reportFatal(log: Logger, err: unknown): never {
  log.fatal({ err: (err as Error).message }, "reload failed and the previous config could not restart either; exiting");
  process.exit(1);
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
