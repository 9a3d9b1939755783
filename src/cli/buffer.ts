/**
 * `edge-agent buffer …`: what the outbox holds. `stats` and `dead-letters` (list) only read the
 * file (safe while the agent runs, and they change nothing); `dead-letters resend|purge` go
 * through the running agent when there is one (so it sends the given-back rows at once), or
 * change the file directly when it is stopped.
 */
import type { Command } from "commander";
import { type Config, loadConfig } from "../agent/config.js";
import { formatDuration } from "../config/limits.js";
import { UserError } from "../model/errors.js";
import { askAgent, controlSocketPath, type DeadLetterRequest } from "../ops/control-socket.js";
import { DROP_REASONS, type DropCounters } from "../store/drops.js";
import { type DeadLetter, type DeadLetterFilter, isStreamName, Outbox, type OutboxStats, STREAMS, type StreamName } from "../store/outbox.js";
import { formatAge, formatBytes, printJson, table } from "./output.js";

function storeOptions(cfg: Config) {
  return { quota: cfg.store.quota, whenFull: cfg.store.when_full, maxAge: cfg.store.max_age, sync: cfg.store.sync, replayWindow: cfg.store.replay_window };
}

export function bufferStats(configFile: string): OutboxStats & { path: string } {
  const cfg = loadConfig(configFile);
  const outbox = Outbox.inspect(cfg.store.path, storeOptions(cfg));
  try {
    return { path: cfg.store.path, ...outbox.stats() };
  } finally {
    outbox.close();
  }
}

function dropsLine(d: DropCounters): string {
  return `${d.quota_oldest} oldest (quota) · ${d.quota_newest} newest (quota) · ${d.max_age} too old${d.purged ? ` · ${d.purged} purged` : ""}`;
}

/** `1200 rows (telemetry 1180, events 20) delivered, kept 6h after the broker took them, for a replay`; off without a window. */
function keptLine(s: OutboxStats): string {
  const window = s.replayWindowMs;
  const kept = s.kept;
  if (window === 0 && kept === 0) return "off (store.replay_window)";
  const per = STREAMS.filter((n) => s.streams[n].kept > 0).map((n) => `${n} ${s.streams[n].kept}`);
  const what = `${kept} rows${per.length > 1 ? ` (${per.join(", ")})` : ""} delivered`;
  return window === 0 ? `${what}, going (store.replay_window is off)` : `${what}, kept ${formatDuration(window)} after the broker took them, for a replay`;
}

export function printBufferStats(s: OutboxStats & { path: string }): void {
  const rows: Array<[string, string]> = [
    ["outbox", s.path],
    ["pending", `${s.depth} readings${s.firstSeq !== null ? ` (seq ${s.firstSeq}..${s.lastSeq})` : ""}`],
    ["oldest unsent", formatAge(s.oldestAgeMs)],
    ["last seq", String(s.lastSeq)],
    ["events, results", `${s.streams.events.depth} events, ${s.streams.results.depth} results pending`],
    ["on disk", `${formatBytes(s.fileBytes)} (data ${formatBytes(s.usedBytes)}, quota ${formatBytes(s.quota)})`],
    ["dropped", dropsLine(s.dropped)],
  ];
  for (const name of ["events", "results"] as const) {
    const d = s.streams[name].dropped;
    if (DROP_REASONS.some((r) => d[r] > 0)) rows.push([`  of them ${name}`, dropsLine(d)]);
  }
  const dl = s.deadLetters;
  rows.push([
    "dead letters",
    dl.count === 0 ? "0" : `${dl.count} refused by the broker (${dl.reasons.map((r) => `${r.count} ${r.reason}`).join("; ")}) — edge-agent buffer dead-letters`,
  ]);
  rows.push(["kept for replay", keptLine(s)]);
  rows.push(["drop ledger", `${s.droppedRanges} ranges (which numbers were dropped, and why: what a replay answers)`]);
  process.stdout.write(`${table(rows)}\n`);
}

/** A stream name and an `A-B` (or `A`) sequence range from flags, checked. */
export function deadLetterFilter(opts: { stream?: string; seq?: string }): DeadLetterFilter {
  const filter: DeadLetterFilter = {};
  if (opts.stream !== undefined) {
    if (!isStreamName(opts.stream)) throw new UserError(`--stream: expected one of ${STREAMS.join(", ")}, got '${opts.stream}'`);
    filter.stream = opts.stream;
  }
  if (opts.seq !== undefined) {
    const m = /^(\d{1,15})(?:-(\d{1,15}))?$/.exec(opts.seq);
    const lo = m ? Number(m[1]) : Number.NaN;
    const hi = m?.[2] !== undefined ? Number(m[2]) : lo;
    if (!m || hi < lo) throw new UserError(`--seq: expected a sequence number or a range like 1200-1250, got '${opts.seq}'`);
    filter.seq = [lo, hi];
  }
  return filter;
}

export function listDeadLetters(configFile: string, filter: DeadLetterFilter, limit: number): { path: string; total: number; items: DeadLetter[] } {
  const cfg = loadConfig(configFile);
  const outbox = Outbox.inspect(cfg.store.path, storeOptions(cfg));
  try {
    return { path: cfg.store.path, total: outbox.stats().deadLetters.count, items: outbox.deadLetters(filter, limit) };
  } finally {
    outbox.close();
  }
}

function printDeadLetters(r: { path: string; total: number; items: DeadLetter[] }): void {
  if (r.total === 0) {
    process.stdout.write(`no dead letters in ${r.path}\n`);
    return;
  }
  const lines = r.items.map((d) => `${d.stream.padEnd(9)} ${String(d.seq).padStart(8)}  ${new Date(d.ts).toISOString()}  ${d.point} = ${JSON.stringify(d.value)}${d.quality === "good" ? "" : ` (${d.quality})`}\n    ${d.reason} (set aside ${new Date(d.at).toISOString()})`);
  process.stdout.write(`${lines.join("\n")}\n`);
  if (r.items.length < r.total) process.stdout.write(`… ${r.total - r.items.length} more (--limit, --stream, --seq)\n`);
  process.stdout.write(`resend: edge-agent buffer dead-letters resend -c FILE [--stream S] [--seq A-B]\n`);
}

export interface DeadLetterChange {
  via: "agent" | "file";
  changed: Array<{ stream: StreamName; count: number }>;
}

/** Resend or purge: through the running agent, or in the file when none runs. */
export async function changeDeadLetters(configFile: string, action: DeadLetterRequest["action"], filter: DeadLetterFilter): Promise<DeadLetterChange> {
  const cfg = loadConfig(configFile);
  const socket = controlSocketPath(cfg);
  const req: DeadLetterRequest = { op: "dead-letters", action, ...(filter.stream ? { stream: filter.stream } : {}), ...(filter.seq ? { seq: [filter.seq[0], filter.seq[1]] } : {}) };
  if (socket) {
    try {
      const answer = (await askAgent(socket, req)) as Array<{ stream: StreamName; count: number }>;
      return { via: "agent", changed: answer.map(({ stream, count }) => ({ stream, count })) };
    } catch (err) {
      if (!(err instanceof UserError) || !/no agent running/.test(err.message)) throw err;
    }
  }
  const outbox = Outbox.open({ path: cfg.store.path, ...storeOptions(cfg) });
  try {
    const changed = action === "purge" ? outbox.purgeDeadLetters(filter) : outbox.resendDeadLetters(filter).map(({ stream, count }) => ({ stream, count }));
    return { via: "file", changed };
  } finally {
    outbox.close();
  }
}

function printChange(action: string, c: DeadLetterChange): void {
  const total = c.changed.reduce((n, x) => n + x.count, 0);
  if (total === 0) {
    process.stdout.write("no dead letters matched\n");
    return;
  }
  const what = c.changed.map((x) => `${x.count} ${x.stream}`).join(", ");
  if (action === "purge") process.stdout.write(`purged ${what} (counted as dropped: purged)\n`);
  else process.stdout.write(c.via === "agent" ? `gave back ${what}: the agent is sending them now\n` : `gave back ${what}: sent when the agent next connects\n`);
}

async function confirm(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) throw new UserError("purging deletes readings for good: confirm with --yes (no terminal to ask on)");
  const { createInterface } = await import("node:readline/promises");
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
  } finally {
    rl.close();
  }
}

export function registerBuffer(program: Command): void {
  const buffer = program.command("buffer").description("inspect the local outbox");
  buffer
    .command("stats")
    .description("depth, oldest unsent age, bytes on disk, drop counters and dead letters of the outbox (reads only: safe while the agent runs)")
    .requiredOption("-c, --config <file>", "the agent's configuration file")
    .option("--json", "print as JSON")
    .action((opts: { config: string; json?: boolean }) => {
      const stats = bufferStats(opts.config);
      if (opts.json) printJson(stats);
      else printBufferStats(stats);
    });

  const dead = buffer
    .command("dead-letters")
    .description("readings, events or results the broker refused even one at a time: kept (within the quota) until resent or purged")
    .addHelpText(
      "after",
      `
A message the broker refuses is split and sent again; what it still refuses, reading by reading,
is set aside here with the broker's reason, so that everything behind it keeps flowing. Fix the
cause (the broker's size limit, its ACL), then give them back:
  edge-agent buffer dead-letters -c FILE                        list them, with the reason
  edge-agent buffer dead-letters resend -c FILE [--seq A-B]     send them again (same sequence numbers)
  edge-agent buffer dead-letters purge -c FILE --yes            delete them for good (counted as dropped)`,
    );
  const common = (cmd: Command) =>
    cmd
      .requiredOption("-c, --config <file>", "the agent's configuration file")
      .option("--stream <name>", `only this stream: ${STREAMS.join(", ")}`)
      .option("--seq <range>", "only these sequence numbers: 1200 or 1200-1250");
  common(dead.command("list", { isDefault: true }).description("list them, oldest first, with the broker's reason (reads only)"))
    .option("--limit <n>", "show at most this many", "50")
    .option("--json", "print as JSON")
    .action((opts: { config: string; stream?: string; seq?: string; limit: string; json?: boolean }) => {
      const limit = Number(opts.limit);
      if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1_000_000) throw new UserError(`--limit: expected a number 1–1000000, got '${opts.limit}'`);
      const r = listDeadLetters(opts.config, deadLetterFilter(opts), limit);
      if (opts.json) printJson(r);
      else printDeadLetters(r);
    });
  common(dead.command("resend").description("give them back to their streams, with their own sequence numbers, to be sent again"))
    .option("--json", "print as JSON")
    .action(async (opts: { config: string; stream?: string; seq?: string; json?: boolean }) => {
      const r = await changeDeadLetters(opts.config, "resend", deadLetterFilter(opts));
      if (opts.json) printJson(r);
      else printChange("resend", r);
    });
  common(dead.command("purge").description("delete them for good (counted as dropped, reason purged)"))
    .option("-y, --yes", "do not ask for confirmation")
    .option("--json", "print as JSON")
    .action(async (opts: { config: string; stream?: string; seq?: string; yes?: boolean; json?: boolean }) => {
      const filter = deadLetterFilter(opts);
      if (!opts.yes && !(await confirm("delete these dead letters for good?"))) throw new UserError("nothing purged", 1);
      const r = await changeDeadLetters(opts.config, "purge", filter);
      if (opts.json) printJson(r);
      else printChange("purge", r);
    });
}
