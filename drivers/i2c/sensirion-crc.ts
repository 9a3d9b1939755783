/**
 * Sensirion CRC-8 (SHT3x, SHT4x, SCD4x datasheets; devices.md): polynomial 0x31 (x⁸+x⁵+x⁴+1),
 * init 0xFF, no reflection, no final XOR, over each 2-byte word. Check: CRC(0xBE, 0xEF) = 0x92.
 */
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
