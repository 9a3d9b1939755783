/**
 * SMP, the Simple Management Protocol of Zephyr's MCUmgr, as the bridge's management channel
 * (channel 7) carries it: one SMP packet per frame payload (docs/firmware-bridge.md, section 13).
 *
 * A packet is an 8-byte header, big-endian — res(3) ver(2) op(3) · flags · length (u16) ·
 * group (u16) · sequence (u8) · command id (u8) — and a CBOR map. We speak the groups an update
 * needs: OS (0) reset, image (1) state, upload and erase, so that a Zephyr board with MCUboot
 * needs nothing beyond the bridge's framing. Decoding hostile bytes gives an error value, never
 * an exception; maps are read as `Map`s (no key of a board's can reach an object's prototype).
 */
import { decode, encode } from "cborg";

export const SMP_HEADER_BYTES = 8;

export const SMP_OP = { READ: 0, READ_RSP: 1, WRITE: 2, WRITE_RSP: 3 } as const;
export const SMP_GROUP = { OS: 0, IMAGE: 1 } as const;
export const SMP_OS = { RESET: 5 } as const;
export const SMP_IMAGE = { STATE: 0, UPLOAD: 1, ERASE: 5 } as const;

/** MCUmgr's `rc` codes (mgmt/mcumgr/mgmt/mgmt_defines.h, MGMT_ERR_*). */
export const SMP_RC: Record<number, string> = {
  0: "ok",
  1: "unknown error",
  2: "out of memory",
  3: "invalid value",
  4: "timeout",
  5: "no such entry",
  6: "bad state",
  7: "message too large",
  8: "not supported",
  9: "corrupt",
  10: "busy",
  11: "access denied",
  12: "unsupported protocol version",
};

export interface SmpHeader {
  /** 0: SMP version 1 (errors as `rc`); 1: version 2 (errors as `err: {group, rc}`). */
  version: number;
  op: number;
  flags: number;
  group: number;
  seq: number;
  id: number;
}

export interface SmpPacket {
  header: SmpHeader;
  /** The CBOR map, keys as the board sent them. */
  body: Map<string, unknown>;
}

export type SmpDecode = { ok: true; packet: SmpPacket } | { ok: false; error: string };

/** One SMP packet's bytes. `body` values: numbers, booleans, strings, Uint8Arrays, arrays, maps. */
export function encodeSmp(header: SmpHeader, body: Record<string, unknown> | Map<string, unknown>): Uint8Array {
  const data = encode(body);
  if (data.length > 0xffff) throw new RangeError(`SMP body of ${data.length} bytes does not fit a packet`);
  const out = new Uint8Array(SMP_HEADER_BYTES + data.length);
  out[0] = ((header.version & 0x03) << 3) | (header.op & 0x07);
  out[1] = header.flags & 0xff;
  out[2] = data.length >>> 8;
  out[3] = data.length & 0xff;
  out[4] = (header.group >>> 8) & 0xff;
  out[5] = header.group & 0xff;
  out[6] = header.seq & 0xff;
  out[7] = header.id & 0xff;
  out.set(data, SMP_HEADER_BYTES);
  return out;
}

/** Parses one SMP packet: the header, and the body as a CBOR map. Never throws. */
export function decodeSmp(bytes: Uint8Array): SmpDecode {
  if (bytes.length < SMP_HEADER_BYTES) return { ok: false, error: `SMP packet of ${bytes.length} bytes (the header alone is 8)` };
  const length = (bytes[2]! << 8) | bytes[3]!;
  if (length !== bytes.length - SMP_HEADER_BYTES) return { ok: false, error: `SMP length field says ${length} bytes, the packet holds ${bytes.length - SMP_HEADER_BYTES}` };
  const header: SmpHeader = {
    version: (bytes[0]! >>> 3) & 0x03,
    op: bytes[0]! & 0x07,
    flags: bytes[1]!,
    group: (bytes[4]! << 8) | bytes[5]!,
    seq: bytes[6]!,
    id: bytes[7]!,
  };
  if (length === 0) return { ok: true, packet: { header, body: new Map() } };
  let body: unknown;
  try {
    body = decode(bytes.subarray(SMP_HEADER_BYTES), { useMaps: true, rejectDuplicateMapKeys: true, allowUndefined: false });
  } catch (err) {
    return { ok: false, error: `SMP body is not CBOR: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (!(body instanceof Map)) return { ok: false, error: "SMP body is not a CBOR map" };
  for (const k of body.keys()) if (typeof k !== "string") return { ok: false, error: "SMP body has a key that is not text" };
  return { ok: true, packet: { header, body: body as Map<string, unknown> } };
}

/** The error an SMP response carries (`rc` of version 1, `err.rc` of version 2), or null. */
export function smpError(body: Map<string, unknown>): { rc: number; group: number | null; text: string } | null {
  const rc = body.get("rc");
  if (typeof rc === "number" && rc !== 0) return { rc, group: null, text: SMP_RC[rc] ?? `error ${rc}` };
  const err = body.get("err");
  if (err instanceof Map) {
    const r = err.get("rc");
    const g = err.get("group");
    if (typeof r === "number" && r !== 0) return { rc: r, group: typeof g === "number" ? g : null, text: `group ${typeof g === "number" ? g : "?"} error ${r}` };
  }
  return null;
}

/** One image slot as the board's image state lists it. */
export interface ImageSlot {
  image: number;
  slot: number;
  version: string;
  /** Hex. */
  hash: string;
  bootable: boolean;
  pending: boolean;
  confirmed: boolean;
  active: boolean;
  permanent: boolean;
}

const MAX_SLOTS = 8;

/** The `images` list of an image state response, checked field by field. */
export function parseImageState(body: Map<string, unknown>): { ok: true; slots: ImageSlot[] } | { ok: false; error: string } {
  const images = body.get("images");
  if (!Array.isArray(images)) return { ok: false, error: "image state without an `images` list" };
  if (images.length > MAX_SLOTS) return { ok: false, error: `image state lists ${images.length} slots (at most ${MAX_SLOTS} expected)` };
  const slots: ImageSlot[] = [];
  for (const [i, m] of images.entries()) {
    if (!(m instanceof Map)) return { ok: false, error: `image state entry ${i} is not a map` };
    const int = (k: string, dflt: number): number | null => {
      const v = m.get(k);
      if (v === undefined) return dflt;
      return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 255 ? v : null;
    };
    const bool = (k: string): boolean => m.get(k) === true;
    const image = int("image", 0);
    const slot = int("slot", -1);
    const version = m.get("version");
    const hash = m.get("hash");
    if (image === null || slot === null || slot < 0) return { ok: false, error: `image state entry ${i} has no valid image/slot number` };
    if (typeof version !== "string" || version.length > 32) return { ok: false, error: `image state entry ${i} has no valid version` };
    if (!(hash instanceof Uint8Array) || hash.length !== 32) return { ok: false, error: `image state entry ${i} has no 32-byte hash` };
    slots.push({
      image,
      slot,
      version,
      hash: Buffer.from(hash).toString("hex"),
      bootable: bool("bootable"),
      pending: bool("pending"),
      confirmed: bool("confirmed"),
      active: bool("active"),
      permanent: bool("permanent"),
    });
  }
  return { ok: true, slots };
}

/** An upload chunk's request body. The first (off 0) names the whole image: its length and SHA-256. */
export function uploadBody(chunk: { off: number; data: Uint8Array; len?: number; sha?: Uint8Array; image?: number }): Map<string, unknown> {
  const m = new Map<string, unknown>();
  if (chunk.off === 0) {
    if (chunk.image !== undefined && chunk.image !== 0) m.set("image", chunk.image);
    m.set("len", chunk.len);
    if (chunk.sha) m.set("sha", chunk.sha);
  }
  m.set("off", chunk.off);
  m.set("data", chunk.data);
  return m;
}

/** Bytes an upload request spends on everything but its data (header, keys, the first chunk's len and sha). */
export function uploadOverhead(first: boolean, off: number, dataLength: number): number {
  const probe = uploadBody({ off, data: new Uint8Array(dataLength), ...(first ? { len: 0xffffffff, sha: new Uint8Array(32) } : {}) });
  return SMP_HEADER_BYTES + encode(probe).length - dataLength;
}
