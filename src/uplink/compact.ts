/**
 * Telemetry payload v2, "compact" (docs/mqtt-contract.md, "Compact payload (v2)"): the same
 * readings and sequence numbers as v1 in a few bytes each, for gateways on metered cellular links.
 *
 *   payload = 0xC5 0x02 flags header body
 *   flags   bit 0: the body is deflated (raw DEFLATE, RFC 1951)
 *   header  gw (text) · first seq (uvarint) · count (uvarint) · dictionary version (uvarint)
 *   body    series count (uvarint); per series: point id (uvarint), readings (uvarint);
 *           the order column: the series index of each reading in sequence order (uvarint);
 *           the base time (uvarint, ms: the smallest ts);
 *           per series: times (first − base, then the first delta, then deltas of deltas; zigzag
 *           varints); kinds (a byte per reading: kind·4 + quality); numbers (mode 0: a decimal
 *           scale d and zigzag varint deltas of value·10^d; mode 1: float64 bits XOR the previous
 *           value's, 8 bytes little-endian); texts (uvarint length + UTF-8).
 *
 * Point names are not repeated: a point is an id of the gateway's dictionary, published retained
 * under the gateway's prefix; ids are never reused, so a message decodes with its dictionary
 * version or any later one. A v2 payload starts with 0xC5, which no v1 (JSON) payload does.
 * Decoding hostile bytes gives an error value, never an exception.
 */
import { deflateRawSync, inflateRawSync } from "node:zlib";
import type { Quality, StoredReading, Value } from "../model/reading.js";
import type { TelemetryMessage, WireReading } from "./codec.js";

export const COMPACT_MAGIC = 0xc5;
export const COMPACT_VERSION = 2;
const FLAG_DEFLATE = 1;
/** Scaled integers stay below this (so their deltas and zigzag stay exact in a double). */
const SCALED_MAX = 2 ** 50;
const MAX_SCALE = 9;
/** Readings in one message, at most (a decoder refuses more). */
export const COMPACT_MAX_READINGS = 100_000;
/** A message inflates to at most this (a decoder refuses more: no deflate bomb). */
const INFLATED_MAX = 16 * 1024 * 1024;

const KIND = { number: 0, null: 1, false: 2, true: 3, text: 4 } as const;
const QUALITY_CODE: Record<Quality, number> = { good: 0, uncertain: 1, bad: 2 };
const QUALITY_NAME: readonly Quality[] = ["good", "uncertain", "bad"];

export function isCompact(payload: Uint8Array): boolean {
  return payload.length >= 2 && payload[0] === COMPACT_MAGIC;
}

// ---- writer -------------------------------------------------------------------------------------

class Writer {
  buf: Buffer;
  len = 0;

  constructor(size = 1024) {
    this.buf = Buffer.allocUnsafe(size);
  }

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  byte(b: number): void {
    this.room(1);
    this.buf[this.len++] = b;
  }

  /** An unsigned integer below 2^53, 7 bits a byte, low first. */
  uvarint(v: number): void {
    this.room(8);
    while (v >= 0x80) {
      this.buf[this.len++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.len++] = v;
  }

  /** A signed integer of magnitude below 2^52: zigzag (0, -1, 1, -2 … → 0, 1, 2, 3 …). */
  zigzag(v: number): void {
    this.uvarint(v >= 0 ? v * 2 : -v * 2 - 1);
  }

  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  text(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.uvarint(b.length);
    this.bytes(b);
  }

  done(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

const f64 = new Float64Array(1);
const u64 = new BigUint64Array(f64.buffer);

function bitsOf(x: number): bigint {
  f64[0] = x;
  return u64[0]!;
}

function numberOf(bits: bigint): number {
  u64[0] = bits;
  return f64[0]!;
}

/** The smallest decimal scale at which every value is an exact integer (and back), or -1. */
function scaleOf(values: readonly number[]): number {
  // -0 is not an integer's: the float form keeps its sign.
  if (values.some((v) => Object.is(v, -0))) return -1;
  for (let d = 0; d <= MAX_SCALE; d++) {
    const p = 10 ** d;
    let ok = true;
    for (const v of values) {
      const n = Math.round(v * p);
      if (!Number.isFinite(v) || Math.abs(n) >= SCALED_MAX || !Object.is(n / p, v)) {
        ok = false;
        break;
      }
    }
    if (ok) return d;
  }
  return -1;
}

export interface CompactDictionary {
  version: number;
  /** The point's id; assigned (and kept for good) by the dictionary if new. */
  idOf(point: string): number;
}

export interface CompactBatch {
  payload: Buffer;
  count: number;
  first: number;
  last: number;
}

/** One message of the given rows (consecutive sequence numbers, at least one). */
function encodeAll(gateway: string, rows: readonly StoredReading[], dict: CompactDictionary, deflate: boolean): Buffer {
  // Series by point, in order of first appearance.
  const seriesOf = new Map<string, number>();
  const series: Array<{ id: number; rows: StoredReading[] }> = [];
  const order: number[] = new Array<number>(rows.length);
  let base = Infinity;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    let s = seriesOf.get(r.point);
    if (s === undefined) {
      s = series.length;
      seriesOf.set(r.point, s);
      series.push({ id: dict.idOf(r.point), rows: [] });
    }
    series[s]!.rows.push(r);
    order[i] = s;
    if (r.ts < base) base = r.ts;
  }
  const body = new Writer(rows.length * 4 + 64);
  body.uvarint(series.length);
  for (const s of series) {
    body.uvarint(s.id);
    body.uvarint(s.rows.length);
  }
  if (series.length > 1) for (const s of order) body.uvarint(s);
  body.uvarint(base);
  for (const s of series) {
    // Times: first from the base, then the first delta, then deltas of deltas.
    let prev = 0;
    let prevDelta = 0;
    s.rows.forEach((r, i) => {
      if (i === 0) body.zigzag(r.ts - base);
      else {
        const delta = r.ts - prev;
        body.zigzag(i === 1 ? delta : delta - prevDelta);
        prevDelta = delta;
      }
      prev = r.ts;
    });
    const numbers: number[] = [];
    const texts: string[] = [];
    for (const r of s.rows) {
      const v = r.value;
      const kind = v === null ? KIND.null : v === true ? KIND.true : v === false ? KIND.false : typeof v === "number" ? KIND.number : KIND.text;
      if (kind === KIND.number) numbers.push(v as number);
      else if (kind === KIND.text) texts.push(String(v));
      body.byte(kind * 4 + QUALITY_CODE[r.quality]);
    }
    if (numbers.length > 0) {
      const d = scaleOf(numbers);
      if (d >= 0) {
        const p = 10 ** d;
        body.byte(0);
        body.byte(d);
        let prevN = 0;
        for (const v of numbers) {
          const n = Math.round(v * p);
          body.zigzag(n - prevN);
          prevN = n;
        }
      } else {
        body.byte(1);
        let prevBits = 0n;
        const eight = Buffer.allocUnsafe(8);
        for (const v of numbers) {
          const bits = bitsOf(v);
          eight.writeBigUInt64LE(bits ^ prevBits);
          body.bytes(eight);
          prevBits = bits;
        }
      }
    }
    for (const t of texts) body.text(t);
  }
  const raw = body.done();
  const packed = deflate ? deflateRawSync(raw) : raw;
  const useDeflate = deflate && packed.length < raw.length;
  const out = new Writer(packed.length + gateway.length + 32);
  out.byte(COMPACT_MAGIC);
  out.byte(COMPACT_VERSION);
  out.byte(useDeflate ? FLAG_DEFLATE : 0);
  out.text(gateway);
  out.uvarint(rows[0]!.seq);
  out.uvarint(rows.length);
  out.uvarint(dict.version);
  out.bytes(useDeflate ? packed : raw);
  return out.done();
}

/**
 * Encodes the longest prefix of `rows` with consecutive sequence numbers that fits `maxBytes`
 * (at least one reading). Returns null for an empty list.
 */
export function encodeCompact(gateway: string, rows: readonly StoredReading[], dict: CompactDictionary, options: { maxBytes: number; deflate?: boolean }): CompactBatch | null {
  if (rows.length === 0) return null;
  const first = rows[0]!.seq;
  let n = 1;
  while (n < rows.length && n < COMPACT_MAX_READINGS && rows[n]!.seq === first + n) n++;
  const deflate = options.deflate ?? true;
  let payload = encodeAll(gateway, rows.slice(0, n), dict, deflate);
  while (payload.length > options.maxBytes && n > 1) {
    n = Math.max(1, Math.floor((n * options.maxBytes) / payload.length * 0.9));
    payload = encodeAll(gateway, rows.slice(0, n), dict, deflate);
  }
  return { payload, count: n, first, last: first + n - 1 };
}

// ---- reader -------------------------------------------------------------------------------------

class Short extends Error {}

class Reader {
  at = 0;

  constructor(readonly buf: Buffer) {}

  byte(): number {
    if (this.at >= this.buf.length) throw new Short("ends early");
    return this.buf[this.at++]!;
  }

  uvarint(): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.byte();
      v += (b & 0x7f) * mul;
      if (b < 0x80) {
        if (v > Number.MAX_SAFE_INTEGER) throw new Short("a number beyond 2^53");
        return v;
      }
      mul *= 0x80;
    }
    throw new Short("a varint longer than 8 bytes");
  }

  zigzag(): number {
    const z = this.uvarint();
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
  }

  bytes(n: number): Buffer {
    if (n > this.buf.length - this.at) throw new Short("ends early");
    const b = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return b;
  }

  text(): string {
    const n = this.uvarint();
    const b = this.bytes(n);
    const s = b.toString("utf8");
    if (!Buffer.from(s, "utf8").equals(b)) throw new Short("a text that is not UTF-8");
    return s;
  }
}

export type CompactHeader = { gw: string; first: number; count: number; dictionary: number; deflated: boolean };

/** The header alone (which dictionary the message needs); an error for a payload that is not v2. */
export function compactHeader(payload: Buffer): { ok: true; header: CompactHeader; bodyAt: number } | { ok: false; reason: string } {
  try {
    const r = new Reader(payload);
    if (r.byte() !== COMPACT_MAGIC) return { ok: false, reason: "not a compact (v2) payload" };
    const version = r.byte();
    if (version !== COMPACT_VERSION) return { ok: false, reason: `compact payload version ${version} (this decoder reads ${COMPACT_VERSION})` };
    const flags = r.byte();
    if (flags & ~FLAG_DEFLATE) return { ok: false, reason: `unknown flags 0x${flags.toString(16)}` };
    const gw = r.text();
    const first = r.uvarint();
    const count = r.uvarint();
    const dictionary = r.uvarint();
    if (first < 1 || count < 1 || count > COMPACT_MAX_READINGS) return { ok: false, reason: `seq ${first} and count ${count} out of range` };
    return { ok: true, header: { gw, first, count, dictionary, deflated: (flags & FLAG_DEFLATE) !== 0 }, bodyAt: r.at };
  } catch (err) {
    return { ok: false, reason: `truncated header: ${(err as Error).message}` };
  }
}

/**
 * Decodes a v2 payload into the v1 message shape (`v: 2`). `dictionary(version)` gives the names
 * of the ids of that dictionary version or a later one, or undefined when none is known yet.
 */
export function decodeCompact(payload: Buffer, dictionary: (version: number) => ReadonlyMap<number, string> | undefined): { ok: true; msg: Omit<TelemetryMessage, "v"> & { v: 2; dictionary: number } } | { ok: false; reason: string } {
  const h = compactHeader(payload);
  if (!h.ok) return h;
  const { gw, first, count, dictionary: version, deflated } = h.header;
  const names = dictionary(version);
  if (!names) return { ok: false, reason: `needs dictionary version ${version}, which has not been received` };
  let raw: Buffer;
  try {
    const packed = payload.subarray(h.bodyAt);
    raw = deflated ? inflateRawSync(packed, { maxOutputLength: INFLATED_MAX }) : packed;
  } catch (err) {
    return { ok: false, reason: `body does not inflate: ${(err as Error).message}` };
  }
  try {
    const r = new Reader(raw);
    const nSeries = r.uvarint();
    if (nSeries < 1 || nSeries > count) throw new Short(`${nSeries} series for ${count} readings`);
    const series: Array<{ name: string; n: number; ts: number[]; values: Value[]; qualities: Quality[] }> = [];
    let total = 0;
    for (let i = 0; i < nSeries; i++) {
      const id = r.uvarint();
      const n = r.uvarint();
      const name = names.get(id);
      if (name === undefined) throw new Short(`point id ${id} is not in dictionary version ${version}`);
      if (n < 1) throw new Short("an empty series");
      total += n;
      if (total > count) throw new Short(`the series hold more than ${count} readings`);
      series.push({ name, n, ts: [], values: [], qualities: [] });
    }
    if (total !== count) throw new Short(`the series hold ${total} readings, the header says ${count}`);
    const order: number[] = [];
    if (nSeries > 1) {
      const seen = new Array<number>(nSeries).fill(0);
      for (let i = 0; i < count; i++) {
        const s = r.uvarint();
        if (s >= nSeries || ++seen[s]! > series[s]!.n) throw new Short("the order column does not match the series");
        order.push(s);
      }
    } else for (let i = 0; i < count; i++) order.push(0);
    const base = r.uvarint();
    for (const s of series) {
      let prev = 0;
      let prevDelta = 0;
      for (let i = 0; i < s.n; i++) {
        let ts: number;
        if (i === 0) ts = base + r.zigzag();
        else {
          const delta = i === 1 ? r.zigzag() : prevDelta + r.zigzag();
          ts = prev + delta;
          prevDelta = delta;
        }
        if (!Number.isSafeInteger(ts) || ts < 0) throw new Short("a time out of range");
        s.ts.push(ts);
        prev = ts;
      }
      const kinds: number[] = [];
      let numbers = 0;
      let texts = 0;
      for (let i = 0; i < s.n; i++) {
        const b = r.byte();
        const kind = b >> 2;
        const q = b & 3;
        if (kind > KIND.text || q > 2) throw new Short(`kind byte 0x${b.toString(16)}`);
        kinds.push(kind);
        s.qualities.push(QUALITY_NAME[q]!);
        if (kind === KIND.number) numbers++;
        if (kind === KIND.text) texts++;
      }
      const nums: number[] = [];
      if (numbers > 0) {
        const mode = r.byte();
        if (mode === 0) {
          const d = r.byte();
          if (d > MAX_SCALE) throw new Short(`scale ${d}`);
          const p = 10 ** d;
          let n = 0;
          for (let i = 0; i < numbers; i++) {
            n += r.zigzag();
            if (Math.abs(n) >= SCALED_MAX) throw new Short("a scaled number out of range");
            nums.push(n / p);
          }
        } else if (mode === 1) {
          let prevBits = 0n;
          for (let i = 0; i < numbers; i++) {
            const bits = r.bytes(8).readBigUInt64LE() ^ prevBits;
            nums.push(numberOf(bits));
            prevBits = bits;
          }
        } else throw new Short(`number mode ${mode}`);
      }
      const strs: string[] = [];
      for (let i = 0; i < texts; i++) strs.push(r.text());
      let ni = 0;
      let ti = 0;
      for (const k of kinds) {
        s.values.push(k === KIND.number ? nums[ni++]! : k === KIND.null ? null : k === KIND.true ? true : k === KIND.false ? false : strs[ti++]!);
      }
    }
    if (r.at !== raw.length) throw new Short(`${raw.length - r.at} bytes left over`);
    const at = new Array<number>(nSeries).fill(0);
    const rows: WireReading[] = order.map((si) => {
      const s = series[si]!;
      const i = at[si]!++;
      const q = s.qualities[i]!;
      return q === "good" ? [s.name, s.ts[i]!, s.values[i]!] : [s.name, s.ts[i]!, s.values[i]!, q];
    });
    return { ok: true, msg: { v: 2, gw, seq: [first, first + count - 1], r: rows, dictionary: version } };
  } catch (err) {
    if (err instanceof Short) return { ok: false, reason: `corrupt body: ${err.message}` };
    throw err;
  }
}
