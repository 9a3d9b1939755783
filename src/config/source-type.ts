/**
 * What the config needs to know of a kind of source: its piece of the schema, its own checks,
 * and the facts the cross-checks use (names, points, what it opens). Each source type's folder
 * provides one (src/sources/<type>/type.ts) and the registry lists them; the config schema is
 * composed from that list (buildConfigSchema), so a new kind of source touches no file here.
 */
import type { z } from "zod";
import type { Path, Report } from "./fields.js";

export interface SourceFacts {
  /** Names that begin point ids (`<name>/<point>`): unique across the file. */
  prefixes: Array<{ name: string; path: Path }>;
  /** Every point id the source produces, with its unit when known. */
  points: Array<{ id: string; unit?: string }>;
  /**
   * Things only one source may have: a physical port, a GPIO pin, an I²C address on a bus. Two
   * sources claiming the same key are an error naming both places.
   */
  claims: Array<{ key: string; path: Path; what: string; hint?: string }>;
  /** Devices an actuator may name (a relay's device, a charger's meter), with their switchable outputs. */
  devices: Array<{ name: string; kind: string; switches: string[]; points: string[] }>;
}

export interface CheckContext {
  /** Names of the embedded simulators (`simulators:`). */
  simulators: ReadonlySet<string>;
  report: Report;
  /**
   * Claims a point-id prefix at its place, now (so its error comes in the order of the type's
   * own checks); a prefix of the facts not claimed here is claimed after the checks.
   */
  claimName(name: string, path: Path): void;
}

export interface SourceConfigType<C extends { type: string; name: string } = { type: string; name: string }> {
  readonly type: C["type"];
  /** A strict object with `type: z.literal(<type>)`. */
  readonly schema: z.ZodType<C>;
  /** The source type's own checks, beyond its schema (errors with paths under `at`). */
  check?(cfg: C, at: Path, ctx: CheckContext): void;
  facts(cfg: C, at: Path): SourceFacts;
  /** Makes the entry's file paths (certificates, state) relative to the config file's folder. */
  resolvePaths?(cfg: C, at: (path: string) => string): void;
  /** One line for `config check`'s summary: `2 Modbus devices, 45 points`. */
  summary?(cfg: C): { devices?: number; deviceKind?: string; points: number };
}
