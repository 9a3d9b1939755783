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
import { type Range, openGaps, parseMultirange } from "./ranges.js";

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

  /** One round; public for tests. Returns how many replays were asked. */
  async round(now = Date.now()): Promise<number> {
    if (!(await this.lead())) return 0;
    const s = this.opts.schema;
    const r = await this.pool.query<{ gateway_id: number; site: string; gateway: string; state: string | null; stream: Stream; received: string; settled: string }>(
      `SELECT l.gateway_id, g.site, g.gateway, g.state, l.stream, l.received::text AS received, l.settled::text AS settled
         FROM ${s}.ledger l JOIN ${s}.gateways g ON g.id = l.gateway_id
        WHERE int8multirange(range_merge(l.received)) - l.received - l.settled <> '{}'::int8multirange`,
    );
    const tracked = await this.pool.query<{ gateway_id: number; stream: Stream; lo: string; hi: string; seen_at: Date; asked: number; asked_at: Date | null }>(
      `SELECT gateway_id, stream, lo, hi, seen_at, asked, asked_at FROM ${s}.gaps`,
    );
    const before = new Map<string, Tracked[]>();
    for (const t of tracked.rows) {
      const k = `${t.gateway_id}/${t.stream}`;
      if (!before.has(k)) before.set(k, []);
      before.get(k)!.push({ lo: Number(t.lo), hi: Number(t.hi), seenAt: t.seen_at.getTime(), asked: t.asked, askedAt: t.asked_at?.getTime() ?? null });
    }
    let asked = 0;
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN");
      await client.query(`DELETE FROM ${s}.gaps`);
      for (const row of r.rows) {
        const gaps = openGaps(parseMultirange(row.received), parseMultirange(row.settled));
        const old = before.get(`${row.gateway_id}/${row.stream}`) ?? [];
        for (const [lo, hi] of gaps) {
          // A gap that shrank (part of it arrived) keeps the age and asks of the gap it was.
          const parents = old.filter((t) => t.lo <= hi && t.hi >= lo);
          const g: Tracked = {
            lo,
            hi,
            seenAt: parents.length ? Math.min(...parents.map((t) => t.seenAt)) : now,
            asked: parents.length ? Math.max(...parents.map((t) => t.asked)) : 0,
            askedAt: parents.reduce<number | null>((m, t) => (t.askedAt !== null && (m === null || t.askedAt > m) ? t.askedAt : m), null),
          };
          const due = now - g.seenAt >= this.opts.replayAfterMs && g.asked < this.opts.maxAsks && (g.askedAt === null || now - g.askedAt >= this.opts.retryMs);
          if (due && row.state === "online" && asked < this.opts.maxPerRound) {
            for (const [a, b] of chunks([lo, hi])) {
              const id = `replay-${row.stream}-${a}-${b}-${g.asked + 1}`;
              const payload = JSON.stringify({ id, action: "replay", args: { stream: row.stream, from: a, to: b } });
              await this.opts.send(`${this.opts.root}/${row.site}/${row.gateway}/cmd/outbox`, payload);
              await client.query(`INSERT INTO ${s}.replays (id, gateway_id, stream, lo, hi) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET asked_at = now()`, [id, row.gateway_id, row.stream, a, b]);
              this.opts.onAsk?.();
              this.opts.log.info({ gateway: row.gateway, stream: row.stream, from: a, to: b }, `asked ${row.site}/${row.gateway} to replay ${row.stream} ${a}..${b}`);
            }
            g.asked++;
            g.askedAt = now;
            asked++;
          }
          await client.query(`INSERT INTO ${s}.gaps (gateway_id, stream, lo, hi, seen_at, asked, asked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`, [
            row.gateway_id,
            row.stream,
            lo,
            hi,
            new Date(g.seenAt).toISOString(),
            g.asked,
            g.askedAt === null ? null : new Date(g.askedAt).toISOString(),
          ]);
        }
      }
      await client.query("COMMIT");
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
    return asked;
  }

  /** Holds (or takes) the group's gap-keeper lock on a connection of its own. */
  private async lead(): Promise<boolean> {
    if (this.leader && this.lockClient) return true;
    if (!this.lockClient) this.lockClient = await this.pool.connect();
    const r = await this.lockClient.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtext($1)) AS ok", [`edge-ingest-gaps:${this.opts.schema}`]);
    this.leader = r.rows[0]!.ok;
    if (this.leader) this.opts.log.info("this process keeps the gaps (asks gateways for replays)");
    return this.leader;
  }
}

function chunks([lo, hi]: Range): Range[] {
  const out: Range[] = [];
  for (let a = lo; a <= hi; a += REPLAY_MAX_SPAN) out.push([a, Math.min(hi, a + REPLAY_MAX_SPAN - 1)]);
  return out;
}
