/**
 * CRC-32/ISO-HDLC (Ethernet, zlib, PNG): reflected polynomial 0xEDB88320, init and final XOR
 * 0xFFFFFFFF; crc32("123456789") = 0xCBF43926. Node's zlib.crc32 (≥ 20.15, native) when present,
 * else a table.
 */
import * as zlib from "node:zlib";

type Crc32Fn = (data: Uint8Array, value?: number) => number;

let table: Uint32Array | undefined;

function tableCrc32(data: Uint8Array, value = 0): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = (value ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const native = (zlib as { crc32?: Crc32Fn }).crc32;

/** CRC-32 of `data`, continuing from `value` (the CRC of the bytes before it) when given. */
export const crc32: Crc32Fn = native ? (data, value) => native(data, value) >>> 0 : tableCrc32;

/** The table version, exported so tests check it against the native one. */
export const crc32Table: Crc32Fn = tableCrc32;
