/**
 * `edge-agent ingest`: the platform's receiver (docs/ingest.md). Composes the parts — a source
 * (MQTT shared subscription, or a RabbitMQ quorum queue over AMQP), the batcher (group commit,
 * acknowledge after commit), the writer (PostgreSQL, ledger in the same transaction), the gap
 * keeper (replay commands) and the metrics endpoint — each with start/stop.
 */
import pg from "pg";
import type { Logger } from "../model/logger.js";
import { AmqpSource } from "./amqp-source.js";
import { Batcher } from "./batcher.js";
import { GapKeeper } from "./gaps.js";
import { IngestMetrics } from "./metrics.js";
import { MqttSource } from "./mqtt-source.js";
import { migrate } from "./schema.js";
import { Writer } from "./writer.js";

export interface IngestOptions {
  database: string;
  schema: string;
  timescale: "auto" | "on" | "off";
  root: string;
  /** MQTT: broker URL, shared-subscription group, client id stem, connections. */
  mqtt?: { url: string; group: string; clientId: string; connections: number; sessionExpiry: number; username?: string; password?: string };
  /** RabbitMQ: AMQP URLs, queue, prefetch. */
  amqp?: { urls: string[]; queue: string; prefetch: number };
  batch: { maxReadings: number; lingerMs: number };
  dictionaryWaitMs: number;
  /** null: never ask gateways for replays. */
  replay: { afterMs: number; retryMs: number; maxAsks: number; intervalMs: number } | null;
  metrics?: string;
  log: Logger;
}

export interface RunningIngest {
  metricsUrl: string | null;
  writer: Writer;
  keeper: GapKeeper | null;
  stop(): Promise<void>;
}

export async function startIngest(o: IngestOptions): Promise<RunningIngest> {
  // Timeouts so a database host that stops answering (half-open TCP) fails the batch — retried,
  // nothing acknowledged — instead of hanging the ingest and its stop.
  const pool = new pg.Pool({
    connectionString: o.database,
    max: 4,
    application_name: "edge-agent ingest",
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
    statement_timeout: 120_000,
    query_timeout: 130_000,
    idle_in_transaction_session_timeout: 300_000,
  });
  pool.on("error", (err) => o.log.warn({ err: err.message }, `database connection: ${err.message}`));
  const c = await pool.connect().catch((err: Error) => {
    throw new Error(`cannot reach the database (${err.message}); check --database`);
  });
  let timescale = false;
  try {
    const m = await migrate(c, o.schema, o.timescale);
    timescale = m.timescale;
    if (m.applied.length) o.log.info({ applied: m.applied }, `database schema '${o.schema}' migrated to version ${m.to}${m.timescale ? " (TimescaleDB)" : ""}`);
  } finally {
    c.release();
  }
  const metrics = new IngestMetrics();
  const writer = new Writer(pool, o.schema, o.log, !timescale);
  const maxMessages = o.mqtt ? o.mqtt.connections : o.amqp!.prefetch;
  const batcher = new Batcher(writer, { root: o.root, maxReadings: o.batch.maxReadings, maxBytes: 32 << 20, maxMessages, lingerMs: o.batch.lingerMs, dictionaryWaitMs: o.dictionaryWaitMs, log: o.log, metrics });
  const onMessage = (m: Parameters<Batcher["add"]>[0]) => batcher.add(m);
  const source = o.mqtt
    ? new MqttSource({ ...o.mqtt, root: o.root, log: o.log, onMessage })
    : new AmqpSource({ ...o.amqp!, root: o.root, log: o.log, onMessage });
  let metricsUrl: string | null = null;
  if (o.metrics) metricsUrl = await metrics.serve(o.metrics, () => batcher.lagMs());
  try {
    await source.start();
  } catch (err) {
    await metrics.stop();
    await pool.end();
    throw err;
  }
  const keeper = o.replay
    ? new GapKeeper(pool, {
        schema: o.schema,
        root: o.root,
        intervalMs: o.replay.intervalMs,
        replayAfterMs: o.replay.afterMs,
        retryMs: o.replay.retryMs,
        maxAsks: o.replay.maxAsks,
        maxPerRound: 100,
        send: (topic, payload) => source.publish(topic, payload),
        log: o.log,
        onAsk: () => metrics.replays.inc(),
      })
    : null;
  keeper?.start();
  return {
    metricsUrl,
    writer,
    keeper,
    async stop() {
      await keeper?.stop();
      // What is queued is stored and acknowledged, then the connections close (MQTT: the PUBACKs go first).
      await batcher.stop();
      await source.stop();
      await metrics.stop();
      await pool.end();
    },
  };
}
