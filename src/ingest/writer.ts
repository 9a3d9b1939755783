/**
 * Writes a batch of decoded messages to PostgreSQL in ONE transaction together with the ledger,
 * so a message's rows and the record that its sequence numbers arrived commit or vanish together
 * (docs/ingest.md "Exactly once"). The caller acknowledges the messages only after `write`
 * resolves. Inside the transaction the batch's ledger rows are locked (in key order: two
 * processes never deadlock on them), each message's numbers are checked against what was
 * received, and only the new ones are stored: readings by COPY, events and results by INSERT.
 *
 * A batch PostgreSQL refuses for its data (SQLSTATE classes 22 and 23) is split in halves and
 * retried until the message at fault is alone; that one is quarantined with the server's reason,
 * so one bad message never blocks the queue. Other errors (connection lost, disk full) propagate:
 * the caller retries the same batch later, nothing acknowledged.
 */
import type pg from "pg";
import copyStreams from "pg-copy-streams";
import type { Logger } from "../model/logger.js";
import { type Decoded, type InReading, kindOf, type Incoming, type Stream, TS_MAX, TS_MIN, type Where } from "./message.js";
import { count, formatMultirange, parseMultirange, type Range, subtract, union } from "./ranges.js";
import { ensurePartition, monthOf } from "./schema.js";

export interface Item {
  msg: Incoming;
  decoded: Decoded;
}

export interface BatchStats {
  messages: number;
  readings: number;
  duplicates: number;
  quarantined: number;
  /** Readings in messages the broker marked as redelivered. */
  redelivered: number;
  commitMs: number;
}

const QUALITY_CODE = { good: 0, bad: 1, uncertain: 2 } as const;
const POINT_NAME_MAX = 256;
const TEXT_MAX = 65_536;
const QUARANTINE_KEEP = 65_536;

type Kind = "number" | "boolean" | "text";

interface LedgerRow {
  key: string;
  gatewayId: number;
  stream: Stream;
  received: Range[];
  settled: Range[];
  readings: number;
  messages: number;
  duplicates: number;
  quarantined: number;
  changed: boolean;
  settledChanged: boolean;
}

interface QuarantineRow {
  topic: string;
  gatewayId: number | null;
  seq: number | null;
  reason: string;
  payload: Buffer;
}

/**
 * An error of the data — the batch can be split and the culprit quarantined — not of the server:
 * SQLSTATE class 22 (data exception), 23 (integrity), 54 (a program limit: a row or statement too
 * large), or an error of this process building the batch (RangeError: a string past V8's limit).
 * Everything else (connection lost, server shutting down, disk full, a dropped table) is retried
 * with the same batch, nothing acknowledged.
 */
export function isDataError(err: unknown): boolean {
  if (err instanceof RangeError) return true;
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && /^(22|23|54)[0-9A-Z]{3}$/.test(code);
}

function isRetryable(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === "40001" || code === "40P01";
}

const ledgerKey = (gatewayId: number, stream: string) => `${gatewayId}\u0000${stream}`;
const whereKey = (w: Where) => `${w.site}\u0000${w.gateway}`;

function copyText(s: string): string {
  return s.replace(/[\\\n\r\t]/g, (c) => (c === "\\" ? "\\\\" : c === "\n" ? "\\n" : c === "\r" ? "\\r" : "\\t"));
}

function copyNumber(n: number): string {
  return Object.is(n, -0) ? "-0" : String(n);
}

/** For JSON.stringify: numbers JSON cannot hold travel as strings ("NaN", "Infinity"). */
const nonFiniteAsText = (x: unknown) => (typeof x === "number" && !Number.isFinite(x) ? String(x) : x);

export class Writer {
  private readonly gateways = new Map<string, number>();
  private readonly points = new Map<number, Map<string, { id: number; kind: Kind | null }>>();
  /** Month → its partition exists (true) or its readings go to readings_other (false, asked again after an hour). */
  private readonly months = new Map<number, { ok: boolean; at: number }>();
  private readonly dicts = new Map<string, { version: number; names: Map<number, string> }>();
  private readonly dictWaiters = new Map<string, Set<() => void>>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly schema: string,
    private readonly log: Logger,
    /** false for a TimescaleDB hypertable: no partitions to create. */
    private readonly partitioned = true,
  ) {}

  /** The newest dictionary known for a gateway when it covers `version` (ids are never reused). */
  dictionary(where: Where, version: number): ReadonlyMap<number, string> | undefined {
    const d = this.dicts.get(whereKey(where));
    return d && d.version >= version ? d.names : undefined;
  }

  /** Looks the gateway's newest dictionary up in the database (another process may have stored it). */
  async loadDictionary(where: Where): Promise<void> {
    const id = await this.gatewayId(where);
    const r = await this.pool.query<{ version: number; names: Record<string, string> }>(`SELECT version, names FROM ${this.schema}.dictionaries WHERE gateway_id = $1 ORDER BY version DESC LIMIT 1`, [id]);
    const row = r.rows[0];
    if (row) this.remember(where, row.version, new Map(Object.entries(row.names).map(([k, v]) => [Number(k), v])));
  }

  /** Resolves when a dictionary for the gateway arrives or after `ms`. */
  waitDictionary(where: Where, ms: number): Promise<void> {
    const key = whereKey(where);
    return new Promise((resolve) => {
      let set = this.dictWaiters.get(key);
      if (!set) this.dictWaiters.set(key, (set = new Set()));
      const done = () => {
        clearTimeout(timer);
        set!.delete(done);
        if (set!.size === 0 && this.dictWaiters.get(key) === set) this.dictWaiters.delete(key);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
    });
  }

  private remember(where: Where, version: number, names: Map<number, string>): void {
    const key = whereKey(where);
    const have = this.dicts.get(key);
    if (!have || have.version <= version) this.dicts.set(key, { version, names });
    for (const w of [...(this.dictWaiters.get(key) ?? [])]) w();
  }

  async gatewayId(where: Where): Promise<number> {
    const key = whereKey(where);
    const have = this.gateways.get(key);
    if (have !== undefined) return have;
    const r = await this.pool.query<{ id: number }>(
      `INSERT INTO ${this.schema}.gateways (site, gateway) VALUES ($1, $2) ON CONFLICT (site, gateway) DO UPDATE SET site = EXCLUDED.site RETURNING id`,
      [where.site, where.gateway],
    );
    const id = r.rows[0]!.id;
    this.gateways.set(key, id);
    return id;
  }

  /** Point ids (created when new) and kinds for the named points of one gateway. */
  private async pointIds(gatewayId: number, wanted: Map<string, Kind | null>): Promise<Map<string, { id: number; kind: Kind | null }>> {
    let known = this.points.get(gatewayId);
    if (!known) this.points.set(gatewayId, (known = new Map()));
    const missing = [...wanted.keys()].filter((n) => !known.has(n));
    if (missing.length > 0) {
      const kinds = missing.map((n) => wanted.get(n) ?? null);
      await this.pool.query(
        `INSERT INTO ${this.schema}.points (gateway_id, name, kind) SELECT $1, n, k FROM unnest($2::text[], $3::text[]) AS u(n, k) ON CONFLICT (gateway_id, name) DO NOTHING`,
        [gatewayId, missing, kinds],
      );
      const r = await this.pool.query<{ id: number; name: string; kind: Kind | null }>(`SELECT id, name, kind FROM ${this.schema}.points WHERE gateway_id = $1 AND name = ANY($2::text[])`, [gatewayId, missing]);
      for (const row of r.rows) known.set(row.name, { id: row.id, kind: row.kind });
    }
    // A point first seen with only nulls takes the kind of its first value.
    const unkinded = [...wanted].filter(([n, k]) => k !== null && known.get(n)?.kind === null);
    if (unkinded.length > 0) {
      await this.pool.query(
        `UPDATE ${this.schema}.points p SET kind = u.k FROM unnest($2::text[], $3::text[]) AS u(n, k) WHERE p.gateway_id = $1 AND p.name = u.n AND p.kind IS NULL`,
        [gatewayId, unkinded.map(([n]) => n), unkinded.map(([, k]) => k)],
      );
      const r = await this.pool.query<{ name: string; kind: Kind | null }>(`SELECT name, kind FROM ${this.schema}.points WHERE gateway_id = $1 AND name = ANY($2::text[])`, [gatewayId, unkinded.map(([n]) => n)]);
      for (const row of r.rows) known.get(row.name)!.kind = row.kind;
    }
    return known;
  }

  /**
   * Stores the batch; resolves when it is committed (then the messages may be acknowledged).
   * Throws only for errors of the server (connection, disk): nothing of the batch is stored then.
   */
  async write(items: readonly Item[]): Promise<BatchStats> {
    const t0 = performance.now();
    const stats = await this.writeSplitting(items);
    stats.commitMs = performance.now() - t0;
    return stats;
  }

  private async writeSplitting(items: readonly Item[]): Promise<BatchStats> {
    try {
      return await this.writeOnce(items);
    } catch (err) {
      if (!isDataError(err)) throw err;
      if (items.length === 1) {
        const it = items[0]!;
        const reason = `the database refused it: ${(err as Error).message}`;
        this.log.warn({ topic: it.msg.topic, err: (err as Error).message }, "message quarantined: the database refused it");
        return this.writeOnce([{ msg: it.msg, decoded: { kind: "quarantine", reason, where: "site" in it.decoded ? (it.decoded as Where) : null, seq: null } }]);
      }
      const half = Math.ceil(items.length / 2);
      const a = await this.writeSplitting(items.slice(0, half));
      const b = await this.writeSplitting(items.slice(half));
      return sum(a, b);
    }
  }

  private async writeOnce(items: readonly Item[]): Promise<BatchStats> {
    // Before the transaction: ids of gateways and points, partitions, dictionaries — idempotent
    // and committed on their own, so a retried batch finds them.
    const ids = new Map<string, number>();
    for (const it of items) {
      const d = it.decoded;
      const where = "site" in d ? (d as Where) : d.kind === "quarantine" ? d.where : null;
      if (where && !ids.has(whereKey(where))) ids.set(whereKey(where), await this.gatewayId(where));
    }
    const idOf = (w: Where) => ids.get(whereKey(w))!;
    const wantedPoints = new Map<number, Map<string, Kind | null>>();
    const months = new Set<number>();
    for (const it of items) {
      const d = it.decoded;
      if (d.kind === "dict") {
        const names: Record<string, string> = Object.create(null) as Record<string, string>;
        for (const [k, v] of d.names) names[String(k)] = v;
        await this.pool.query(`INSERT INTO ${this.schema}.dictionaries (gateway_id, version, names) VALUES ($1, $2, $3) ON CONFLICT (gateway_id, version) DO UPDATE SET names = EXCLUDED.names`, [
          idOf(d),
          d.version,
          JSON.stringify(names),
        ]);
        this.remember(d, d.version, d.names);
      }
      if (d.kind !== "sequenced" || d.stream !== "telemetry") continue;
      let w = wantedPoints.get(idOf(d));
      if (!w) wantedPoints.set(idOf(d), (w = new Map()));
      for (const r of d.readings) {
        if (!validPointName(r.point)) continue;
        if (!w.has(r.point) || w.get(r.point) === null) w.set(r.point, kindOf(r.value));
        if (Number.isFinite(r.ts) && r.ts >= TS_MIN && r.ts <= TS_MAX) months.add(monthOf(r.ts));
      }
    }
    const pointsOf = new Map<number, Map<string, { id: number; kind: Kind | null }>>();
    for (const [gid, wanted] of wantedPoints) pointsOf.set(gid, await this.pointIds(gid, wanted));
    if (this.partitioned) {
      const now = Date.now();
      // This month and the next are always there, so the default partition never holds their rows.
      months.add(monthOf(now));
      months.add(monthOf(now) + 1);
      for (const m of months) {
        const known = this.months.get(m);
        if (known && (known.ok || now - known.at < 3_600_000)) continue;
        this.months.set(m, { ok: await withClient(this.pool, (c) => ensurePartition(c, this.schema, m)), at: now });
      }
    }
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.transaction(items, idOf, pointsOf);
      } catch (err) {
        if (!isRetryable(err) || attempt >= 5) throw err;
      }
    }
  }

  private async transaction(
    items: readonly Item[],
    idOf: (w: Where) => number,
    pointsOf: Map<number, Map<string, { id: number; kind: Kind | null }>>,
  ): Promise<BatchStats> {
    const s = this.schema;
    const stats: BatchStats = { messages: items.length, readings: 0, duplicates: 0, quarantined: 0, redelivered: 0, commitMs: 0 };
    const keys = new Map<string, { gatewayId: number; stream: Stream }>();
    const need = (gatewayId: number, stream: Stream) => keys.set(ledgerKey(gatewayId, stream), { gatewayId, stream });
    for (const { decoded: d } of items) {
      if (d.kind === "sequenced") need(idOf(d), d.stream);
      else if (d.kind === "result") {
        need(idOf(d), "results");
        const st = replayState(d.body);
        if (st) need(idOf(d), st.stream);
      }
    }
    const client = await this.pool.connect();
    const onError = () => undefined; // a connection lost mid-transaction: the query rejects, the pool drops the client
    client.on("error", onError);
    let open = false;
    let broken = false;
    try {
      await client.query("BEGIN");
      open = true;
      const sorted = [...keys.values()].sort((a, b) => a.gatewayId - b.gatewayId || (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : 0));
      const ledgers = new Map<string, LedgerRow>();
      if (sorted.length > 0) {
        const g = sorted.map((k) => k.gatewayId);
        const st = sorted.map((k) => k.stream);
        await client.query(`INSERT INTO ${s}.ledger (gateway_id, stream) SELECT * FROM unnest($1::int[], $2::text[]) ON CONFLICT DO NOTHING`, [g, st]);
        const r = await client.query<{ gateway_id: number; stream: Stream; received: string; settled: string }>(
          `SELECT l.gateway_id, l.stream, l.received::text AS received, l.settled::text AS settled FROM ${s}.ledger l
             JOIN unnest($1::int[], $2::text[]) AS u(g, s) ON l.gateway_id = u.g AND l.stream = u.s
             ORDER BY l.gateway_id, l.stream FOR UPDATE OF l`,
          [g, st],
        );
        for (const row of r.rows) {
          const key = ledgerKey(row.gateway_id, row.stream);
          ledgers.set(key, {
            key,
            gatewayId: row.gateway_id,
            stream: row.stream,
            received: parseMultirange(row.received),
            settled: parseMultirange(row.settled),
            readings: 0,
            messages: 0,
            duplicates: 0,
            quarantined: 0,
            changed: false,
            settledChanged: false,
          });
        }
      }
      const ledger = (gatewayId: number, stream: Stream) => ledgers.get(ledgerKey(gatewayId, stream))!;
      const ledgerIf = (gatewayId: number, stream: Stream): LedgerRow | undefined => ledgers.get(ledgerKey(gatewayId, stream));

      let copy = "";
      const events: { g: number[]; seq: number[]; ts: string[]; name: string[]; value: string[] } = { g: [], seq: [], ts: [], name: [], value: [] };
      const results: { g: number[]; seq: number[]; id: (string | null)[]; target: (string | null)[]; action: (string | null)[]; status: (string | null)[]; reason: (string | null)[]; ts: (string | null)[]; body: string[] } = {
        g: [], seq: [], id: [], target: [], action: [], status: [], reason: [], ts: [], body: [],
      };
      const quarantine: QuarantineRow[] = [];
      const lastReading = new Map<number, number>();
      const statuses = new Map<number, { state: string; ts: number | null; version: string | null }>();
      const replayAnswers: Array<{ gatewayId: number; id: string | null; status: string; state: ReplayState | null; body: Record<string, unknown> }> = [];

      for (const { msg, decoded: d } of items) {
        if (d.kind === "quarantine") {
          const gid = d.where ? idOf(d.where) : null;
          quarantine.push({ topic: msg.topic, gatewayId: gid, seq: d.seq, reason: d.reason, payload: msg.payload });
          stats.quarantined++;
          continue;
        }
        if (d.kind === "status") {
          const gid = idOf(d);
          const prev = statuses.get(gid);
          if (!prev || (d.ts ?? 0) >= (prev.ts ?? 0)) statuses.set(gid, d);
          continue;
        }
        if (d.kind === "result") {
          const gid = idOf(d);
          const l = ledger(gid, "results");
          l.messages++;
          const novel = subtract([[d.seq, d.seq]], l.received);
          l.received = union(l.received, [[d.seq, d.seq]]);
          l.changed = true;
          if (novel.length === 0) {
            l.duplicates++;
            stats.duplicates++;
            continue;
          }
          l.readings++;
          stats.readings++;
          const b = d.body;
          const str = (v: unknown, max = 256) => (typeof v === "string" ? v.replace(/\u0000/g, "").slice(0, max) : null);
          results.g.push(gid);
          results.seq.push(d.seq);
          results.id.push(str(b.id, 64));
          results.target.push(str(b.target, 64));
          results.action.push(str(b.action, 64));
          results.status.push(str(b.status, 32));
          results.reason.push(str(b.reason, 1024));
          results.ts.push(typeof b.ts === "number" && b.ts >= TS_MIN && b.ts <= TS_MAX ? new Date(b.ts).toISOString() : null);
          results.body.push(jsonText(b));
          if (b.target === "outbox" && b.action === "replay") replayAnswers.push({ gatewayId: gid, id: str(b.id, 64), status: str(b.status, 32) ?? "", state: replayState(b), body: b });
          continue;
        }
        if (d.kind !== "sequenced") continue; // dict (stored above), ignore
        const gid = idOf(d);
        const l = ledger(gid, d.stream);
        l.messages++;
        const span: Range = [d.first, d.last];
        const novel = subtract([span], l.received);
        const dup = d.last - d.first + 1 - count(novel);
        l.received = union(l.received, [span]);
        l.changed = true;
        l.duplicates += dup;
        stats.duplicates += dup;
        if (msg.redelivered) stats.redelivered += d.last - d.first + 1;
        if (novel.length === 0) continue;
        const isNew = (seq: number) => novel.some(([a, b]) => seq >= a && seq <= b);
        const points = d.stream === "telemetry" ? pointsOf.get(gid)! : null;
        for (let i = 0; i < d.readings.length; i++) {
          const seq = d.first + i;
          if (!isNew(seq)) continue;
          const r = d.readings[i]!;
          const bad = checkReading(r, points);
          if (bad) {
            quarantine.push({ topic: msg.topic, gatewayId: gid, seq, reason: bad, payload: Buffer.from(safeJson([r.point, r.ts, r.value, r.quality])) });
            l.quarantined++;
            stats.quarantined++;
            continue;
          }
          l.readings++;
          stats.readings++;
          const ts = new Date(r.ts).toISOString();
          if (d.stream === "telemetry") {
            const p = points!.get(r.point)!;
            const v = r.value;
            const num = typeof v === "number" ? copyNumber(v) : typeof v === "boolean" ? (v ? "1" : "0") : "\\N";
            const txt = typeof v === "string" ? copyText(v) : "\\N";
            copy += `${gid}\t${p.id}\t${ts}\t${seq}\t${num}\t${txt}\t${QUALITY_CODE[r.quality]}\n`;
            if ((lastReading.get(gid) ?? -Infinity) < r.ts) lastReading.set(gid, r.ts);
          } else {
            events.g.push(gid);
            events.seq.push(seq);
            events.ts.push(ts);
            events.name.push(r.point);
            events.value.push(jsonText(r.value));
          }
        }
      }

      if (copy.length > 0) {
        const stream = client.query(copyStreams.from(`COPY ${s}.readings (gateway_id, point_id, ts, seq, num, txt, quality) FROM STDIN`));
        await new Promise<void>((resolve, reject) => {
          stream.on("error", reject);
          stream.on("finish", () => resolve());
          stream.end(copy);
        });
      }
      if (events.g.length > 0) {
        await client.query(`INSERT INTO ${s}.events (gateway_id, seq, ts, name, value) SELECT * FROM unnest($1::int[], $2::bigint[], $3::timestamptz[], $4::text[], $5::jsonb[])`, [
          events.g, events.seq, events.ts, events.name, events.value,
        ]);
      }
      if (results.g.length > 0) {
        await client.query(
          `INSERT INTO ${s}.results (gateway_id, seq, id, target, action, status, reason, ts, body)
             SELECT * FROM unnest($1::int[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[], $9::jsonb[])`,
          [results.g, results.seq, results.id, results.target, results.action, results.status, results.reason, results.ts, results.body],
        );
      }
      for (const a of replayAnswers) await this.applyReplayAnswer(client, a, ledgerIf);
      if (quarantine.length > 0) {
        await client.query(
          `INSERT INTO ${s}.quarantine (topic, gateway_id, seq, reason, size, payload) SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::int[], $6::bytea[])`,
          [
            quarantine.map((x) => x.topic.replace(/\u0000/g, "").slice(0, 512)),
            quarantine.map((x) => x.gatewayId),
            quarantine.map((x) => x.seq),
            quarantine.map((x) => x.reason.replace(/\u0000/g, "").slice(0, 1024)),
            quarantine.map((x) => x.payload.length),
            quarantine.map((x) => x.payload.subarray(0, QUARANTINE_KEEP)),
          ],
        );
      }
      const changed = [...ledgers.values()].filter((l) => l.changed || l.settledChanged);
      if (changed.length > 0) {
        await client.query(
          `UPDATE ${s}.ledger l SET received = u.r::int8multirange, settled = u.st::int8multirange, readings = l.readings + u.n, messages = l.messages + u.m,
             duplicates = l.duplicates + u.d, quarantined = l.quarantined + u.q, last_at = now()
           FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[]) AS u(g, s, r, st, n, m, d, q)
           WHERE l.gateway_id = u.g AND l.stream = u.s`,
          [
            changed.map((l) => l.gatewayId),
            changed.map((l) => l.stream),
            changed.map((l) => formatMultirange(l.received)),
            changed.map((l) => formatMultirange(l.settled)),
            changed.map((l) => l.readings),
            changed.map((l) => l.messages),
            changed.map((l) => l.duplicates),
            changed.map((l) => l.quarantined),
          ],
        );
      }
      await client.query("COMMIT");
      open = false;
      // After the commit, outside the ledger's locks (every process writes every gateway's status:
      // locking gateway rows inside the transaction could deadlock two of them). A crash here
      // leaves a status or last-reading time behind until the next message; no reading is touched.
      if (lastReading.size > 0) {
        await client.query(
          `UPDATE ${s}.gateways g SET last_reading = greatest(g.last_reading, least(u.t, now() + interval '1 day'))
             FROM (SELECT * FROM unnest($1::int[], $2::timestamptz[]) AS x(id, t) ORDER BY id) u WHERE g.id = u.id`,
          [[...lastReading.keys()], [...lastReading.values()].map((t) => new Date(t).toISOString())],
        );
      }
      for (const [gid, st] of [...statuses].sort((a, b) => a[0] - b[0])) {
        // A status from a clock far ahead would hide every later one: such a time counts as now.
        const ts = st.ts !== null && st.ts >= TS_MIN && st.ts <= Date.now() + 86_400_000 ? new Date(st.ts).toISOString() : new Date().toISOString();
        await client.query(
          `UPDATE ${s}.gateways SET state = $2, state_at = $3, version = coalesce($4, version), status_received_at = now()
             WHERE id = $1 AND (state_at IS NULL OR state_at <= $3::timestamptz)`,
          [gid, st.state, ts, st.version],
        );
      }
      return stats;
    } catch (err) {
      if (open) await client.query("ROLLBACK").catch(() => (broken = true));
      throw err;
    } finally {
      client.off("error", onError);
      client.release(broken);
    }
  }

  /**
   * A gateway's answer to a replay: the ranges it no longer has become final gaps with its reason
   * (settled in the ledger: no longer open), in the same transaction as the answer itself. Only an
   * answer to a request this ingest sent and that is not answered yet counts, and only within the
   * range asked: a result no one asked for settles nothing. A `not-issued` answer reaching the end
   * of the request settles the whole open gap it starts (the gateway never gave those numbers: a
   * bogus high number received earlier made the gap).
   */
  private async applyReplayAnswer(
    client: pg.PoolClient,
    a: { gatewayId: number; id: string | null; status: string; state: ReplayState | null; body: Record<string, unknown> },
    ledger: (gatewayId: number, stream: Stream) => LedgerRow | undefined,
  ): Promise<void> {
    const s = this.schema;
    if (!a.id) return;
    const req = await client.query<{ stream: Stream; lo: string; hi: string }>(
      `SELECT stream, lo, hi FROM ${s}.replays WHERE gateway_id = $1 AND id = $2 AND answered_at IS NULL FOR UPDATE`,
      [a.gatewayId, a.id],
    );
    const asked = req.rows[0];
    if (!asked) return;
    await client.query(`UPDATE ${s}.replays SET answered_at = now(), status = $3, answer = $4 WHERE gateway_id = $1 AND id = $2`, [
      a.gatewayId,
      a.id,
      a.status,
      jsonText(a.body.state ?? a.body.reason ?? null),
    ]);
    if (a.status !== "ok" || !a.state || a.state.stream !== asked.stream) return;
    const l = ledger(a.gatewayId, asked.stream);
    if (!l) return;
    const lo = Number(asked.lo);
    const hi = Number(asked.hi);
    for (const m of a.state.missing) {
      const from = Math.max(m.from, lo);
      let to = Math.min(m.to, hi);
      if (from > to) continue;
      if (m.reason === "not-issued" && to === hi) {
        const above = l.received.find(([first]) => first > hi);
        if (above) to = above[0] - 1;
      }
      const open = subtract([[from, to]], union(l.received, l.settled));
      for (const [x, y] of open) {
        await client.query(`INSERT INTO ${s}.final_gaps (gateway_id, stream, lo, hi, reason) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, [a.gatewayId, asked.stream, x, y, m.reason]);
      }
      if (open.length > 0) {
        l.settled = union(l.settled, open);
        l.settledChanged = true;
      }
    }
  }
}

export interface ReplayState {
  stream: Stream;
  from: number;
  to: number;
  missing: Array<{ from: number; to: number; reason: string }>;
}

/** The `state` of a replay result, checked (a hostile gateway's answer settles nothing outside its request). */
export function replayState(body: Record<string, unknown>): ReplayState | null {
  if (body.target !== "outbox" || body.action !== "replay") return null;
  const st = body.state as Record<string, unknown> | null | undefined;
  if (typeof st !== "object" || st === null) return null;
  const stream = st.stream;
  if (stream !== "telemetry" && stream !== "events" && stream !== "results") return null;
  const from = st.from;
  const to = st.to;
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || (from as number) < 1 || (to as number) < (from as number)) return null;
  const missing: ReplayState["missing"] = [];
  if (Array.isArray(st.missing)) {
    for (const m of st.missing.slice(0, 10_000) as unknown[]) {
      if (typeof m !== "object" || m === null) continue;
      const e = m as Record<string, unknown>;
      if (!Number.isSafeInteger(e.from) || !Number.isSafeInteger(e.to) || typeof e.reason !== "string") continue;
      const lo = Math.max(e.from as number, from as number);
      const hi = Math.min(e.to as number, to as number);
      if (lo <= hi) missing.push({ from: lo, to: hi, reason: e.reason.replace(/\u0000/g, "").slice(0, 64) });
    }
  }
  return { stream, from: from as number, to: to as number, missing };
}

function validPointName(p: string): boolean {
  return p.length > 0 && p.length <= POINT_NAME_MAX && !p.includes("\u0000");
}

/** Why a reading cannot be stored as it is, or null. */
function checkReading(r: InReading, points: Map<string, { id: number; kind: Kind | null }> | null): string | null {
  if (!validPointName(r.point)) return `point name is empty, longer than ${POINT_NAME_MAX} or holds NUL`;
  if (!Number.isFinite(r.ts) || r.ts < TS_MIN || r.ts > TS_MAX) return `time ${String(r.ts).slice(0, 30)} is outside 1970…9999`;
  const kind = kindOf(r.value);
  if (kind === null && r.value !== null) return `value of '${r.point.slice(0, 64)}' is not a number, boolean, text or null`;
  if (typeof r.value === "string" && (r.value.length > TEXT_MAX || r.value.includes("\u0000"))) return `text of '${r.point.slice(0, 64)}' is longer than ${TEXT_MAX} or holds NUL`;
  if (points) {
    const p = points.get(r.point);
    if (!p) return `point '${r.point.slice(0, 64)}' unknown`;
    if (kind !== null && p.kind !== null && p.kind !== kind) return `point '${r.point.slice(0, 64)}' carries ${p.kind} values; got ${kind === "text" ? "a text" : `a ${kind}`}`;
  }
  return null;
}

/** JSON text for jsonb: NUL (which PostgreSQL's text cannot hold) removed from strings, non-finite numbers as strings. */
function jsonText(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === "string" ? x.replace(/\u0000/g, "") : nonFiniteAsText(x))) ?? "null";
}

/** A pooled client for one job, with a listener for its connection breaking (which pg emits as an error event). */
export async function withClient<T>(pool: pg.Pool, job: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  const onError = () => undefined;
  c.on("error", onError);
  let failed = false;
  try {
    return await job(c);
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    c.off("error", onError);
    c.release(failed);
  }
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x: unknown) => nonFiniteAsText(x));
  } catch {
    return "null";
  }
}

function sum(a: BatchStats, b: BatchStats): BatchStats {
  return {
    messages: a.messages + b.messages,
    readings: a.readings + b.readings,
    duplicates: a.duplicates + b.duplicates,
    quarantined: a.quarantined + b.quarantined,
    redelivered: a.redelivered + b.redelivered,
    commitMs: 0,
  };
}
