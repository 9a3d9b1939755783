/**
 * The gap keeper: every `interval` it reads each ledger's open gaps (numbers between the lowest
 * and highest received that never came and that no gateway answer settled), remembers since
 * when each has been open, and for a gap open longer than `replayAfter` on a gateway that is
 * online it sends a `replay` command (docs/mqtt-contract.md "Replay") with the missing range:
 * at most `maxAsks` times per gap, `retry` apart. The gateway's answer is stored by the writer
 * with the results (its `missing` ranges become final gaps with the gateway's reason); the
 * readings it resends arrive as ordinary telemetry and close the gap.
 *
 * One process of a group does this: the one holding a PostgreSQL advisory lock (taken over by
 * another when it dies, since the lock goes with its connection).
 */
import type pg from "pg";
import type { Logger } from "../model/logger.js";
import type { Stream } from "./message.js";
import { withTimeout } from "../model/timeout.js";
import { openGaps, parseMultirange } from "./ranges.js";
import { withClient } from "./writer.js";

export interface GapKeeperOptions {
  schema: string;
  root: string;
  intervalMs: number;
  replayAfterMs: number;
  retryMs: number;
  maxAsks: number;
  /** At most this many replay commands per round (a storm after a broker outage is spread out). */
  maxPerRound: number;
  /** Publishes a command to `<root>/<site>/<gateway>/cmd/outbox`. */
  send: (topic: string, payload: string) => Promise<void>;
  log: Logger;
  onAsk?: () => void;
}

/** The replay command's limit on one range (the gateway refuses larger ones). */
export const REPLAY_MAX_SPAN = 1_000_000;

interface Tracked {
  lo: number;
  hi: number;
  seenAt: number;
  asked: number;
  askedAt: number | null;
}

export class GapKeeper {
  private timer: NodeJS.Timeout | null = null;
  private lockClient: pg.PoolClient | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  leader = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly opts: GapKeeperOptions,
  ) {}

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.running = this.round()
        .then(() => undefined)
        .catch((err: Error) => this.opts.log.warn({ err: err.message }, `gap check failed: ${err.message}`))
        .finally(() => {
          this.running = null;
          if (!this.stopped) this.timer = setTimeout(tick, this.opts.intervalMs);
        });
    };
    this.timer = setTimeout(tick, Math.min(this.opts.intervalMs, 1000));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.running) await this.running;
    const c = this.lockClient;
    this.lockClient = null;
    if (c) {
      await c.query("SELECT pg_advisory_unlock_all()").catch(() => undefined);
      c.release();
    }
  }

  /** One round; public for tests. Returns how many replay commands were sent. */
  async round(now = Date.now()): Promise<number> {
    if (!(await this.lead())) return 0;
    const s = this.opts.schema;
    const r = await this.pool.query<{ gateway_id: number; site: string; gateway: string; state: string | null; stream: Stream; received: string; settled: string }>(
      `SELECT l.gateway_id, g.site, g.gateway, g.state, l.stream, l.received::text AS received, l.settled::text AS settled
         FROM ${s}.ledger l JOIN ${s}.gateways g ON g.id = l.gateway_id
        WHERE int8multirange(range_merge(l.received)) - l.received - l.settled <> '{}'::int8multirange
        ORDER BY l.gateway_id, l.stream`,
    );
    const tracked = await this.pool.query<{ gateway_id: number; stream: Stream; lo: string; hi: string; seen_at: Date; asked: number; asked_at: Date | null }>(
      `SELECT gateway_id, stream, lo, hi, seen_at, asked, asked_at FROM ${s}.gaps ORDER BY gateway_id, stream, lo`,
    );
    const before = new Map<string, Tracked[]>();
    for (const t of tracked.rows) {
      const k = `${t.gateway_id}/${t.stream}`;
      if (!before.has(k)) before.set(k, []);
      before.get(k)!.push({ lo: Number(t.lo), hi: Number(t.hi), seenAt: t.seen_at.getTime(), asked: t.asked, askedAt: t.asked_at?.getTime() ?? null });
    }
    // The gaps as they are now, each with the age and asks of the gap it was (one that shrank
    // because part of it arrived keeps them); then the commands, sent before anything is written
    // (a send that fails is asked again next round).
    const rows: Array<{ gatewayId: number; stream: Stream; gap: Tracked }> = [];
    const asks: Array<{ gatewayId: number; stream: Stream; site: string; gateway: string; gap: Tracked; lo: number; hi: number }> = [];
    for (const row of r.rows) {
      const gaps = openGaps(parseMultirange(row.received), parseMultirange(row.settled)).slice(0, MAX_GAPS_PER_STREAM);
      const old = before.get(`${row.gateway_id}/${row.stream}`) ?? [];
      let j = 0;
      for (const [lo, hi] of gaps) {
        while (j < old.length && old[j]!.hi < lo) j++;
        let seenAt = now;
        let asked = 0;
        let askedAt: number | null = null;
        for (let k = j; k < old.length && old[k]!.lo <= hi; k++) {
          const t = old[k]!;
          seenAt = Math.min(seenAt, t.seenAt);
          asked = Math.max(asked, t.asked);
          if (t.askedAt !== null && (askedAt === null || t.askedAt > askedAt)) askedAt = t.askedAt;
        }
        const gap: Tracked = { lo, hi, seenAt, asked, askedAt };
        rows.push({ gatewayId: row.gateway_id, stream: row.stream, gap });
        const due = now - seenAt >= this.opts.replayAfterMs && asked < this.opts.maxAsks && (askedAt === null || now - askedAt >= this.opts.retryMs);
        // One command per gap per round, for its first REPLAY_MAX_SPAN numbers: the rest is asked
        // once the answer settled or filled the start (a gateway's "not-issued" settles the whole
        // gap above its last number at once).
        if (due && row.state === "online" && asks.length < this.opts.maxPerRound) {
          asks.push({ gatewayId: row.gateway_id, stream: row.stream, site: row.site, gateway: row.gateway, gap, lo, hi: Math.min(hi, lo + REPLAY_MAX_SPAN - 1) });
        }
      }
    }
    const sent: Array<{ id: string; gatewayId: number; stream: Stream; lo: number; hi: number }> = [];
    for (const a of asks) {
      const id = replayId(a.gatewayId, a.stream, a.lo, a.hi, a.gap.asked + 1);
      const payload = JSON.stringify({ id, action: "replay", args: { stream: a.stream, from: a.lo, to: a.hi } });
      try {
        await withTimeout(this.opts.send(`${this.opts.root}/${a.site}/${a.gateway}/cmd/outbox`, payload), SEND_TIMEOUT_MS, () => new Error(`the broker did not take the replay command within ${SEND_TIMEOUT_MS / 1000} s`));
      } catch (err) {
        this.opts.log.warn({ gateway: a.gateway, err: (err as Error).message }, `could not ask ${a.site}/${a.gateway} for a replay: ${(err as Error).message}`);
        break;
      }
      a.gap.asked++;
      a.gap.askedAt = now;
      sent.push({ id, gatewayId: a.gatewayId, stream: a.stream, lo: a.lo, hi: a.hi });
      this.opts.onAsk?.();
      this.opts.log.info({ gateway: a.gateway, stream: a.stream, from: a.lo, to: a.hi }, `asked ${a.site}/${a.gateway} to replay ${a.stream} ${a.lo}..${a.hi}`);
    }
    await withClient(this.pool, async (client) => {
      try {
        await client.query("BEGIN");
        await client.query(`DELETE FROM ${s}.gaps`);
        for (let i = 0; i < rows.length; i += 5000) {
          const part = rows.slice(i, i + 5000);
          await client.query(
            `INSERT INTO ${s}.gaps (gateway_id, stream, lo, hi, seen_at, asked, asked_at) SELECT * FROM unnest($1::int[], $2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[], $6::int[], $7::timestamptz[])`,
            [
              part.map((x) => x.gatewayId),
              part.map((x) => x.stream),
              part.map((x) => x.gap.lo),
              part.map((x) => x.gap.hi),
              part.map((x) => new Date(x.gap.seenAt).toISOString()),
              part.map((x) => x.gap.asked),
              part.map((x) => (x.gap.askedAt === null ? null : new Date(x.gap.askedAt).toISOString())),
            ],
          );
        }
        for (const x of sent) {
          await client.query(`INSERT INTO ${s}.replays (gateway_id, id, stream, lo, hi) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (gateway_id, id) DO UPDATE SET asked_at = now()`, [x.gatewayId, x.id, x.stream, x.lo, x.hi]);
        }
        await client.query("COMMIT");
      } catch (err) {
        await client.query("ROLLBACK").catch(() => undefined);
        throw err;
      }
    });
    return sent.length;
  }

  /** Holds (or takes) the group's gap-keeper lock on a connection of its own. */
  private async lead(): Promise<boolean> {
    if (this.leader && this.lockClient) return true;
    if (!this.lockClient) {
      const c = await this.pool.connect();
      // The lock lives with this connection: when it breaks, so does the leadership.
      c.on("error", () => {
        if (this.lockClient !== c) return;
        this.lockClient = null;
        this.leader = false;
        c.release(true);
      });
      this.lockClient = c;
    }
    const r = await this.lockClient.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtext($1)) AS ok", [`edge-ingest-gaps:${this.opts.schema}`]);
    this.leader = r.rows[0]!.ok;
    if (this.leader) this.opts.log.info("this process keeps the gaps (asks gateways for replays)");
    return this.leader;
  }
}

/** A replay command's id: the gateway's number in the database makes it unique across gateways. */
export function replayId(gatewayId: number, stream: Stream, lo: number, hi: number, attempt: number): string {
  return `replay-${gatewayId}-${stream[0]}-${lo}-${hi}-${attempt}`;
}

/** Past this many open gaps in one stream, the rest wait for a later round (a gateway skipping every other number). */
const MAX_GAPS_PER_STREAM = 10_000;
const SEND_TIMEOUT_MS = 10_000;
