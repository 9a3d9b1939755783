/**
 * Sensirion CRC-8 (SHT3x, SHT4x, SCD4x datasheets; devices.md): polynomial 0x31 (x⁸+x⁵+x⁴+1),
 * init 0xFF, no reflection, no final XOR, over each 2-byte word. Check: CRC(0xBE, 0xEF) = 0x92.
 * Also what the three Sensirion drivers share on top of it: 16-bit commands, the serial number.
 */
import type { I2cDevice } from "../../src/buses/i2c/bus.js";
import { hex, SensorError } from "./types.js";

const POLY = 0x31;
const INIT = 0xff;

export function crc8(bytes: ArrayLike<number>): number {
  let crc = INIT;
  for (let i = 0; i < bytes.length; i++) {
    crc ^= bytes[i]! & 0xff;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x80 ? ((crc << 1) ^ POLY) & 0xff : (crc << 1) & 0xff;
  }
  return crc;
}

/** Words as the sensors send them (and as command arguments are written): MSB, LSB, CRC per word. */
export function encodeWords(words: readonly number[]): Buffer {
  const out = Buffer.alloc(words.length * 3);
  words.forEach((w, i) => {
    out[i * 3] = (w >> 8) & 0xff;
    out[i * 3 + 1] = w & 0xff;
    out[i * 3 + 2] = crc8([(w >> 8) & 0xff, w & 0xff]);
  });
  return out;
}

/** Splits a reply into its words; a word whose CRC does not match is null, never a number. */
export function decodeWords(reply: Buffer): Array<number | null> {
  const words: Array<number | null> = [];
  for (let i = 0; i + 2 < reply.length; i += 3) {
    const msb = reply[i]!;
    const lsb = reply[i + 1]!;
    words.push(crc8([msb, lsb]) === reply[i + 2] ? (msb << 8) | lsb : null);
  }
  return words;
}

/** A 16-bit command as the two bytes sent, MSB first. */
export const word16 = (n: number): [number, number] => [(n >> 8) & 0xff, n & 0xff];

/**
 * Reads a serial number of `words` CRC-protected words: "0x" and four hex digits per word.
 * A CRC mismatch is a SensorError("crc") naming the bus and address.
 */
export async function readSerial(device: I2cDevice, command: readonly number[], words: number, waitMs: number): Promise<string> {
  const reply = await device.run((io) => io.writeRead(command, words * 3, waitMs));
  const decoded = decodeWords(reply);
  if (decoded.length < words || decoded.some((w) => w == null)) {
    throw new SensorError("crc", `${device.bus} ${hex(device.address)}: CRC mismatch in the serial number`);
  }
  return `0x${decoded.map((w) => w!.toString(16).padStart(4, "0")).join("")}`;
}
