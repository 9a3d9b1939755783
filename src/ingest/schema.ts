/**
 * The ingest's tables in PostgreSQL (docs/ingest.md "Schema"), created and migrated by
 * `edge-agent ingest migrate` (and at every start): one schema (default `edge`) holding
 *   gateways, points, readings (partitioned by month, or a TimescaleDB hypertable), events,
 *   results, ledger, gaps, replays, dictionaries, quarantine, and `migrations`.
 * Each step runs once, in its own transaction, under an advisory lock so two processes starting
 * together do not both run it.
 */
import type pg from "pg";
import { UserError } from "../model/errors.js";

export const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;

export function checkSchemaName(name: string): string {
  if (!SCHEMA_RE.test(name)) throw new UserError(`--schema: expected a lower-case SQL name (letters, digits, _), got '${name.slice(0, 70)}'`);
  return name;
}

/** Readings outside these months go to the `readings_other` partition (a clock gone wrong). */
export const PARTITION_PAST_MONTHS = 36;
export const PARTITION_FUTURE_MONTHS = 2;

interface Step {
  version: number;
  what: string;
  sql: (s: string, timescale: boolean) => string;
}

const STEPS: Step[] = [
  {
    version: 1,
    what: "gateways, points, readings, events, results, ledger, gaps, replays, dictionaries, quarantine",
    sql: (s, timescale) => `
      CREATE TABLE ${s}.gateways (
        id serial PRIMARY KEY,
        site text NOT NULL,
        gateway text NOT NULL,
        state text,
        state_at timestamptz,
        version text,
        status_received_at timestamptz,
        last_reading timestamptz,
        first_seen timestamptz NOT NULL DEFAULT now(),
        UNIQUE (site, gateway));
      CREATE TABLE ${s}.points (
        id serial PRIMARY KEY,
        gateway_id int NOT NULL REFERENCES ${s}.gateways (id),
        name text NOT NULL,
        kind text CHECK (kind IN ('number', 'boolean', 'text')),
        UNIQUE (gateway_id, name));
      CREATE TABLE ${s}.readings (
        gateway_id int NOT NULL,
        point_id int NOT NULL,
        ts timestamptz NOT NULL,
        seq bigint NOT NULL,
        num double precision,
        txt text,
        quality smallint NOT NULL DEFAULT 0)${timescale ? "" : " PARTITION BY RANGE (ts)"};
      ${
        timescale
          ? `SELECT create_hypertable('${s}.readings', 'ts', chunk_time_interval => interval '1 day');`
          : `CREATE TABLE ${s}.readings_other PARTITION OF ${s}.readings DEFAULT;`
      }
      CREATE INDEX ON ${s}.readings (gateway_id, point_id, ts);
      CREATE TABLE ${s}.events (
        gateway_id int NOT NULL,
        seq bigint NOT NULL,
        ts timestamptz NOT NULL,
        name text NOT NULL,
        value jsonb,
        PRIMARY KEY (gateway_id, seq));
      CREATE TABLE ${s}.results (
        gateway_id int NOT NULL,
        seq bigint NOT NULL,
        id text,
        target text,
        action text,
        status text,
        reason text,
        ts timestamptz,
        body jsonb NOT NULL,
        PRIMARY KEY (gateway_id, seq));
      CREATE INDEX ON ${s}.results (id);
      CREATE TABLE ${s}.ledger (
        gateway_id int NOT NULL REFERENCES ${s}.gateways (id),
        stream text NOT NULL CHECK (stream IN ('telemetry', 'events', 'results')),
        received int8multirange NOT NULL DEFAULT '{}',
        settled int8multirange NOT NULL DEFAULT '{}',
        readings bigint NOT NULL DEFAULT 0,
        messages bigint NOT NULL DEFAULT 0,
        duplicates bigint NOT NULL DEFAULT 0,
        quarantined bigint NOT NULL DEFAULT 0,
        last_at timestamptz,
        PRIMARY KEY (gateway_id, stream));
      CREATE TABLE ${s}.gaps (
        gateway_id int NOT NULL,
        stream text NOT NULL,
        lo bigint NOT NULL,
        hi bigint NOT NULL,
        seen_at timestamptz NOT NULL,
        asked int NOT NULL DEFAULT 0,
        asked_at timestamptz,
        PRIMARY KEY (gateway_id, stream, lo));
      CREATE TABLE ${s}.final_gaps (
        gateway_id int NOT NULL,
        stream text NOT NULL,
        lo bigint NOT NULL,
        hi bigint NOT NULL,
        reason text NOT NULL,
        at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (gateway_id, stream, lo));
      CREATE TABLE ${s}.replays (
        gateway_id int NOT NULL,
        id text NOT NULL,
        stream text NOT NULL,
        lo bigint NOT NULL,
        hi bigint NOT NULL,
        asked_at timestamptz NOT NULL DEFAULT now(),
        answered_at timestamptz,
        status text,
        answer jsonb,
        PRIMARY KEY (gateway_id, id));
      CREATE TABLE ${s}.dictionaries (
        gateway_id int NOT NULL,
        version int NOT NULL,
        names jsonb NOT NULL,
        PRIMARY KEY (gateway_id, version));
      CREATE TABLE ${s}.quarantine (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        topic text NOT NULL,
        gateway_id int,
        seq bigint,
        reason text NOT NULL,
        size int NOT NULL,
        payload bytea NOT NULL);
    `,
  },
];

export const SCHEMA_VERSION = STEPS[STEPS.length - 1]!.version;

export interface MigrateResult {
  from: number;
  to: number;
  timescale: boolean;
  applied: string[];
}

/** `timescale`: "auto" uses TimescaleDB when the server has the extension available. */
export async function migrate(client: pg.ClientBase, schema: string, timescale: "auto" | "on" | "off" = "auto"): Promise<MigrateResult> {
  checkSchemaName(schema);
  await client.query("SELECT pg_advisory_lock(hashtext($1))", [`edge-ingest-migrate:${schema}`]);
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${schema}.migrations (version int PRIMARY KEY, what text NOT NULL, at timestamptz NOT NULL DEFAULT now(), timescale boolean NOT NULL DEFAULT false)`);
    const done = await client.query<{ version: number; timescale: boolean }>(`SELECT version, timescale FROM ${schema}.migrations ORDER BY version`);
    const from = done.rows.length ? done.rows[done.rows.length - 1]!.version : 0;
    if (from > SCHEMA_VERSION) throw new UserError(`the database schema '${schema}' is at version ${from}, newer than this edge-agent knows (${SCHEMA_VERSION}): upgrade edge-agent`);
    let ts = done.rows[0]?.timescale ?? false;
    if (from === 0) {
      const avail = await client.query("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'");
      if (timescale === "on" && avail.rowCount === 0) throw new UserError("--timescale on: the server does not have the timescaledb extension");
      ts = timescale !== "off" && (avail.rowCount ?? 0) > 0;
      if (ts) await client.query("CREATE EXTENSION IF NOT EXISTS timescaledb");
    }
    const applied: string[] = [];
    for (const step of STEPS.filter((st) => st.version > from)) {
      await client.query("BEGIN");
      try {
        await client.query(step.sql(schema, ts));
        await client.query(`INSERT INTO ${schema}.migrations (version, what, timescale) VALUES ($1, $2, $3)`, [step.version, step.what, ts]);
        await client.query("COMMIT");
      } catch (err) {
        await client.query("ROLLBACK");
        throw err;
      }
      applied.push(`${step.version}: ${step.what}`);
    }
    return { from, to: SCHEMA_VERSION, timescale: ts, applied };
  } finally {
    await client.query("SELECT pg_advisory_unlock(hashtext($1))", [`edge-ingest-migrate:${schema}`]);
  }
}

/** `2026-12` for a Unix ms time (UTC months). */
export function monthOf(ms: number): number {
  const d = new Date(ms);
  return d.getUTCFullYear() * 12 + d.getUTCMonth();
}

/**
 * Creates the monthly partition for `month` (year·12 + month) when it is within the window around
 * now; false when its readings go to `readings_other` (outside the window, or the default
 * partition already holds rows of that month).
 */
export async function ensurePartition(client: pg.ClientBase, schema: string, month: number, now = Date.now()): Promise<boolean> {
  const current = monthOf(now);
  if (month < current - PARTITION_PAST_MONTHS || month > current + PARTITION_FUTURE_MONTHS) return false;
  const y = Math.floor(month / 12);
  const m = month % 12;
  const name = `readings_${y}${String(m + 1).padStart(2, "0")}`;
  const from = new Date(Date.UTC(y, m, 1)).toISOString();
  const to = new Date(Date.UTC(y, m + 1, 1)).toISOString();
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`edge-ingest-partition:${schema}`]);
    await client.query(`CREATE TABLE IF NOT EXISTS ${schema}.${name} PARTITION OF ${schema}.readings FOR VALUES FROM ('${from}') TO ('${to}')`);
    await client.query("COMMIT");
    return true;
  } catch (err) {
    await client.query("ROLLBACK");
    // 23514: the default partition already holds rows of that month; they stay there.
    if ((err as { code?: string }).code === "23514") return false;
    throw err;
  }
}
