/**
 * Telemetry payload v2 (src/uplink/compact.ts): any batch decodes back to exactly the readings
 * and sequence numbers it was made of (property test, values of every kind, NaN and ±Infinity,
 * -0, huge and tiny numbers, texts); hostile payloads are reasons, never exceptions or misreads;
 * and it is as small as the issue asks on a realistic recording.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Quality, StoredReading, Value } from "../../src/model/reading.js";
import { decodeTelemetry, encodeTelemetry } from "../../src/uplink/codec.js";
import { type CompactDictionary, compactHeader, decodeCompact, encodeCompact, isCompact } from "../../src/uplink/compact.js";

/** A dictionary as the gateway keeps it: ids handed out in order, never reused. */
function dictionary(): CompactDictionary & { names: Map<number, string> } {
  const ids = new Map<string, number>();
  const names = new Map<number, string>();
  const d = {
    version: 1,
    names,
    idOf(point: string) {
      let id = ids.get(point);
      if (id === undefined) {
        id = ids.size + 1;
        ids.set(point, id);
        names.set(id, point);
        d.version++;
      }
      return id;
    },
  };
  return d;
}

const value: fc.Arbitrary<Value> = fc.oneof(
  fc.double(),
  fc.integer(),
  fc.constantFrom(0, -0, 1e-300, -1e300, Number.MAX_VALUE, Number.MIN_VALUE, Number.NaN, Infinity, -Infinity, 21.37, 0.1, 230.4),
  fc.boolean(),
  fc.constant(null),
  fc.string({ maxLength: 40 }),
  fc.constantFrom("__proto__", "constructor", "toString", "ünïcødé ✓"),
);
const quality: fc.Arbitrary<Quality> = fc.constantFrom("good", "good", "good", "uncertain", "bad");

const batch = fc
  .record({
    first: fc.integer({ min: 1, max: 2 ** 40 }),
    points: fc.array(fc.constantFrom("m1/p", "m1/q", "room/co2", "__proto__/x", "a/constructor", "b/ü"), { minLength: 1, maxLength: 4 }),
    readings: fc.array(fc.record({ p: fc.nat(3), dt: fc.integer({ min: 0, max: 100_000 }), value, quality }), { minLength: 1, maxLength: 300 }),
    start: fc.integer({ min: 0, max: 2 ** 42 }),
  })
  .map(({ first, points, readings, start }) => {
    let ts = start;
    return readings.map((r, i): StoredReading => {
      ts += r.dt;
      return { seq: first + i, point: points[r.p % points.length]!, ts, value: r.value, quality: r.quality };
    });
  });

function roundTrip(rows: StoredReading[], deflate: boolean) {
  const d = dictionary();
  const enc = encodeCompact("gw-1", rows, d, { maxBytes: 10_000_000, deflate });
  const dec = decodeCompact(enc!.payload, (v) => (v <= d.version ? d.names : undefined));
  return { enc: enc!, dec };
}

describe("compact telemetry (v2)", () => {
  it("any batch decodes back to exactly the same readings and sequence numbers (NaN, ±Infinity, -0 included)", () => {
    fc.assert(
      fc.property(batch, fc.boolean(), (rows, deflate) => {
        const { enc, dec } = roundTrip(rows, deflate);
        expect(isCompact(enc.payload)).toBe(true);
        expect(enc.count).toBe(rows.length);
        if (!dec.ok) throw new Error(dec.reason);
        expect(dec.msg.seq).toEqual([rows[0]!.seq, rows.at(-1)!.seq]);
        expect(dec.msg.r.length).toBe(rows.length);
        dec.msg.r.forEach((w, i) => {
          const r = rows[i]!;
          expect(w[0]).toBe(r.point);
          expect(w[1]).toBe(r.ts);
          expect(Object.is(w[2], r.value)).toBe(true);
          expect(w[3] ?? "good").toBe(r.quality);
        });
      }),
      { numRuns: 300 },
    );
  });

  it("cuts a batch at a gap in the sequence numbers and at maxBytes, as v1 does", () => {
    const rows: StoredReading[] = Array.from({ length: 500 }, (_, i) => ({ seq: i < 300 ? 10 + i : 20 + i, point: `m/p${i % 7}`, ts: 1e12 + i * 1000, value: Math.sin(i) * 1000, quality: "good" }));
    const d = dictionary();
    expect(encodeCompact("gw", rows, d, { maxBytes: 1e7 })!.count).toBe(300);
    const small = encodeCompact("gw", rows, d, { maxBytes: 600 })!;
    expect(small.payload.length).toBeLessThanOrEqual(600);
    expect(small.count).toBeGreaterThan(10);
    expect(small.count).toBeLessThan(300);
  });

  it("hostile payloads are reasons, never exceptions; nothing is silently misread", () => {
    const rows: StoredReading[] = Array.from({ length: 50 }, (_, i) => ({ seq: 1 + i, point: `m/p${i % 3}`, ts: 1e12 + i, value: i % 5 === 0 ? "txt" : i, quality: "good" }));
    const d = dictionary();
    const good = encodeCompact("gw", rows, d, { maxBytes: 1e6, deflate: false })!.payload;
    const dict = (v: number) => (v <= d.version ? d.names : undefined);
    expect(decodeCompact(good, dict).ok).toBe(true);
    for (let cut = 0; cut < good.length; cut++) {
      const r = decodeCompact(good.subarray(0, cut), dict);
      expect(r.ok).toBe(false);
    }
    // Every single-byte change is refused or decodes to something: never an exception.
    let refused = 0;
    for (let i = 0; i < good.length; i++) {
      for (const x of [1, 0x80, 0xff]) {
        const bad = Buffer.from(good);
        bad[i]! ^= x;
        const r = decodeCompact(bad, dict);
        if (!r.ok) refused++;
      }
    }
    expect(refused).toBeGreaterThan(0);
    // A dictionary not received yet, an id the dictionary does not have, a deflate bomb, other versions.
    expect(decodeCompact(good, () => undefined)).toMatchObject({ ok: false, reason: expect.stringMatching(/needs dictionary version \d+, which has not been received/) });
    expect(decodeCompact(good, () => new Map([[1, "m/p0"]]))).toMatchObject({ ok: false, reason: expect.stringMatching(/point id 2 is not in dictionary/) });
    expect(decodeCompact(Buffer.from('{"v":1}'), dict)).toMatchObject({ ok: false, reason: "not a compact (v2) payload" });
    expect(decodeCompact(Buffer.from([0xc5, 3, 0]), dict)).toMatchObject({ ok: false, reason: expect.stringMatching(/version 3/) });
    const { deflateRawSync } = require("node:zlib") as typeof import("node:zlib");
    const bomb = Buffer.concat([good.subarray(0, compactHeader(good).ok ? (compactHeader(good) as { bodyAt: number }).bodyAt : 0), deflateRawSync(Buffer.alloc(64 * 1024 * 1024))]);
    bomb[2] = 1;
    expect(decodeCompact(bomb, dict).ok).toBe(false);
  });

  it("is distinguishable from v1 by its first byte", () => {
    const rows: StoredReading[] = [{ seq: 1, point: "a/b", ts: 1, value: 1, quality: "good" }];
    const v1 = encodeTelemetry("gw", rows, 1e6)!.payload;
    expect(isCompact(Buffer.from(v1))).toBe(false);
    expect(decodeTelemetry(v1).ok).toBe(true);
    expect(isCompact(encodeCompact("gw", rows, dictionary(), { maxBytes: 1e6 })!.payload)).toBe(true);
  });

  it("a realistic backlog: a few bytes per reading, well under deflated JSON", () => {
    // 50 meter points every 10 s for an hour: 2-decimal values that move slowly, as meters do.
    const rows: StoredReading[] = [];
    let seq = 1;
    for (let t = 0; t < 360; t++) {
      for (let p = 0; p < 50; p++) {
        const v = Math.round((230 + p + 2 * Math.sin(t / 30 + p)) * 100) / 100;
        rows.push({ seq: seq++, point: `meter-${p % 5}/v${p}`, ts: 1_764_000_000_000 + t * 10_000 + p, value: v, quality: "good" });
      }
    }
    const d = dictionary();
    let v2 = 0;
    let json = 0;
    let jsonDeflated = 0;
    const { deflateRawSync } = require("node:zlib") as typeof import("node:zlib");
    for (let i = 0; i < rows.length; i += 1000) {
      const part = rows.slice(i, i + 1000);
      v2 += encodeCompact("gw-1", part, d, { maxBytes: 65_536 })!.payload.length;
      const j = encodeTelemetry("gw-1", part, 1e7)!.payload;
      json += Buffer.byteLength(j);
      jsonDeflated += deflateRawSync(Buffer.from(j)).length;
    }
    const perReading = v2 / rows.length;
    expect(perReading).toBeLessThan(3);
    expect(v2).toBeLessThan(jsonDeflated / 2);
    expect(json / rows.length).toBeGreaterThan(30);
  });
});

describe("golden messages (test/fixtures/compact-golden.json, written by scripts/compact-golden.ts)", () => {
  interface Golden {
    name: string;
    hex: string;
    dictionary: { version: number; points: Record<string, string> };
    expect: { gw: string; seq: [number, number]; r: unknown[][] };
  }
  const golden = (JSON.parse(readFileSync("test/fixtures/compact-golden.json", "utf8")) as { messages: Golden[] }).messages;
  const revive = (v: unknown) => (v !== null && typeof v === "object" && "num" in v ? Number((v as { num: string }).num) : v);
  const newest = golden.reduce((a, b) => (b.dictionary.version > a.dictionary.version ? b : a)).dictionary;
  const names = new Map(Object.entries(newest.points).map(([id, p]) => [Number(id), p]));

  it("covers nulls, qualities, booleans, texts, NaN, ±Infinity, -0, huge and tiny numbers, deflate, and a dictionary change", () => {
    const all = golden.flatMap((g) => g.expect.r);
    expect(all.some((r) => r[2] === null)).toBe(true);
    expect(all.some((r) => r[3] === "bad") && all.some((r) => r[3] === "uncertain")).toBe(true);
    expect(all.some((r) => r[2] === true) && all.some((r) => r[2] === false)).toBe(true);
    expect(all.some((r) => typeof r[2] === "string")).toBe(true);
    for (const n of ["NaN", "Infinity", "-Infinity", "-0"]) expect(all.some((r) => (r[2] as { num?: string } | null)?.num === n)).toBe(true);
    expect(new Set(golden.map((g) => g.dictionary.version)).size).toBeGreaterThan(1);
    expect(golden.some((g) => (parseInt(g.hex.slice(4, 6), 16) & 1) === 1)).toBe(true);
  });

  it("the TypeScript decoder reads each as expected, with its own dictionary version and with the newest", () => {
    for (const g of golden) {
      const own = new Map(Object.entries(g.dictionary.points).map(([id, p]) => [Number(id), p]));
      for (const dict of [own, names]) {
        const r = decodeCompact(Buffer.from(g.hex, "hex"), (v) => (v <= g.dictionary.version || dict === names ? dict : undefined));
        if (!r.ok) throw new Error(`${g.name}: ${r.reason}`);
        expect(r.msg.gw).toBe(g.expect.gw);
        expect(r.msg.seq).toEqual(g.expect.seq);
        r.msg.r.forEach((row, i) => {
          const want = g.expect.r[i]!;
          expect([row[0], row[1], row[3]]).toEqual([want[0], want[1], want[3]]);
          expect(Object.is(row[2], revive(want[2]))).toBe(true);
        });
      }
    }
    // An older dictionary than the message needs: refused, named.
    const late = golden.find((g) => g.name === "new-point")!;
    expect(decodeCompact(Buffer.from(late.hex, "hex"), (v) => (v <= 1 ? names : undefined))).toMatchObject({ ok: false });
  });

  it("the Python decoder (docs/decoders/edge_agent_compact.py, standard library only) reads each the same", () => {
    const out = execFileSync("python3", ["docs/decoders/edge_agent_compact.py", "--golden", "test/fixtures/compact-golden.json"], { encoding: "utf8" });
    const py = JSON.parse(out) as Array<{ name: string; msg: { gw: string; seq: number[]; r: unknown[][] } }>;
    expect(py.map((m) => m.name)).toEqual(golden.map((g) => g.name));
    py.forEach((m, i) => {
      const g = golden[i]!;
      expect(m.msg.gw).toBe(g.expect.gw);
      expect(m.msg.seq).toEqual(g.expect.seq);
      expect(m.msg.r).toEqual(g.expect.r);
    });
  });

  it("the Python decoder refuses truncated and corrupted messages with a reason, never misreads", () => {
    const g = golden.find((x) => x.name === "kinds")!;
    const script = `
import json, sys
sys.path.insert(0, "docs/decoders")
from edge_agent_compact import decode, DecodeError
p = bytes.fromhex(${JSON.stringify(g.hex)})
names = {int(k): v for k, v in ${JSON.stringify(g.dictionary.points)}.items()}
out = []
for cut in range(len(p)):
    try:
        decode(p[:cut], lambda v: names)
        out.append("decoded")
    except DecodeError as e:
        out.append("refused")
try:
    decode(p, lambda v: None)
except DecodeError as e:
    out.append(str(e))
print(json.dumps(out))
`;
    const out = JSON.parse(execFileSync("python3", ["-c", script], { encoding: "utf8" })) as string[];
    expect(out.slice(0, -1).every((x) => x === "refused")).toBe(true);
    expect(out.at(-1)).toMatch(/needs dictionary version \d+, which has not been received/);
  });
});

describe("the point dictionary (ids for good, on disk, published retained)", () => {
  it("keeps ids across a restart, adds new ones after them, and never renumbers", async () => {
    const { PointDictionary, parseDictionary } = await import("../../src/uplink/dictionary.js");
    const { tempDir } = await import("../helpers/tmp.js");
    const path = `${tempDir()}/dictionary.json`;
    const a = new PointDictionary(path);
    expect([a.idOf("m/a"), a.idOf("m/b"), a.idOf("m/a")]).toEqual([1, 2, 1]);
    expect(a.changed).toBe(true);
    a.save();
    expect(a.changed).toBe(false);
    const b = new PointDictionary(path);
    expect(b.version).toBe(2);
    expect([b.idOf("m/c"), b.idOf("m/b"), b.idOf("m/a")]).toEqual([3, 2, 1]);
    const d = parseDictionary(b.payload("gw-1"));
    expect(d.ok && [d.version, d.gw, [...d.names]]).toEqual([3, "gw-1", [[1, "m/a"], [2, "m/b"], [3, "m/c"]]]);
  });

  it("refuses a dictionary message that is not one, prototype keys included", async () => {
    const { parseDictionary } = await import("../../src/uplink/dictionary.js");
    for (const bad of ["nope", "[]", '{"v":1}', '{"v":2,"gw":"g","version":1,"points":{"__proto__":"x"}}', '{"v":2,"gw":"g","version":1,"points":{"0":"x"}}', '{"v":2,"gw":"g","version":1,"points":{"1":5}}', '{"v":2,"gw":"g","version":1e400,"points":{}}']) {
      expect(parseDictionary(bad).ok, bad).toBe(false);
    }
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });
});
