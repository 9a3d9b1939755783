/**
 * The receiving side of section 3 of docs/firmware-bridge.md: bytes in any chunking → frames.
 * Collects bytes up to each 0x00 in one fixed buffer (no allocation per byte), drops a chunk that
 * outgrows the largest frame as it grows, and counts every chunk it discards. Never throws.
 */
import { cobsDecodeInto } from "./cobs.js";
import { type Frame, GATEWAY_MAX_FRAME, MIN_MAX_FRAME, maxEncodedChunk, parseFrame } from "./frame.js";

/** Counters named as in section 3 of the spec. */
export interface DecoderStats {
  /** Bytes pushed in. */
  bytes: number;
  /** Frames taken (valid COBS, length, CRC and version). */
  frames: number;
  /** Chunks that are not COBS or decode to fewer than 11 bytes. */
  garbage: number;
  /** Bytes in chunks counted `garbage` or `oversized`. */
  garbageBytes: number;
  /** Chunks longer than the largest frame (encoded), or decoding to more than it. */
  oversized: number;
  crcErrors: number;
  badVersion: number;
}

export interface DecoderOptions {
  /** Largest frame this side accepts, header to CRC, before COBS (section 2). Default 1024. */
  maxFrame?: number;
  /** Longest text reported for a garbage chunk, in characters. Default 160. */
  garbageTextMax?: number;
  /**
   * The first discarded chunk (garbage or oversized) after a valid frame, as printable text: a
   * board's boot banner or crash message is worth a log line; the rest of the burst is counted.
   */
  onGarbage?: (text: string) => void;
}

export class FrameDecoder {
  private maxFrame: number;
  private buf: Uint8Array;
  /** Where a chunk is decoded, so that a chunk that fails is still there to be shown as text. */
  private out: Uint8Array;
  private len = 0;
  /** Bytes of an oversized chunk already counted in garbageBytes when it overflowed. */
  private countedLen = 0;
  /** Bytes of the current chunk, including those dropped when it outgrew the buffer. */
  private chunkLen = 0;
  private inBurst = false;
  private readonly textMax: number;
  private readonly onGarbage: ((text: string) => void) | undefined;
  private readonly counts: DecoderStats = { bytes: 0, frames: 0, garbage: 0, garbageBytes: 0, oversized: 0, crcErrors: 0, badVersion: 0 };

  constructor(options: DecoderOptions = {}) {
    this.maxFrame = Math.max(MIN_MAX_FRAME, options.maxFrame ?? GATEWAY_MAX_FRAME);
    this.buf = new Uint8Array(maxEncodedChunk(this.maxFrame));
    this.out = new Uint8Array(this.buf.length);
    this.textMax = options.garbageTextMax ?? 160;
    this.onGarbage = options.onGarbage;
  }

  /** Chunks discarded so far, of every kind: a cheap check that something went wrong. */
  get discarded(): number {
    const c = this.counts;
    return c.garbage + c.oversized + c.crcErrors + c.badVersion;
  }

  /** Counters so far (a copy). */
  stats(): DecoderStats {
    return { ...this.counts };
  }

  /** Changes the largest frame accepted; drops a chunk in progress. */
  setMaxFrame(maxFrame: number): void {
    this.maxFrame = Math.max(MIN_MAX_FRAME, maxFrame);
    this.buf = new Uint8Array(maxEncodedChunk(this.maxFrame));
    this.out = new Uint8Array(this.buf.length);
    this.len = 0;
    this.chunkLen = 0;
  }

  /** Forgets a partial chunk (a port reopened, a board reset mid-frame is caught by COBS/CRC anyway). */
  reset(): void {
    this.len = 0;
    this.chunkLen = 0;
  }

  /** Feeds bytes; returns the frames they completed, in order. */
  push(chunk: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    const n = chunk.length;
    this.counts.bytes += n;
    let pos = 0;
    while (pos < n) {
      const zero = chunk.indexOf(0, pos);
      const end = zero < 0 ? n : zero;
      const take = end - pos;
      if (take > 0) {
        const room = this.buf.length - this.len;
        if (this.chunkLen < this.buf.length) {
          // Keep what fits: the start of an oversized chunk is still shown as text.
          const k = take < room ? take : room;
          if (k > 0) {
            this.buf.set(k === n ? chunk : chunk.subarray(pos, pos + k), this.len);
            this.len += k;
          }
        }
        const before = this.chunkLen;
        this.chunkLen += take;
        // Counted (and shown) the moment it outgrows the largest frame: a port where something
        // else talks may never send a delimiter at all.
        if (before <= this.buf.length && this.chunkLen > this.buf.length) {
          this.discard("oversized", this.chunkLen, this.len);
          this.countedLen = this.chunkLen;
        }
      }
      if (zero < 0) break;
      this.endChunk(frames);
      pos = zero + 1;
    }
    return frames;
  }

  private endChunk(frames: Frame[]): void {
    const chunkLen = this.chunkLen;
    const len = this.len;
    this.len = 0;
    this.chunkLen = 0;
    if (chunkLen === 0) return;
    if (chunkLen > this.buf.length) {
      // Counted when it overflowed; the bytes after that count now.
      this.counts.garbageBytes += chunkLen - this.countedLen;
      return;
    }
    const size = cobsDecodeInto(this.buf, 0, len, this.out);
    if (size < 0) return this.discard("garbage", chunkLen, len);
    if (size > this.maxFrame) return this.discard("oversized", chunkLen, len);
    const r = parseFrame(this.out.subarray(0, size));
    if (r.ok) {
      this.counts.frames++;
      this.inBurst = false;
      frames.push(r.frame);
      return;
    }
    if (r.error === "short") return this.discard("garbage", chunkLen, len);
    if (r.error === "crc") this.counts.crcErrors++;
    else this.counts.badVersion++;
  }

  private discard(kind: "garbage" | "oversized", chunkLen: number, kept: number): void {
    this.counts[kind]++;
    this.counts.garbageBytes += chunkLen;
    if (this.inBurst || !this.onGarbage) return;
    this.inBurst = true;
    try {
      this.onGarbage(printable(this.buf, kept, this.textMax));
    } catch {
      // A failing log callback is not a reason for the byte stream to stop.
    }
  }
}

/** Bytes as one line of text: printable ASCII kept, line ends and tabs as spaces, the rest as \xNN. */
export function printable(bytes: Uint8Array, len: number, max: number): string {
  let s = "";
  for (let i = 0; i < len && s.length < max; i++) {
    const b = bytes[i]!;
    if (b >= 0x20 && b < 0x7f) s += String.fromCharCode(b);
    else if (b === 0x0a || b === 0x0d || b === 0x09) s += " ";
    else s += "\\x" + b.toString(16).padStart(2, "0");
  }
  s = s.trim();
  return len > 0 && s.length >= max ? s.slice(0, max) + "…" : s;
}
