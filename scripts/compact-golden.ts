/**
 * Writes the golden messages of the compact telemetry payload (v2): test/fixtures/compact-golden.json,
 * read by the TypeScript decoder's and the Python decoder's tests (docs/mqtt-contract.md, "Compact
 * payload (v2)"). Usage: npm run build && node dist/scripts/compact-golden.js
 *
 * Each entry: the payload in hex, the dictionary (version and id → point) a receiver holds, and
 * the readings it must decode to. Numbers JSON cannot hold are written {"num": "NaN" | "Infinity"
 * | "-Infinity" | "-0"}.
 */
import { writeFileSync } from "node:fs";
import type { StoredReading, Value } from "../src/model/reading.js";
import { encodeCompact, type CompactDictionary } from "../src/uplink/compact.js";

const OUT = new URL("../../test/fixtures/compact-golden.json", import.meta.url);

const points = new Map<string, number>();
const dict: CompactDictionary & { names(): Record<string, string> } = {
  version: 0,
  idOf(point) {
    let id = points.get(point);
    if (id === undefined) {
      id = points.size + 1;
      points.set(point, id);
      this.version++;
    }
    return id;
  },
  names() {
    return Object.fromEntries([...points].map(([p, id]) => [String(id), p]));
  },
};

const special = (v: Value): unknown => (typeof v === "number" && (!Number.isFinite(v) || Object.is(v, -0)) ? { num: Object.is(v, -0) ? "-0" : String(v) } : v);

function golden(name: string, description: string, rows: StoredReading[], deflate: boolean) {
  // Ids first, so the dictionary written is the one the message names.
  for (const r of rows) dict.idOf(r.point);
  const enc = encodeCompact("gw-001", rows, dict, { maxBytes: 1 << 20, deflate })!;
  if (enc.count !== rows.length) throw new Error(`${name}: only ${enc.count} of ${rows.length} encoded`);
  return {
    name,
    description,
    hex: enc.payload.toString("hex"),
    dictionary: { version: dict.version, points: dict.names() },
    expect: { gw: "gw-001", seq: [rows[0]!.seq, rows.at(-1)!.seq], r: rows.map((r) => (r.quality === "good" ? [r.point, r.ts, special(r.value)] : [r.point, r.ts, special(r.value), r.quality])) },
  };
}

const T = 1_764_547_200_000; // 2025-12-01T00:00:00Z
const meter = (seq0: number, n: number): StoredReading[] =>
  Array.from({ length: n }, (_, i) => ({ seq: seq0 + i, point: ["meter-1/voltage_l1", "meter-1/power_total"][i % 2]!, ts: T + Math.floor(i / 2) * 10_000, value: i % 2 ? 1520.5 + i : Math.round((230.12 + i / 100) * 100) / 100, quality: "good" as const }));

const entries = [
  golden("meters", "two series of 2-decimal numbers every 10 s: scaled integers, delta-of-delta times", meter(1, 8), false),
  golden(
    "kinds",
    "one series of every kind: null (bad), booleans, a text, numbers; qualities good, uncertain, bad",
    [
      { seq: 9, point: "room-101/status", ts: T, value: "ok", quality: "good" },
      { seq: 10, point: "room-101/status", ts: T + 1000, value: null, quality: "bad" },
      { seq: 11, point: "room-101/status", ts: T + 2000, value: true, quality: "uncertain" },
      { seq: 12, point: "room-101/status", ts: T + 3000, value: false, quality: "good" },
      { seq: 13, point: "room-101/status", ts: T + 4000, value: 21.5, quality: "good" },
      { seq: 14, point: "room-101/status", ts: T + 4000, value: "ünïcødé ✓", quality: "good" },
    ],
    false,
  ),
  golden(
    "floats",
    "numbers with no decimal scale: float64 XOR the previous (huge, tiny, NaN, ±Infinity, -0)",
    [
      { seq: 15, point: "lab/x", ts: T, value: 1e300, quality: "good" },
      { seq: 16, point: "lab/x", ts: T + 1, value: 5e-324, quality: "good" },
      { seq: 17, point: "lab/x", ts: T + 2, value: Number.NaN, quality: "uncertain" },
      { seq: 18, point: "lab/x", ts: T + 3, value: Infinity, quality: "good" },
      { seq: 19, point: "lab/x", ts: T + 4, value: -Infinity, quality: "good" },
      { seq: 20, point: "lab/x", ts: T + 5, value: -0, quality: "good" },
      { seq: 21, point: "lab/x", ts: T + 6, value: Math.PI, quality: "good" },
    ],
    false,
  ),
  golden("new-point", "a point added after the first messages: a later dictionary version; the earlier messages decode with it too", [{ seq: 22, point: "meter-2/energy", ts: T + 60_000, value: 123456.789, quality: "good" }], false),
  golden("deflated", "a backlog batch, deflated (flags bit 0): 40 readings of the two meter series", meter(23, 40), true),
];

writeFileSync(OUT, `${JSON.stringify({ format: "edge-agent compact telemetry v2 golden messages", messages: entries }, null, 1)}\n`);
console.log(`test/fixtures/compact-golden.json: ${entries.length} messages`);
