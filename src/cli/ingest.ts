/**
 * `edge-agent ingest` — the platform's receiver: stores every gateway's telemetry, events, results
 * and status in PostgreSQL exactly once per sequence number, with a completeness ledger, and
 * asks gateways to replay gaps (docs/ingest.md). `ingest migrate` creates/upgrades the schema;
 * `ingest report` prints what each gateway delivered.
 */
import { hostname } from "node:os";
import type { Command } from "commander";
import pg from "pg";
import { UserError } from "../model/errors.js";
import { checkSchemaName, migrate } from "../ingest/schema.js";
import { createLogger, type LogLevel } from "../ops/logger.js";
import { parseDurationFlag } from "./tail.js";
import { printJson } from "./output.js";

interface CommonOpts {
  database?: string;
  schema: string;
}

interface RunOpts extends CommonOpts {
  broker?: string;
  amqp?: string[];
  root: string;
  group: string;
  clientId: string;
  connections: string;
  sessionExpiry: string;
  queue: string;
  prefetch: string;
  batch: string;
  linger: string;
  dictionaryWait: string;
  replay: boolean;
  replayAfter: string;
  replayRetry: string;
  replayMax: string;
  gapCheck: string;
  metrics?: string;
  timescale: string;
  username?: string;
  password?: string;
  logLevel: string;
}

function database(opts: CommonOpts): string {
  const url = opts.database ?? process.env.DATABASE_URL;
  if (!url) throw new UserError("--database: give the PostgreSQL URL (postgres://user@host:5432/db) or set DATABASE_URL");
  if (!/^postgres(ql)?:\/\/.+/.test(url)) throw new UserError(`--database: expected a URL like postgres://user@host:5432/db, got '${url.slice(0, 80)}'`);
  return url;
}

function int(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < min || n > max) throw new UserError(`${flag}: expected a whole number from ${min} to ${max}, got '${text.slice(0, 40)}'`);
  return n;
}

function timescale(text: string): "auto" | "on" | "off" {
  if (text !== "auto" && text !== "on" && text !== "off") throw new UserError(`--timescale: expected auto, on or off, got '${text.slice(0, 40)}'`);
  return text;
}

const ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;

export function registerIngest(program: Command): void {
  const ingest = program
    .command("ingest")
    .description("platform side: store every gateway's readings in PostgreSQL exactly once, with a completeness ledger and gap replay")
    .addHelpText(
      "after",
      `
Examples:
  edge-agent ingest run -b mqtt://broker:1883 -d postgres://ingest@db/city     MQTT 5 shared subscription
  edge-agent ingest run --amqp amqp://rabbit-1 --amqp amqp://rabbit-2 -d …     RabbitMQ quorum queue
  edge-agent ingest report -d postgres://ingest@db/city                      per gateway: gaps, duplicates
Run several processes with the same --group (MQTT) or --queue (RabbitMQ) to scale out; give each
its own --client-id. Details: docs/ingest.md`,
    );
  const common = (c: Command) =>
    c
      .option("-d, --database <url>", "PostgreSQL URL (default: DATABASE_URL; PGPASSWORD etc. are honoured)")
      .option("--schema <name>", "schema holding the tables", "edge");

  common(ingest.command("run", { isDefault: true }).description("consume and store until Ctrl-C (the default)"))
    .option("-b, --broker <url>", "MQTT 5 broker, e.g. mqtt://broker:1883")
    .option("--amqp <url>", "RabbitMQ node (repeat for the nodes of a cluster) instead of --broker", (v: string, acc: string[] = []) => [...acc, v])
    .option("--root <root>", "topic root of the gateways", "edge")
    .option("--group <name>", "shared-subscription group (MQTT): processes of one group split the messages", "edge-ingest")
    .option("--client-id <id>", "stable id of this process, the same at every restart (its MQTT sessions are <id>-0 … <id>-N); two processes on one host need two ids", `edge-ingest-${hostname().replace(/[^A-Za-z0-9_.-]/g, "-").slice(0, 40)}`)
    .option("--connections <n>", "MQTT connections of this process (each holds one message until its batch commits)", "16")
    .option("--session-expiry <duration>", "how long the broker keeps this process's messages while it is away", "1d")
    .option("--queue <name>", "RabbitMQ quorum queue", "edge-ingest")
    .option("--prefetch <n>", "RabbitMQ: unacknowledged messages this process holds", "256")
    .option("--batch <readings>", "readings per transaction at most", "20000")
    .option("--linger <duration>", "wait at most this long to fill a batch", "20ms")
    .option("--dictionary-wait <duration>", "how long a compact message waits for its dictionary", "10s")
    .option("--no-replay", "never ask gateways to replay gaps")
    .option("--replay-after <duration>", "ask for a replay of a gap open this long", "2m")
    .option("--replay-retry <duration>", "ask again after this long", "10m")
    .option("--replay-max <n>", "asks per gap at most", "3")
    .option("--gap-check <duration>", "how often gaps are checked", "30s")
    .option("--metrics <host:port>", "serve Prometheus metrics at http://host:port/metrics")
    .option("--timescale <mode>", "auto | on | off: readings as a TimescaleDB hypertable when the extension is there", "auto")
    .option("--username <user>", "broker user name")
    .option("--password <password>", "broker password (prefer EDGE_MQTT_PASSWORD in the environment)")
    .option("--log-level <level>", "trace | debug | info | warn | error", "info")
    .action(async (opts: RunOpts) => {
      const db = database(opts);
      const schema = checkSchemaName(opts.schema);
      if (!!opts.broker === !!opts.amqp) throw new UserError("give either --broker (MQTT) or --amqp (RabbitMQ)");
      if (opts.broker && !/^(mqtt|mqtts|tcp|tls|ws|wss):\/\/.+/.test(opts.broker)) throw new UserError(`--broker: expected a URL like mqtt://host:1883, got '${opts.broker.slice(0, 80)}'`);
      for (const u of opts.amqp ?? []) if (!/^amqps?:\/\/.+/.test(u)) throw new UserError(`--amqp: expected a URL like amqp://host:5672, got '${u.slice(0, 80)}'`);
      if (!ID_RE.test(opts.group)) throw new UserError(`--group: letters, digits, _ . - (1–64), got '${opts.group.slice(0, 70)}'`);
      if (!ID_RE.test(opts.clientId)) throw new UserError(`--client-id: letters, digits, _ . - (1–64), got '${opts.clientId.slice(0, 70)}'`);
      if (!ID_RE.test(opts.root)) throw new UserError(`--root: letters, digits, _ . - (1–64), got '${opts.root.slice(0, 70)}'`);
      if (!ID_RE.test(opts.queue)) throw new UserError(`--queue: letters, digits, _ . - (1–64), got '${opts.queue.slice(0, 70)}'`);
      const log = createLogger({ level: opts.logLevel as LogLevel });
      const { startIngest } = await import("../ingest/ingest.js");
      const running = await startIngest({
        database: db,
        schema,
        timescale: timescale(opts.timescale),
        root: opts.root,
        ...(opts.broker
          ? {
              mqtt: {
                url: opts.broker,
                group: opts.group,
                clientId: opts.clientId,
                connections: int("--connections", opts.connections, 1, 256),
                sessionExpiry: Math.round(parseDurationFlag("--session-expiry", opts.sessionExpiry) / 1000),
                ...(opts.username !== undefined ? { username: opts.username } : {}),
                ...((opts.password ?? process.env.EDGE_MQTT_PASSWORD) !== undefined ? { password: opts.password ?? process.env.EDGE_MQTT_PASSWORD } : {}),
              },
            }
          : { amqp: { urls: opts.amqp!, queue: opts.queue, prefetch: int("--prefetch", opts.prefetch, 1, 65535) } }),
        batch: { maxReadings: int("--batch", opts.batch, 1, 1_000_000), lingerMs: parseDurationFlag("--linger", opts.linger) },
        dictionaryWaitMs: parseDurationFlag("--dictionary-wait", opts.dictionaryWait),
        replay: opts.replay
          ? {
              afterMs: parseDurationFlag("--replay-after", opts.replayAfter),
              retryMs: parseDurationFlag("--replay-retry", opts.replayRetry),
              maxAsks: int("--replay-max", opts.replayMax, 1, 1000),
              intervalMs: Math.max(100, parseDurationFlag("--gap-check", opts.gapCheck)),
            }
          : null,
        ...(opts.metrics ? { metrics: opts.metrics } : {}),
        log,
      });
      log.info(
        { source: opts.broker ?? opts.amqp, schema, metrics: running.metricsUrl },
        `ingest running: ${opts.broker ? `${opts.broker} group ${opts.group}` : `RabbitMQ queue ${opts.queue}`} → ${schema}${running.metricsUrl ? ` · metrics ${running.metricsUrl}` : ""}`,
      );
      await new Promise<void>((resolve) => {
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      });
      log.info("stopping: storing what is queued");
      await running.stop();
    });

  common(ingest.command("migrate").description("create or upgrade the tables (also done at every start)"))
    .option("--timescale <mode>", "auto | on | off (only when the tables are created)", "auto")
    .action(async (opts: CommonOpts & { timescale: string }) => {
      const client = new pg.Client({ connectionString: database(opts) });
      await client.connect();
      try {
        const r = await migrate(client, checkSchemaName(opts.schema), timescale(opts.timescale));
        process.stdout.write(
          r.applied.length === 0 ? `schema '${opts.schema}' is up to date (version ${r.to})\n` : `schema '${opts.schema}': version ${r.from} → ${r.to}${r.timescale ? " (TimescaleDB)" : ""}\n${r.applied.map((a) => `  applied ${a}\n`).join("")}`,
        );
      } finally {
        await client.end();
      }
    });

  common(ingest.command("report").description("per gateway: online since, last reading, received, open and final gaps, duplicates, replays"))
    .option("--json", "as JSON")
    .action(async (opts: CommonOpts & { json?: boolean }) => {
      const { report, formatReport } = await import("../ingest/report.js");
      const pool = new pg.Pool({ connectionString: database(opts), max: 1 });
      try {
        const r = await report(pool, checkSchemaName(opts.schema));
        if (opts.json) printJson({ gateways: r });
        else process.stdout.write(formatReport(r));
        if (r.some((g) => g.streams.some((s) => s.open > 0))) process.exitCode = 1;
      } finally {
        await pool.end();
      }
    });
}
