/**
 * COBS (Consistent Overhead Byte Stuffing, Cheshire and Baker 1999): removes every 0x00 from a
 * frame so that 0x00 can delimit frames on the wire. The encoder emits the shortest form: no
 * code byte follows a final 0xFF block (docs/firmware-bridge.md, section 3); the decoder
 * accepts that trailing 0x01 too.
 */

/** Largest encoded size of `n` bytes (without delimiters). */
export function cobsMaxEncoded(n: number): number {
  return n + Math.floor(n / 254) + 1;
}

/** Encodes `src` into `dst` at `at`; returns the index after the last byte written. */
export function cobsEncodeInto(src: Uint8Array, dst: Uint8Array, at: number): number {
  let codeAt = at;
  let out = at + 1;
  let code = 1;
  const n = src.length;
  for (let i = 0; i < n; i++) {
    const b = src[i]!;
    if (b === 0) {
      dst[codeAt] = code;
      codeAt = out++;
      code = 1;
      continue;
    }
    dst[out++] = b;
    if (++code === 0xff) {
      dst[codeAt] = code;
      if (i + 1 === n) return out;
      codeAt = out++;
      code = 1;
    }
  }
  dst[codeAt] = code;
  return out;
}

export function cobsEncode(src: Uint8Array): Uint8Array {
  const dst = new Uint8Array(cobsMaxEncoded(src.length));
  return dst.subarray(0, cobsEncodeInto(src, dst, 0));
}

/**
 * Decodes `buf[start, end)` in place: the decoded bytes land at `buf[start …]` (decoding never
 * writes ahead of what it reads). Returns the decoded length, or -1 when the bytes are not COBS
 * (a code byte 0x00, or a block running past the end).
 */
export function cobsDecodeInPlace(buf: Uint8Array, start: number, end: number): number {
  let i = start;
  let o = start;
  while (i < end) {
    const code = buf[i++]!;
    if (code === 0) return -1;
    const len = code - 1;
    if (i + len > end) return -1;
    if (o !== i) buf.copyWithin(o, i, i + len);
    o += len;
    i += len;
    if (code !== 0xff && i < end) buf[o++] = 0;
  }
  return o - start;
}

/**
 * Decodes `src[start, end)` into `dst` from index 0 (`dst` at least `end - start` bytes); returns
 * the decoded length, or -1 when the bytes are not COBS.
 */
export function cobsDecodeInto(src: Uint8Array, start: number, end: number, dst: Uint8Array): number {
  let i = start;
  let o = 0;
  while (i < end) {
    const code = src[i++]!;
    if (code === 0) return -1;
    const len = code - 1;
    if (i + len > end) return -1;
    for (let k = 0; k < len; k++) dst[o + k] = src[i + k]!;
    o += len;
    i += len;
    if (code !== 0xff && i < end) dst[o++] = 0;
  }
  return o;
}

/** Decodes a copy of `src` (no delimiters); undefined when it is not COBS. */
export function cobsDecode(src: Uint8Array): Uint8Array | undefined {
  const buf = src.slice();
  const n = cobsDecodeInPlace(buf, 0, buf.length);
  return n < 0 ? undefined : buf.subarray(0, n);
}
