/**
 * Firmware images as the boards boot them: an MCUboot image header (32 bytes, little-endian:
 * magic 0x96f3b83d, load address, header size, protected TLV size, image size, flags, version
 * major.minor.revision+build) before the code. The gateway reads it only to check that an image
 * says the version its manifest says; the reference firmware and the board simulator read it to
 * know what they run. Images without the header (another bootloader's) are taken as opaque bytes.
 *
 * Test images (buildTestImage) carry a behaviour the simulated boards act out after booting them:
 * `ok`, `crash` (resets at once, before the gateway hears it twice), `silent` (answers the link,
 * sends no telemetry) — as the marker text `EBP-BEHAVIOUR=<name>;` anywhere in the image.
 */
import { createHash } from "node:crypto";

export const MCUBOOT_MAGIC = 0x96f3b83d;
export const MCUBOOT_HEADER_BYTES = 32;

export interface ImageHeader {
  version: string;
  headerSize: number;
  imageSize: number;
  loadAddress: number;
  flags: number;
}

/** The MCUboot header at the start of `image`, or null when there is none. */
export function readImageHeader(image: Uint8Array): ImageHeader | null {
  if (image.length < MCUBOOT_HEADER_BYTES) return null;
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (v.getUint32(0, true) !== MCUBOOT_MAGIC) return null;
  const major = v.getUint8(20);
  const minor = v.getUint8(21);
  const revision = v.getUint16(22, true);
  const build = v.getUint32(24, true);
  return {
    loadAddress: v.getUint32(4, true),
    headerSize: v.getUint16(8, true),
    imageSize: v.getUint32(12, true),
    flags: v.getUint32(16, true),
    version: `${major}.${minor}.${revision}${build ? `+${build}` : ""}`,
  };
}

export type Behaviour = "ok" | "crash" | "silent";
const MARKER = "EBP-BEHAVIOUR=";

/** The behaviour a test image asks of a simulated board (`ok` when it names none). */
export function imageBehaviour(image: Uint8Array): Behaviour {
  const text = Buffer.from(image.buffer, image.byteOffset, image.byteLength).toString("latin1");
  const at = text.indexOf(MARKER);
  if (at < 0) return "ok";
  const name = text.slice(at + MARKER.length, text.indexOf(";", at));
  return name === "crash" || name === "silent" ? name : "ok";
}

export function sha256(bytes: Uint8Array): Buffer {
  return createHash("sha256").update(bytes).digest();
}

/** Parses "1.2.3" or "1.2.3+4" into its numbers, or null. */
export function parseVersion(text: string): { major: number; minor: number; revision: number; build: number } | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,5})(?:\+(\d{1,10}))?$/.exec(text);
  if (!m) return null;
  const [major, minor, revision, build] = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4] ?? 0)];
  if (major > 255 || minor > 255 || revision > 65535 || build > 0xffffffff) return null;
  return { major, minor, revision, build };
}

/** -1, 0 or 1 as version a is older, the same as, or newer than b (build numbers count last). */
export function compareVersions(a: string, b: string): number {
  const x = parseVersion(a);
  const y = parseVersion(b);
  if (!x || !y) return a === b ? 0 : a < b ? -1 : 1;
  for (const k of ["major", "minor", "revision", "build"] as const) if (x[k] !== y[k]) return x[k] < y[k] ? -1 : 1;
  return 0;
}

/** An MCUboot-headed image of `size` bytes (at least the header and the marker) for tests and benchmarks. */
export function buildTestImage(options: { version: string; behaviour?: Behaviour; size?: number; seed?: number }): Uint8Array {
  const ver = parseVersion(options.version);
  if (!ver) throw new RangeError(`version '${options.version}': expected major.minor.revision[+build]`);
  const marker = Buffer.from(`${MARKER}${options.behaviour ?? "ok"};`, "latin1");
  const size = Math.max(options.size ?? 4096, MCUBOOT_HEADER_BYTES + marker.length);
  const image = new Uint8Array(size);
  const v = new DataView(image.buffer);
  v.setUint32(0, MCUBOOT_MAGIC, true);
  v.setUint32(4, 0, true);
  v.setUint16(8, MCUBOOT_HEADER_BYTES, true);
  v.setUint16(10, 0, true);
  v.setUint32(12, size - MCUBOOT_HEADER_BYTES, true);
  v.setUint32(16, 0, true);
  v.setUint8(20, ver.major);
  v.setUint8(21, ver.minor);
  v.setUint16(22, ver.revision, true);
  v.setUint32(24, ver.build, true);
  image.set(marker, MCUBOOT_HEADER_BYTES);
  // The rest: pseudo-random "code" (compresses as badly as real code), the same for the same seed.
  let s = (options.seed ?? 1) >>> 0 || 1;
  for (let i = MCUBOOT_HEADER_BYTES + marker.length; i < size; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    image[i] = s & 0xff;
  }
  return image;
}
