/**
 * Modbus framing shared by the client and the simulator: RTU frames (unit, PDU, CRC-16) and
 * Modbus TCP frames (MBAP header, PDU). Pure functions over Buffers; no I/O, no timing.
 * Source: "Modbus over Serial Line V1.02" §2.5.1 and Appendix B (CRC), "Modbus Messaging on
 * TCP/IP Implementation Guide V1.0b" §3.1.3 (MBAP).
 */

/** Largest RTU frame (MBSL §2.5.1) and largest PDU (MBAP V1.1b3 §4.1). */
export const MAX_RTU_FRAME = 256;
export const MAX_PDU = 253;
/** MBAP header: transaction id, protocol id, length, unit id. */
export const MBAP_HEADER = 7;

const CRC_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xa001 : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** Modbus CRC-16: polynomial 0xA001 (reflected 0x8005), init 0xFFFF; sent low byte first. */
export function crc16(buf: Uint8Array): number {
  let crc = 0xffff;
  // An index, not for…of: an iterator result per byte is garbage without the optimising compiler (the unit's --no-opt).
  for (let i = 0; i < buf.length; i++) crc = (crc >>> 8) ^ CRC_TABLE[(crc ^ buf[i]!) & 0xff]!;
  return crc;
}

/** unit + PDU + CRC (low byte first). */
export function rtuFrame(unit: number, pdu: Uint8Array): Buffer {
  const frame = Buffer.alloc(pdu.length + 3);
  frame[0] = unit;
  frame.set(pdu, 1);
  frame.writeUInt16LE(crc16(frame.subarray(0, frame.length - 2)), frame.length - 2);
  return frame;
}

/** True when the last two bytes are the CRC of the others. */
export function crcOk(frame: Uint8Array): boolean {
  if (frame.length < 4) return false;
  const body = frame.subarray(0, frame.length - 2);
  const crc = frame[frame.length - 2]! | (frame[frame.length - 1]! << 8);
  return crc16(body) === crc;
}

export interface RtuRequest {
  unit: number;
  fc: number;
  /** Function code and data, without unit and CRC. */
  pdu: Buffer;
  /** The whole frame as received. */
  raw: Buffer;
}

export type RtuParse =
  | { frame: RtuRequest; rest: Buffer }
  | { need: number }
  /**
   * Drop this many bytes and parse again. `untilSilence`: the frame's length cannot be known
   * (unknown function code), so everything up to the next inter-frame silence belongs to it.
   */
  | { garbage: number; untilSilence?: boolean };

/**
 * Length of the request frame starting at `at`, from its function code (MBSL: a slave finds the
 * end of a frame by silence; we also know it from the function code, which survives the
 * scheduling jitter of a user-space process). `need`: not enough bytes yet to tell.
 */
function requestLength(buf: Buffer, at: number): number | "need" | "unknown" | "invalid" {
  if (buf.length - at < 2) return "need";
  const fc = buf[at + 1]!;
  if (fc >= 1 && fc <= 6) return 8;
  if (fc === 15 || fc === 16) {
    if (buf.length - at < 7) return "need";
    const len = 9 + buf[at + 6]!;
    return len > MAX_RTU_FRAME ? "invalid" : len;
  }
  return "unknown";
}

/** Could a request start at `at`? Complete candidates must pass the CRC. */
function plausibleStart(buf: Buffer, at: number): boolean {
  if (buf[at]! > 247) return false;
  const len = requestLength(buf, at);
  if (len === "unknown" || len === "invalid") return false;
  if (len === "need" || at + len > buf.length) return true;
  return crcOk(buf.subarray(at, at + len));
}

/**
 * Splits one request off the front of `buf` (bytes as they came off the line).
 * - `{frame, rest}`: a complete request with a good CRC.
 * - `{need: n}`: a plausible start, n more bytes at least.
 * - `{garbage: n}`: the front cannot be a request (unit > 247, bad CRC, a byte count that would
 *   make the frame longer than 256 bytes): drop n bytes, up to the next plausible start, and
 *   parse again. With `untilSilence` (unknown function code) the caller keeps the bytes out of
 *   parsing until the line goes quiet, as the spec's silence-based framing would.
 */
export function parseRtuRequest(buf: Buffer): RtuParse {
  if (buf.length === 0) return { need: 1 };
  const len = requestLength(buf, 0);
  if (buf[0]! <= 247 && len !== "invalid") {
    if (len === "need") return { need: buf.length < 2 ? 2 - buf.length : 7 - buf.length };
    if (len === "unknown") return { garbage: buf.length, untilSilence: true };
    if (buf.length < len) return { need: len - buf.length };
    const raw = buf.subarray(0, len);
    if (crcOk(raw)) {
      return {
        frame: { unit: raw[0]!, fc: raw[1]!, pdu: Buffer.from(raw.subarray(1, len - 2)), raw: Buffer.from(raw) },
        rest: buf.subarray(len),
      };
    }
  }
  // Resynchronise: skip to the next offset where a request could begin.
  let at = 1;
  while (at < buf.length && !plausibleStart(buf, at)) at++;
  return { garbage: at };
}

/** Checks a complete RTU frame's CRC and splits it into unit and PDU (for replies, whose length the client knows). */
export function checkRtuFrame(frame: Uint8Array): { unit: number; pdu: Buffer } | undefined {
  if (frame.length < 4 || !crcOk(frame)) return undefined;
  return { unit: frame[0]!, pdu: Buffer.from(frame.subarray(1, frame.length - 2)) };
}

/** MBAP header (protocol id 0, length = unit + PDU) followed by the PDU. */
export function mbapFrame(txId: number, unit: number, pdu: Uint8Array): Buffer {
  const frame = Buffer.alloc(MBAP_HEADER + pdu.length);
  frame.writeUInt16BE(txId & 0xffff, 0);
  frame.writeUInt16BE(0, 2);
  frame.writeUInt16BE(pdu.length + 1, 4);
  frame[6] = unit;
  frame.set(pdu, MBAP_HEADER);
  return frame;
}

export interface MbapAdu {
  txId: number;
  protocol: number;
  unit: number;
  pdu: Buffer;
}

export type MbapParse =
  | { frame: MbapAdu; rest: Buffer }
  | { need: number }
  /** Not Modbus TCP (protocol id ≠ 0, impossible length): the connection should be closed. */
  | { invalid: string };

/** Splits one ADU off the front of a TCP stream. */
export function parseMbap(buf: Buffer): MbapParse {
  if (buf.length < MBAP_HEADER) return { need: MBAP_HEADER - buf.length };
  const protocol = buf.readUInt16BE(2);
  const length = buf.readUInt16BE(4);
  if (protocol !== 0) return { invalid: `protocol id ${protocol} is not Modbus (0)` };
  if (length < 2 || length > MAX_PDU + 1) return { invalid: `MBAP length ${length} is outside 2–${MAX_PDU + 1}` };
  const total = 6 + length;
  if (buf.length < total) return { need: total - buf.length };
  return {
    frame: { txId: buf.readUInt16BE(0), protocol, unit: buf[6]!, pdu: Buffer.from(buf.subarray(MBAP_HEADER, total)) },
    rest: buf.subarray(total),
  };
}

/** Exception codes (MBAP V1.1b3 §7). */
export const ModbusException = {
  IllegalFunction: 0x01,
  IllegalDataAddress: 0x02,
  IllegalDataValue: 0x03,
  ServerDeviceFailure: 0x04,
} as const;

/** Exception reply PDU: function code with bit 7 set, then the code. */
export function exceptionPdu(fc: number, code: number): Buffer {
  return Buffer.from([(fc | 0x80) & 0xff, code & 0xff]);
}

/** "01 04 00 00" → Buffer; spaces optional. */
export function fromHex(hex: string): Buffer {
  return Buffer.from(hex.replace(/\s+/g, ""), "hex");
}

/** Buffer → "01 04 00 00", for messages and tests. */
export function toHex(buf: Uint8Array): string {
  return Buffer.from(buf).toString("hex").toUpperCase().replace(/(..)(?!$)/g, "$1 ");
}

/**
 * Length of the normal RTU reply to an RTU request, from its function code (MBAP V1.1b3 §6):
 * reads carry their data, writes echo address and quantity. Undefined for functions whose
 * reply length is only known from the reply itself.
 */
export function rtuReplyLength(request: Uint8Array): number | undefined {
  if (request.length < 6) return undefined;
  const fc = request[1]!;
  const quantity = (request[4]! << 8) | request[5]!;
  switch (fc) {
    case 1:
    case 2:
      return 3 + Math.ceil(quantity / 8) + 2;
    case 3:
    case 4:
      return 3 + 2 * quantity + 2;
    case 5:
    case 6:
    case 15:
    case 16:
      return 8;
    default:
      return undefined;
  }
}

/** An RTU exception reply: unit, function code | 0x80, exception code, CRC. */
export const RTU_EXCEPTION_LENGTH = 5;

export type RtuReplyScan = { frame: Buffer; rest: Buffer } | { need: true };

/**
 * Finds the reply to a request (its unit and function code) in the bytes received since it was
 * sent: the first place where the unit and the function code (or its exception) start a frame
 * of the expected length. Bytes from another unit are passed over, as a master on a shared
 * line must; the CRC is the client's check. With `length` unknown, the first frame whose CRC
 * holds is taken.
 */
export function findRtuReply(buf: Buffer, unit: number, fc: number, length: number | undefined): RtuReplyScan {
  for (let i = 0; i + 1 < buf.length; i++) {
    if (buf[i] !== unit) continue;
    const got = buf[i + 1]!;
    let len: number | undefined;
    if (got === (fc | 0x80)) len = RTU_EXCEPTION_LENGTH;
    else if (got === fc) len = length ?? crcLength(buf, i);
    else continue;
    if (len === undefined || i + len > buf.length) return { need: true };
    return { frame: buf.subarray(i, i + len), rest: buf.subarray(i + len) };
  }
  return { need: true };
}

/** The shortest frame starting at `at` whose CRC holds, if any. */
function crcLength(buf: Buffer, at: number): number | undefined {
  for (let len = 4; at + len <= buf.length && len <= MAX_RTU_FRAME; len++) {
    if (crcOk(buf.subarray(at, at + len))) return len;
  }
  return undefined;
}
