/**
 * The monthly data budget of a gateway on a metered link (`uplink.budget`, docs/mqtt-contract.md
 * "Data budget"): the bytes the uplink puts on the wire (whole MQTT PUBLISH packets: payload,
 * topic, header) counted per calendar month (UTC), kept beside the outbox so a restart does not
 * forget them, and a forecast of the month's total from the rate so far. When the forecast is
 * over the budget the uplink saves: live readings wait longer to travel in fewer, larger (and
 * better compressed) messages. Nothing stored is ever dropped for the budget.
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import type { Reading } from "../model/reading.js";

export interface BudgetSnapshot {
  /** "2026-12" (UTC). */
  month: string;
  bytes: number;
  limit: number;
  /** The month's total at the rate so far. */
  forecast: number;
  /** Forecast over the limit: the uplink batches longer. */
  saving: boolean;
}

const HOUR = 3_600_000;

function monthOf(t: number): { key: string; start: number; end: number } {
  const d = new Date(t);
  const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  const end = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
  return { key: new Date(start).toISOString().slice(0, 7), start, end };
}

/** Packet bytes of an MQTT 5 PUBLISH at QoS 1 without properties (what the uplink sends). */
export function publishBytes(topic: string, payloadBytes: number): number {
  const remaining = 2 + Buffer.byteLength(topic) + 2 + 1 + payloadBytes;
  const lenBytes = remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4;
  return 1 + lenBytes + remaining;
}

export class DataBudget {
  private month: string;
  private bytes = 0;
  private lastSaved = 0;

  constructor(
    readonly limit: number,
    private readonly path: string | null,
    private readonly now: () => number = Date.now,
  ) {
    this.month = monthOf(now()).key;
    if (!path) return;
    try {
      const j = JSON.parse(readFileSync(path, "utf8")) as { month?: unknown; bytes?: unknown };
      if (j.month === this.month && typeof j.bytes === "number" && Number.isSafeInteger(j.bytes) && j.bytes >= 0) this.bytes = j.bytes;
    } catch {
      // none yet (or unreadable): this month starts from zero
    }
  }

  /** Bytes put on the wire now. */
  record(bytes: number): void {
    const m = monthOf(this.now()).key;
    if (m !== this.month) {
      this.month = m;
      this.bytes = 0;
    }
    this.bytes += bytes;
    if (this.now() - this.lastSaved > 60_000) this.save();
  }

  snapshot(): BudgetSnapshot {
    const now = this.now();
    const m = monthOf(now);
    const bytes = m.key === this.month ? this.bytes : 0;
    // At least an hour of history before extrapolating: the first minutes say little.
    const elapsed = Math.max(now - m.start, HOUR);
    const forecast = Math.round((bytes * (m.end - m.start)) / elapsed);
    return { month: m.key, bytes, limit: this.limit, forecast, saving: forecast > this.limit };
  }

  get saving(): boolean {
    return this.snapshot().saving;
  }

  save(): void {
    this.lastSaved = this.now();
    if (!this.path) return;
    try {
      const tmp = `${this.path}.tmp`;
      writeFileSync(tmp, JSON.stringify({ month: this.month, bytes: this.bytes }));
      renameSync(tmp, this.path);
    } catch {
      // a full disk: the count lives on in memory, saved at the next chance
    }
  }
}

/**
 * The budget's second step: while saving, a point the config marks non-critical
 * (`uplink.budget.non_critical`, globs over point ids) is **stored** at most once per `intervalMs`
 * (by reading time). Readings thinned out never get a sequence number — no gap at the receiver —
 * and are counted (`thinned` in status, a metric), never dropped silently. Critical points, and
 * every point while not saving, pass untouched.
 */
export function budgetThinner(patterns: readonly string[], intervalMs: number, saving: () => boolean): (readings: readonly Reading[]) => Reading[] {
  const res = patterns.map((p) => new RegExp(`^${p.split("*").map((x) => x.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`));
  const nonCritical = new Map<string, boolean>();
  const lastKept = new Map<string, number>();
  return (readings) => {
    if (res.length === 0 || !saving()) return readings as Reading[];
    const out: Reading[] = [];
    for (const r of readings) {
      let nc = nonCritical.get(r.point);
      if (nc === undefined) {
        nc = res.some((re) => re.test(r.point));
        if (nonCritical.size < 100_000) nonCritical.set(r.point, nc);
      }
      if (nc) {
        const last = lastKept.get(r.point);
        if (last !== undefined && r.ts - last < intervalMs && r.ts >= last) continue;
        lastKept.set(r.point, r.ts);
      }
      out.push(r);
    }
    return out;
  };
}
