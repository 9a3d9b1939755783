/**
 * One frame of the firmware bridge (docs/firmware-bridge.md, section 2):
 * ver · chan · flags · seq (u16 LE) · ack (u16 LE) · payload · CRC-32 (LE) of everything before it,
 * COBS-encoded on the wire between 0x00 delimiters (section 3).
 */
import { cobsDecodeInPlace, cobsEncodeInto, cobsMaxEncoded } from "./cobs.js";
import { crc32 } from "./crc32.js";

export const PROTOCOL_VERSION = 1;
export const HEADER_BYTES = 7;
export const CRC_BYTES = 4;
/** Header and CRC: the smallest frame. */
export const FRAME_OVERHEAD = HEADER_BYTES + CRC_BYTES;
/** Every implementation accepts frames of this size (header to CRC, before COBS). */
export const MIN_MAX_FRAME = 256;
/** What the gateway offers in its HelloReply. */
export const GATEWAY_MAX_FRAME = 1024;

export const FLAG = { REL: 0x01, ACK: 0x02, NAK: 0x04, BUSY: 0x08 } as const;

export const CHANNEL = { LINK: 0, TELEMETRY: 1, COMMANDS: 2, LOG: 3, MANAGEMENT: 7 } as const;

export interface Frame {
  chan: number;
  flags: number;
  seq: number;
  ack: number;
  payload: Uint8Array;
}

export type FrameError = "short" | "crc" | "version";

export type FrameResult = { ok: true; frame: Frame } | { ok: false; error: FrameError };

/** Largest chunk on the wire (between delimiters) that can hold a frame of `maxFrame` bytes. */
export function maxEncodedChunk(maxFrame: number): number {
  return cobsMaxEncoded(maxFrame);
}

function checkField(name: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`frame ${name} ${v} is not an integer in 0…${max}`);
}

/** The frame's bytes before COBS: header, payload, CRC. Throws RangeError on a field out of range (a caller's bug). */
export function frameBytes(frame: Frame): Uint8Array {
  checkField("chan", frame.chan, 0xff);
  checkField("flags", frame.flags, 0xff);
  checkField("seq", frame.seq, 0xffff);
  checkField("ack", frame.ack, 0xffff);
  const n = frame.payload.length;
  const raw = new Uint8Array(FRAME_OVERHEAD + n);
  raw[0] = PROTOCOL_VERSION;
  raw[1] = frame.chan;
  raw[2] = frame.flags;
  raw[3] = frame.seq & 0xff;
  raw[4] = frame.seq >>> 8;
  raw[5] = frame.ack & 0xff;
  raw[6] = frame.ack >>> 8;
  raw.set(frame.payload, HEADER_BYTES);
  const crc = crc32(raw.subarray(0, HEADER_BYTES + n));
  const at = HEADER_BYTES + n;
  raw[at] = crc & 0xff;
  raw[at + 1] = (crc >>> 8) & 0xff;
  raw[at + 2] = (crc >>> 16) & 0xff;
  raw[at + 3] = crc >>> 24;
  return raw;
}

export interface EncodeOptions {
  /** The last byte written to this port was a frame's closing 0x00: skip the leading one. */
  afterDelimiter?: boolean;
}

/** The bytes to write for a frame: [0x00] COBS(frame) 0x00. */
export function encodeFrame(frame: Frame, options: EncodeOptions = {}): Uint8Array {
  const raw = frameBytes(frame);
  const out = new Uint8Array(cobsMaxEncoded(raw.length) + 2);
  let at = 0;
  if (!options.afterDelimiter) out[at++] = 0;
  at = cobsEncodeInto(raw, out, at);
  out[at++] = 0;
  return out.subarray(0, at);
}

/**
 * Parses a frame's bytes (after COBS decoding). `payload` is a copy. Never throws.
 * The checks run in the spec's order: length, CRC, version.
 */
export function parseFrame(raw: Uint8Array): FrameResult {
  const n = raw.length;
  if (n < FRAME_OVERHEAD) return { ok: false, error: "short" };
  const end = n - CRC_BYTES;
  const want = (raw[end]! | (raw[end + 1]! << 8) | (raw[end + 2]! << 16) | (raw[end + 3]! << 24)) >>> 0;
  if (crc32(raw.subarray(0, end)) !== want) return { ok: false, error: "crc" };
  if (raw[0] !== PROTOCOL_VERSION) return { ok: false, error: "version" };
  return {
    ok: true,
    frame: {
      chan: raw[1]!,
      flags: raw[2]!,
      seq: raw[3]! | (raw[4]! << 8),
      ack: raw[5]! | (raw[6]! << 8),
      payload: raw.slice(HEADER_BYTES, end),
    },
  };
}

/**
 * Decodes the wire bytes of one frame, delimiters optional ([0x00] COBS 0x00), as the golden
 * frames are written. Errors are values; never throws.
 */
export function decodeWireFrame(wire: Uint8Array): FrameResult | { ok: false; error: "cobs" } {
  let start = 0;
  let end = wire.length;
  while (start < end && wire[start] === 0) start++;
  while (end > start && wire[end - 1] === 0) end--;
  const buf = wire.slice(start, end);
  const n = cobsDecodeInPlace(buf, 0, buf.length);
  if (n < 0) return { ok: false, error: "cobs" };
  return parseFrame(buf.subarray(0, n));
}
