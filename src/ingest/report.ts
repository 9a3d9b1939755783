/**
 * `edge-agent ingest report`: per gateway, from the database — online/offline since when, last
 * reading, what was received per stream, open gaps, final gaps (with the gateway's reasons),
 * duplicates, quarantined, replays asked and answered.
 */
import type pg from "pg";
import type { Stream } from "./message.js";
import { count, openGaps, parseMultirange, type Range } from "./ranges.js";

export interface StreamReport {
  stream: Stream;
  first: number | null;
  last: number | null;
  received: number;
  messages: number;
  duplicates: number;
  quarantined: number;
  openGaps: Range[];
  open: number;
  finalGaps: Array<{ from: number; to: number; reason: string }>;
  final: number;
}

export interface GatewayReport {
  site: string;
  gateway: string;
  state: string | null;
  since: string | null;
  version: string | null;
  lastReading: string | null;
  streams: StreamReport[];
  replays: { asked: number; answered: number };
}

export async function report(pool: pg.Pool, schema: string): Promise<GatewayReport[]> {
  const s = schema;
  const gw = await pool.query<{ id: number; site: string; gateway: string; state: string | null; state_at: Date | null; version: string | null; last_reading: Date | null }>(
    `SELECT id, site, gateway, state, state_at, version, last_reading FROM ${s}.gateways ORDER BY site, gateway`,
  );
  const led = await pool.query<{ gateway_id: number; stream: Stream; received: string; settled: string; readings: string; messages: string; duplicates: string; quarantined: string }>(
    `SELECT gateway_id, stream, received::text AS received, settled::text AS settled, readings, messages, duplicates, quarantined FROM ${s}.ledger ORDER BY gateway_id, stream`,
  );
  const fin = await pool.query<{ gateway_id: number; stream: Stream; lo: string; hi: string; reason: string }>(`SELECT gateway_id, stream, lo, hi, reason FROM ${s}.final_gaps ORDER BY gateway_id, stream, lo`);
  const rep = await pool.query<{ gateway_id: number; asked: string; answered: string }>(
    `SELECT gateway_id, count(*) AS asked, count(answered_at) AS answered FROM ${s}.replays GROUP BY gateway_id`,
  );
  return gw.rows.map((g) => {
    const streams: StreamReport[] = led.rows
      .filter((l) => l.gateway_id === g.id)
      .map((l) => {
        const received = parseMultirange(l.received);
        const open = openGaps(received, parseMultirange(l.settled));
        const finals = fin.rows.filter((f) => f.gateway_id === g.id && f.stream === l.stream).map((f) => ({ from: Number(f.lo), to: Number(f.hi), reason: f.reason }));
        return {
          stream: l.stream,
          first: received[0]?.[0] ?? null,
          last: received[received.length - 1]?.[1] ?? null,
          received: Number(l.readings),
          messages: Number(l.messages),
          duplicates: Number(l.duplicates),
          quarantined: Number(l.quarantined),
          openGaps: open,
          open: count(open),
          finalGaps: finals,
          final: finals.reduce((n, f) => n + f.to - f.from + 1, 0),
        };
      });
    const r = rep.rows.find((x) => x.gateway_id === g.id);
    return {
      site: g.site,
      gateway: g.gateway,
      state: g.state,
      since: g.state_at?.toISOString() ?? null,
      version: g.version,
      lastReading: g.last_reading?.toISOString() ?? null,
      streams,
      replays: { asked: Number(r?.asked ?? 0), answered: Number(r?.answered ?? 0) },
    };
  });
}

/** Text a gateway or the database supplied, made safe for a terminal (no control characters, no escape sequences). */
const clean = (t: string | null) => (t === null ? null : t.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?"));

const ranges = (rs: Range[]) => rs.slice(0, 8).map(([a, b]) => (a === b ? `${a}` : `${a}..${b}`)).join(", ") + (rs.length > 8 ? ", …" : "");

export function formatReport(gateways: GatewayReport[]): string {
  if (gateways.length === 0) return "no gateway has sent anything yet\n";
  const lines: string[] = [];
  for (const g of gateways) {
    const state = g.state ? `${clean(g.state)}${g.since ? ` since ${g.since}` : ""}` : "status unknown";
    lines.push(`${g.site}/${g.gateway}: ${state}${g.version ? ` · ${clean(g.version)}` : ""} · last reading ${g.lastReading ?? "never"} · replays asked ${g.replays.asked}, answered ${g.replays.answered}`);
    for (const st of g.streams) {
      const span = st.first === null ? "nothing" : `seq ${st.first}..${st.last}`;
      const open = st.open === 0 ? "no open gaps" : `${st.open} missing in ${st.openGaps.length} open gaps: ${ranges(st.openGaps)}`;
      const fin = st.final === 0 ? "" : ` · ${st.final} final: ${st.finalGaps.slice(0, 8).map((f) => `${f.from === f.to ? f.from : `${f.from}..${f.to}`} (${clean(f.reason)})`).join(", ")}`;
      lines.push(
        `  ${st.stream}: ${span} · ${st.received} stored in ${st.messages} messages · ${open}${fin} · ${st.duplicates} duplicates${st.quarantined ? ` · ${st.quarantined} quarantined` : ""}`,
      );
    }
  }
  return `${lines.join("\n")}\n`;
}
