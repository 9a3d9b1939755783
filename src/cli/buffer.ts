import type { Command } from "commander";
import { loadConfig } from "../config/load.js";
import { Outbox, type OutboxStats } from "../store/outbox.js";
import { formatAge, formatBytes, printJson, table } from "./output.js";

export function bufferStats(configFile: string): OutboxStats & { path: string } {
  const cfg = loadConfig(configFile);
  const outbox = Outbox.inspect(cfg.store.path, {
    quota: cfg.store.quota,
    whenFull: cfg.store.when_full,
    maxAge: cfg.store.max_age,
    sync: cfg.store.sync,
  });
  try {
    return { path: cfg.store.path, ...outbox.stats() };
  } finally {
    outbox.close();
  }
}

export function printBufferStats(s: OutboxStats & { path: string }): void {
  const d = s.dropped;
  process.stdout.write(
    `${table([
      ["outbox", s.path],
      ["pending", `${s.depth} readings${s.firstSeq !== null ? ` (seq ${s.firstSeq}..${s.lastSeq})` : ""}`],
      ["oldest unsent", formatAge(s.oldestAgeMs)],
      ["last seq", String(s.lastSeq)],
      ["on disk", `${formatBytes(s.fileBytes)} (data ${formatBytes(s.usedBytes)}, quota ${formatBytes(s.quota)})`],
      ["dropped", `${d.quota_oldest} oldest (quota) · ${d.quota_newest} newest (quota) · ${d.max_age} too old`],
    ])}\n`,
  );
}

export function registerBuffer(program: Command): void {
  const buffer = program.command("buffer").description("inspect the local outbox");
  buffer
    .command("stats")
    .description("depth, oldest unsent age, bytes on disk and drop counters of the outbox (safe while the agent runs)")
    .requiredOption("-c, --config <file>", "the agent's configuration file")
    .option("--json", "print as JSON")
    .action((opts: { config: string; json?: boolean }) => {
      const stats = bufferStats(opts.config);
      if (opts.json) printJson(stats);
      else printBufferStats(stats);
    });
}
