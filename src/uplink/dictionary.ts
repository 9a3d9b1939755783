/**
 * The gateway's point dictionary for compact telemetry (v2, docs/mqtt-contract.md): each point
 * name gets an id the first time it is sent, kept for good — never reused, never renumbered, also
 * across restarts (the dictionary file sits beside the outbox and is written before any message
 * that uses a new id). Its version is its highest id, so a message decodes with the version it
 * names or any later one. Published retained at `<prefix>/dict`:
 *   {"v":2,"gw":"gw-001","version":3,"points":{"1":"meter-1/voltage_l1","2":"…","3":"…"}}
 */
import { readFileSync } from "node:fs";
import { writeFileDurably } from "../store/durable-file.js";
import type { CompactDictionary } from "./compact.js";

export class PointDictionary implements CompactDictionary {
  private readonly ids = new Map<string, number>();
  private names: string[] = [];
  private dirty = false;

  constructor(private readonly path: string | null) {
    if (!path) return;
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw err;
    }
    const j = JSON.parse(text) as { points?: unknown };
    if (!Array.isArray(j.points) || !j.points.every((p) => typeof p === "string")) throw new Error(`${path}: not a point dictionary`);
    this.names = j.points as string[];
    this.names.forEach((n, i) => this.ids.set(n, i + 1));
  }

  get version(): number {
    return this.names.length;
  }

  /** Whether ids were added since the last save (the dictionary must then be saved and published). */
  get changed(): boolean {
    return this.dirty;
  }

  idOf(point: string): number {
    let id = this.ids.get(point);
    if (id === undefined) {
      this.names.push(point);
      id = this.names.length;
      this.ids.set(point, id);
      this.dirty = true;
    }
    return id;
  }

  /**
   * Writes the file if ids were added: atomically and durably (fsync of the file and of its
   * directory) — a message using a new id may be acknowledged right after, and a dictionary lost
   * to a power cut would give the same ids to other points after the restart: a misread, not a gap.
   */
  save(): void {
    if (!this.dirty) return;
    if (this.path) writeFileDurably(this.path, JSON.stringify({ v: 2, points: this.names }));
    this.dirty = false;
  }

  /** The retained message of the dictionary. */
  payload(gateway: string): string {
    const points: Record<string, string> = {};
    this.names.forEach((n, i) => (points[String(i + 1)] = n));
    return JSON.stringify({ v: 2, gw: gateway, version: this.version, points });
  }
}

/** A received dictionary message, checked: id → point name, or a reason. */
export function parseDictionary(payload: Buffer | string): { ok: true; gw: string; version: number; names: Map<number, string> } | { ok: false; reason: string } {
  let j: unknown;
  try {
    j = JSON.parse(payload.toString());
  } catch {
    return { ok: false, reason: "dictionary is not JSON" };
  }
  if (typeof j !== "object" || j === null) return { ok: false, reason: "dictionary is not an object" };
  const d = j as Record<string, unknown>;
  if (d.v !== 2 || typeof d.gw !== "string" || !Number.isSafeInteger(d.version) || typeof d.points !== "object" || d.points === null) {
    return { ok: false, reason: "dictionary lacks v 2, gw, version or points" };
  }
  const names = new Map<number, string>();
  for (const [k, v] of Object.entries(d.points as Record<string, unknown>)) {
    const id = Number(k);
    if (!Number.isSafeInteger(id) || id < 1 || typeof v !== "string") return { ok: false, reason: `dictionary entry '${k.slice(0, 20)}' is not id → point` };
    names.set(id, v);
  }
  return { ok: true, gw: d.gw, version: d.version as number, names };
}
