/**
 * Turning registers into values and back, for every data type and word order of a ModbusPoint.
 * Registers are 16-bit unsigned numbers as a Modbus read returns them.
 */
import type { DataType, ModbusPoint, WordOrder } from "./types.js";
import { isBitTable, registerCount } from "./types.js";

/**
 * Puts the bytes of `count` registers from words[at] into `into` in big-endian ABCD… order according to
 * `order`, and returns it.
 */
function toBigEndian(words: readonly number[], at: number, count: number, order: WordOrder, into: Buffer): Buffer {
  const swapWords = order === "CDAB" || order === "DCBA";
  const swapBytes = order === "BADC" || order === "DCBA";
  for (let i = 0; i < count; i++) {
    const w = words[at + (swapWords ? count - 1 - i : i)]! & 0xffff;
    // Bytes set directly: Buffer's write methods validate their offset through a wrapper that
    // allocates on every call unless the optimising compiler removes it (the unit runs --no-opt).
    into[i * 2] = swapBytes ? w & 0xff : w >>> 8;
    into[i * 2 + 1] = swapBytes ? w >>> 8 : w & 0xff;
  }
  return into;
}

/**
 * Numbers span at most four registers and are decoded synchronously, so they all go through this
 * one buffer: a gateway decodes hundreds of values a second, each would otherwise be a Buffer.
 */
const scratch = Buffer.alloc(8);
// Read through a DataView: Buffer's read methods validate their offset through a wrapper that
// allocates on every call unless the optimising compiler removes it (the unit runs --no-opt).
const view = new DataView(scratch.buffer, scratch.byteOffset, scratch.length);

/** The inverse of toBigEndian. */
function fromBigEndian(buf: Buffer, order: WordOrder): number[] {
  const swapWords = order === "CDAB" || order === "DCBA";
  const swapBytes = order === "BADC" || order === "DCBA";
  const words: number[] = [];
  for (let i = 0; i < buf.length; i += 2) words.push(swapBytes ? buf.readUInt16LE(i) : buf.readUInt16BE(i));
  return swapWords ? words.reverse() : words;
}

/** The number in the first bytes of `scratch` (big-endian). */
function rawNumber(type: DataType): number {
  switch (type) {
    case "int16":
      return view.getInt16(0);
    case "uint16":
      return view.getUint16(0);
    case "int32":
      return view.getInt32(0);
    case "uint32":
      return view.getUint32(0);
    case "float32":
      return view.getFloat32(0);
    case "float64":
      return view.getFloat64(0);
    default:
      throw new Error(`${type} is not numeric`);
  }
}

/** Rounds away float noise from scaling (0.1 × 3 = 0.30000000000000004). */
function tidy(n: number): number {
  return Number.isFinite(n) ? Number.parseFloat(n.toPrecision(12)) : n;
}

/**
 * Decodes a point from its registers (or, for coil/discrete tables, from its bit as 0/1): the
 * registerCount(point) values from words[at] (a whole read's reply can be passed, no slice needed).
 */
export function decodePoint(p: ModbusPoint, words: readonly number[], at = 0): number | boolean | string {
  if (isBitTable(p.table)) return words[at] === 1;
  if (p.type === "bool") return ((words[at]! >> (p.bit ?? 0)) & 1) === 1;
  const n = registerCount(p);
  const be = toBigEndian(words, at, n, p.order ?? "ABCD", p.type === "string" ? Buffer.alloc(n * 2) : scratch);
  if (p.type === "string") return be.toString("latin1").replace(/\0+$/, "").trimEnd();
  let raw = rawNumber(p.type);
  // A float32 holds about 7 significant digits; the rest of the double is noise (230.2 is
  // stored as 230.19999694824219).
  if (p.type === "float32" && Number.isFinite(raw)) raw = Number(raw.toPrecision(7));
  if (p.scale === undefined && p.offset === undefined) return raw;
  return tidy(raw * (p.scale ?? 1) + (p.offset ?? 0));
}

/** Encodes a value into the point's registers (the inverse of decodePoint). */
export function encodePoint(p: ModbusPoint, value: number | boolean | string): number[] {
  if (isBitTable(p.table)) return [value ? 1 : 0];
  if (p.type === "bool") return [value ? 1 << (p.bit ?? 0) : 0];
  const n = registerCount(p);
  const be = Buffer.alloc(n * 2);
  if (p.type === "string") {
    be.write(String(value), "latin1");
    return fromBigEndian(be, p.order ?? "ABCD");
  }
  const num = typeof value === "number" ? value : Number(value);
  const raw = (num - (p.offset ?? 0)) / (p.scale ?? 1);
  const int = Math.round(raw);
  switch (p.type) {
    case "int16":
      be.writeInt16BE(clamp(int, -0x8000, 0x7fff), 0);
      break;
    case "uint16":
      be.writeUInt16BE(clamp(int, 0, 0xffff), 0);
      break;
    case "int32":
      be.writeInt32BE(clamp(int, -0x80000000, 0x7fffffff), 0);
      break;
    case "uint32":
      be.writeUInt32BE(clamp(int, 0, 0xffffffff), 0);
      break;
    case "float32":
      be.writeFloatBE(raw, 0);
      break;
    case "float64":
      be.writeDoubleBE(raw, 0);
      break;
  }
  return fromBigEndian(be, p.order ?? "ABCD");
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, n));
}
