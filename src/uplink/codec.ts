/**
 * Telemetry payload v1:
 *   {"v":1,"gw":"<gateway>","seq":[first,last],"r":[[point,ts,value,quality?],…]}
 * The readings carry the consecutive sequence numbers first..last, in order. Quality is left out
 * when it is "good".
 */
import type { Quality, StoredReading, Value } from "../model/reading.js";
import { QUALITIES } from "../model/reading.js";

export const PAYLOAD_VERSION = 1;

export type WireReading = [point: string, ts: number, value: Value] | [point: string, ts: number, value: Value, quality: Quality];

export interface TelemetryMessage {
  v: 1;
  gw: string;
  seq: [number, number];
  r: WireReading[];
}

export interface EncodedBatch {
  /** v1 JSON text, or v2 compact bytes. */
  payload: string | Buffer;
  /** How many of the given readings the payload carries (a prefix of them). */
  count: number;
  first: number;
  last: number;
}

function wire(r: StoredReading): WireReading {
  return r.quality === "good" ? [r.point, r.ts, r.value] : [r.point, r.ts, r.value, r.quality];
}

/**
 * Encodes the longest prefix of `rows` that has consecutive sequence numbers and fits in
 * `maxBytes` (at least one reading, whatever its size). Returns null for an empty list.
 */
export function encodeTelemetry(gateway: string, rows: readonly StoredReading[], maxBytes: number): (EncodedBatch & { payload: string }) | null {
  if (rows.length === 0) return null;
  const first = rows[0]!.seq;
  const head = `{"v":${PAYLOAD_VERSION},"gw":${JSON.stringify(gateway)},"seq":[${first},`;
  const parts: string[] = [];
  let bytes = head.length + 32;
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    if (row.seq !== first + i) break;
    const part = JSON.stringify(wire(row));
    const size = Buffer.byteLength(part) + 1;
    if (parts.length > 0 && bytes + size > maxBytes) break;
    parts.push(part);
    bytes += size;
  }
  const last = first + parts.length - 1;
  return { payload: `${head}${last}],"r":[${parts.join(",")}]}`, count: parts.length, first, last };
}

/** Parses and checks a telemetry payload; returns a reason when it breaks the contract. */
export function decodeTelemetry(payload: Buffer | string): { ok: true; msg: TelemetryMessage } | { ok: false; reason: string } {
  let data: unknown;
  try {
    data = JSON.parse(payload.toString());
  } catch {
    return { ok: false, reason: "not JSON" };
  }
  if (typeof data !== "object" || data === null) return { ok: false, reason: "not an object" };
  const m = data as Record<string, unknown>;
  if (m.v !== PAYLOAD_VERSION) return { ok: false, reason: `unsupported version ${JSON.stringify(m.v)}` };
  if (typeof m.gw !== "string") return { ok: false, reason: "gw missing" };
  const seq = m.seq;
  if (!Array.isArray(seq) || seq.length !== 2 || !seq.every(Number.isSafeInteger) || seq[1] < seq[0]) {
    return { ok: false, reason: "seq must be [first,last]" };
  }
  if (!Array.isArray(m.r)) return { ok: false, reason: "r missing" };
  if (m.r.length !== seq[1] - seq[0] + 1) {
    return { ok: false, reason: `seq ${seq[0]}..${seq[1]} does not match ${m.r.length} readings` };
  }
  for (const r of m.r) {
    if (!Array.isArray(r) || r.length < 3 || r.length > 4 || typeof r[0] !== "string" || typeof r[1] !== "number") {
      return { ok: false, reason: "malformed reading" };
    }
    if (r.length === 4 && !QUALITIES.includes(r[3])) return { ok: false, reason: `unknown quality ${JSON.stringify(r[3])}` };
  }
  return { ok: true, msg: data as TelemetryMessage };
}

/**
 * A command result is one message of its own on the result topic (the platform waits for it by
 * id): `{"v":1,"gw":…,"seq":N,"id":…,"target":…,"status":…,"reason"?,"state"?}`. The row's value
 * holds the result as JSON; seq numbers the results stream.
 */
export function encodeResult(gateway: string, rows: readonly StoredReading[]): EncodedBatch | null {
  const row = rows[0];
  if (!row) return null;
  let result: Record<string, unknown>;
  try {
    result = JSON.parse(String(row.value)) as Record<string, unknown>;
  } catch {
    result = { status: "error", reason: "unreadable stored result" };
  }
  const payload = JSON.stringify({ v: PAYLOAD_VERSION, gw: gateway, seq: row.seq, ...result });
  return { payload, count: 1, first: row.seq, last: row.seq };
}
