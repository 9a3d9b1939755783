/**
 * Signed update manifests (docs/firmware-updates.md): what an image is, for which hardware, and
 * who vouches for it. The gateway refuses an update — before one byte goes to a board — unless
 * the manifest is well-formed, signed with ed25519 by a key the config trusts, and matches both
 * the image (size, SHA-256, the version in its MCUboot header) and the board (hardware, bootloader,
 * no downgrade unless allowed).
 *
 * The signature covers the manifest's "signed text": one `key=value` line per field in a fixed
 * order, UTF-8, each line ending in "\n" — reproducible with any ed25519 tool
 * (`openssl pkeyutl -sign -rawin`), no JSON canonicalisation to get wrong.
 */
import { createPrivateKey, type KeyObject, sign, verify } from "node:crypto";
import { ed25519PublicKey } from "../model/ed25519.js";
import { compareVersions, parseVersion, readImageHeader, sha256 } from "./image.js";

export const MANIFEST_FORMAT = "edge-agent-manifest/1";
/** A manifest is a small JSON file; anything larger is not one. */
export const MANIFEST_MAX_BYTES = 8192;

export interface ManifestImage {
  /** SHA-256 of the image file (hex, lower case). */
  sha256: string;
  size: number;
  version: string;
  /** The board's `hardware` string this image is built for. */
  hardware: string;
  /** Oldest bootloader version the image needs; "" = any. */
  min_bootloader: string;
  /** The hash the board reports for this image once it runs it, if not `sha256` (hex; "" = sha256). */
  image_hash: string;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  image: ManifestImage;
  /** Name of the signing key (the config's `updates.keys` entry). */
  key: string;
  /** ed25519 signature of signedText(image), base64. */
  signature: string;
}

export class ManifestError extends Error {
  constructor(
    message: string,
    readonly code: "malformed" | "signature" | "unknown-key" | "image" | "hardware" | "downgrade" | "bootloader",
  ) {
    super(message);
    this.name = "ManifestError";
  }
}

const HEX64 = /^[0-9a-f]{64}$/;
const HARDWARE = /^[\x20-\x7e]{1,64}$/;
const KEY_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
/** Largest image we ever take: 16 MiB (a board's slot is far smaller). */
export const IMAGE_MAX_BYTES = 16 * 1024 * 1024;

/** The text the signature covers. */
export function signedText(image: ManifestImage): Buffer {
  return Buffer.from(
    `${MANIFEST_FORMAT}\n` +
      `sha256=${image.sha256}\n` +
      `size=${image.size}\n` +
      `version=${image.version}\n` +
      `hardware=${image.hardware}\n` +
      `min_bootloader=${image.min_bootloader}\n` +
      `image_hash=${image.image_hash}\n`,
    "utf8",
  );
}

const own = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

/** Parses a manifest file's text; throws ManifestError("malformed") naming the field. */
export function parseManifest(text: string | Uint8Array): Manifest {
  const raw = typeof text === "string" ? Buffer.from(text, "utf8") : Buffer.from(text);
  if (raw.length > MANIFEST_MAX_BYTES) throw new ManifestError(`manifest of ${raw.length} bytes (at most ${MANIFEST_MAX_BYTES})`, "malformed");
  let j: unknown;
  try {
    j = JSON.parse(raw.toString("utf8"));
  } catch (err) {
    throw new ManifestError(`manifest is not JSON: ${(err as Error).message}`, "malformed");
  }
  const bad = (field: string, why: string): never => {
    throw new ManifestError(`manifest ${field}: ${why}`, "malformed");
  };
  if (typeof j !== "object" || j === null || Array.isArray(j)) return bad("", "expected an object");
  const m = j as Record<string, unknown>;
  for (const k of Object.keys(m)) if (!["format", "image", "key", "signature"].includes(k)) bad(k, "unknown field");
  if (m.format !== MANIFEST_FORMAT) bad("format", `expected "${MANIFEST_FORMAT}"`);
  if (typeof m.key !== "string" || !KEY_NAME.test(m.key)) bad("key", "expected the signing key's name ([A-Za-z0-9_.-], 1 to 64)");
  if (typeof m.signature !== "string" || !/^[A-Za-z0-9+/]{86}==$/.test(m.signature)) bad("signature", "expected a base64 ed25519 signature (64 bytes)");
  const i = m.image;
  if (typeof i !== "object" || i === null || Array.isArray(i)) return bad("image", "expected an object");
  const img = i as Record<string, unknown>;
  for (const k of Object.keys(img)) if (!["sha256", "size", "version", "hardware", "min_bootloader", "image_hash"].includes(k)) bad(`image.${k}`, "unknown field");
  if (typeof img.sha256 !== "string" || !HEX64.test(img.sha256)) bad("image.sha256", "expected 64 lower-case hex digits");
  if (typeof img.size !== "number" || !Number.isSafeInteger(img.size) || img.size <= 0 || img.size > IMAGE_MAX_BYTES) bad("image.size", `expected a whole number of bytes, 1 to ${IMAGE_MAX_BYTES}`);
  if (typeof img.version !== "string" || !parseVersion(img.version)) bad("image.version", "expected major.minor.revision[+build], e.g. 1.4.3");
  if (typeof img.hardware !== "string" || !HARDWARE.test(img.hardware)) bad("image.hardware", "expected the board's hardware string (printable, 1 to 64)");
  const minBoot = own(img, "min_bootloader") ? img.min_bootloader : "";
  if (typeof minBoot !== "string" || (minBoot !== "" && !parseVersion(minBoot))) bad("image.min_bootloader", "expected a version or \"\"");
  const imageHash = own(img, "image_hash") ? img.image_hash : "";
  if (typeof imageHash !== "string" || (imageHash !== "" && !HEX64.test(imageHash))) bad("image.image_hash", "expected 64 lower-case hex digits or \"\"");
  return {
    format: MANIFEST_FORMAT,
    key: m.key as string,
    signature: m.signature as string,
    image: {
      sha256: img.sha256 as string,
      size: img.size as number,
      version: img.version as string,
      hardware: img.hardware as string,
      min_bootloader: minBoot as string,
      image_hash: imageHash as string,
    },
  };
}

/** A public key from the config (base64 raw, base64 SPKI or PEM). */
export const publicKey = ed25519PublicKey;

/** Checks the signature with the trusted keys (by name). Throws ManifestError. */
export function checkSignature(m: Manifest, keys: ReadonlyMap<string, KeyObject>): void {
  const key = keys.get(m.key);
  if (!key) throw new ManifestError(`manifest signed with key '${m.key}', which this gateway does not trust (updates.keys: ${[...keys.keys()].join(", ") || "none"})`, "unknown-key");
  const ok = verify(null, signedText(m.image), key, Buffer.from(m.signature, "base64"));
  if (!ok) throw new ManifestError(`manifest signature does not verify with key '${m.key}' (altered, or signed with another key)`, "signature");
}

/** Checks the image bytes against the manifest: size, SHA-256, and the version its MCUboot header says. Throws ManifestError. */
export function checkImage(m: Manifest, image: Uint8Array): void {
  if (image.length !== m.image.size) throw new ManifestError(`image is ${image.length} bytes, the manifest says ${m.image.size} (truncated or another file)`, "image");
  const digest = sha256(image).toString("hex");
  if (digest !== m.image.sha256) throw new ManifestError(`image SHA-256 ${digest.slice(0, 16)}… differs from the manifest's ${m.image.sha256.slice(0, 16)}…`, "image");
  const header = readImageHeader(image);
  if (header && compareVersions(header.version, m.image.version) !== 0) {
    throw new ManifestError(`image header says version ${header.version}, the manifest ${m.image.version}`, "image");
  }
}

export interface BoardFacts {
  hardware: string;
  firmware: string;
  /** The board's bootloader version, when it reports one (or the config says). */
  bootloader: string | null;
}

/** Checks the manifest against the board. Throws ManifestError. */
export function checkBoard(m: Manifest, board: BoardFacts, options: { allowDowngrade: boolean }): void {
  if (board.hardware !== m.image.hardware) throw new ManifestError(`image is for hardware '${m.image.hardware}', the board is '${board.hardware}'`, "hardware");
  if (!options.allowDowngrade && parseVersion(board.firmware) && compareVersions(m.image.version, board.firmware) < 0) {
    throw new ManifestError(`image ${m.image.version} is older than the board's ${board.firmware} (a downgrade; allow it with allow_downgrade)`, "downgrade");
  }
  if (m.image.min_bootloader) {
    if (!board.bootloader) throw new ManifestError(`image needs bootloader ${m.image.min_bootloader} or later; the board does not report its bootloader version`, "bootloader");
    if (compareVersions(board.bootloader, m.image.min_bootloader) < 0) {
      throw new ManifestError(`image needs bootloader ${m.image.min_bootloader} or later, the board has ${board.bootloader}`, "bootloader");
    }
  }
}

/** The hash the board reports once it runs this image (hex). */
export function runningHash(m: Manifest): string {
  return m.image.image_hash || m.image.sha256;
}

/** Signs a manifest for `image` with an ed25519 private key (PEM) — for `edge-agent bridge sign` and tests. */
export function signManifest(
  image: Uint8Array,
  fields: { version: string; hardware: string; minBootloader?: string; imageHash?: string },
  key: { name: string; privatePem: string },
): Manifest {
  const body: ManifestImage = {
    sha256: sha256(image).toString("hex"),
    size: image.length,
    version: fields.version,
    hardware: fields.hardware,
    min_bootloader: fields.minBootloader ?? "",
    image_hash: fields.imageHash ?? "",
  };
  const signature = sign(null, signedText(body), createPrivateKey(key.privatePem)).toString("base64");
  const m: Manifest = { format: MANIFEST_FORMAT, image: body, key: key.name, signature };
  // What we write must be what we read.
  return parseManifest(JSON.stringify(m));
}
