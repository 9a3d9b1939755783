import type { Command } from "commander";
import { Agent } from "../agent/agent.js";
import { loadConfig } from "../config/load.js";
import { createLogger, type LogLevel } from "../ops/logger.js";

export async function runAgent(configFile: string, opts: { logLevel?: LogLevel }): Promise<void> {
  const config = loadConfig(configFile);
  const log = createLogger({ level: opts.logLevel ?? config.log.level });
  const agent = new Agent(config, { log });
  await agent.start();
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        log.warn(`${signal} again: exiting without flushing`);
        process.exit(1);
      }
      stopping = true;
      log.info(`${signal}: stopping (flushing the outbox; press Ctrl-C again to force)`);
      agent.stop().then(resolve, (err: unknown) => {
        log.error({ err: (err as Error).message }, "error while stopping");
        resolve();
      });
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}

export function registerRun(program: Command): void {
  program
    .command("run")
    .description("run the agent: poll the sources, keep readings in the outbox, deliver them over MQTT")
    .requiredOption("-c, --config <file>", "YAML configuration file")
    .option("--log-level <level>", "trace, debug, info, warn or error (overrides log.level)")
    .action(async (opts: { config: string; logLevel?: LogLevel }) => {
      await runAgent(opts.config, opts);
    });
}
