/**
 * The schema hash of Hello (docs/firmware-bridge.md, section 5): the first 4 bytes, big-endian,
 * of the SHA-256 of bridge.proto in canonical form. The committed value is gen/schema-hash.ts
 * (written by scripts/bridge-gen.ts); a test checks it against the file.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export { SCHEMA_HASH } from "./gen/schema-hash.js";

/**
 * `//` to the end of the line removed (the line feed stays), every run of whitespace
 * (space, tab, CR, LF, VT, FF) replaced by one space, leading and trailing space removed.
 */
export function canonicalProto(text: string): string {
  return text
    .replace(/\/\/[^\n]*/g, "")
    .replace(/[ \t\n\r\v\f]+/g, " ")
    .replace(/^ | $/g, "");
}

export function schemaHash(protoText: string): number {
  return createHash("sha256").update(canonicalProto(protoText), "utf8").digest().readUInt32BE(0);
}

/** `0x` and 8 hex digits, as the refusal reason and `edge-agent bridge schema` print it. */
export function formatSchemaHash(hash: number): string {
  return "0x" + (hash >>> 0).toString(16).padStart(8, "0");
}

/** drivers/bridge/bridge.proto of this package (found from here, whether run from src/ or dist/). */
export function protoPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const p = join(dir, "drivers", "bridge", "bridge.proto");
    if (existsSync(p)) return p;
    dir = dirname(dir);
  }
  throw new Error("drivers/bridge/bridge.proto not found above " + dirname(fileURLToPath(import.meta.url)));
}

export function schemaHashOfFile(path: string = protoPath()): number {
  return schemaHash(readFileSync(path, "utf8"));
}
