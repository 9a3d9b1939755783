import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { getProfile } from "../../drivers/modbus/registry.js";
import type { DataType, ModbusPoint, ReadableRange, Table } from "../../drivers/modbus/types.js";
import { registerCount } from "../../drivers/modbus/types.js";
import type { PlanLimits, ReadRequest } from "../../src/sources/modbus/planner.js";
import { Breaks, DEFAULT_WIRE, naiveRequestCount, planReads, PROTOCOL_LIMITS, splitRequest } from "../../src/sources/modbus/planner.js";
import { readLimits } from "../../src/sources/modbus/source.js";
import { planMs, readMs, type WireModel, wireModel } from "../../src/sources/modbus/wire-cost.js";

const TABLES: Table[] = ["coil", "discrete", "input", "holding"];
const TYPES: DataType[] = ["int16", "uint16", "int32", "uint32", "float32", "float64", "bool", "string"];
const isBitTable = (t: Table) => t === "coil" || t === "discrete";
const limitOf = (t: Table, l: PlanLimits) => (isBitTable(t) ? l.maxBits : l.maxRegisters);
const end = (p: ModbusPoint) => p.address + registerCount(p);
const byAddress = (a: ModbusPoint, b: ModbusPoint) => a.address - b.address;

// Half the addresses fall in 0..40, so points crowd together and requests merge.
const addressArb = (maxAddress: number) => fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: maxAddress }));

const rawPoint = (maxAddress: number, tables: Table[]) =>
  fc.record({
    table: fc.constantFrom(...tables),
    address: addressArb(maxAddress),
    type: fc.constantFrom(...TYPES),
    bit: fc.integer({ min: 0, max: 15 }),
    length: fc.integer({ min: 1, max: 8 }),
  });

const limitsArb: fc.Arbitrary<PlanLimits> = fc.record(
  {
    maxRegisters: fc.integer({ min: 2, max: 125 }),
    maxBits: fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: PROTOCOL_LIMITS.maxBits })),
    maxGap: fc.integer({ min: 0, max: 20 }),
  },
  { requiredKeys: ["maxRegisters", "maxBits"] },
);

const rtu = (baud: number, parity: "none" | "even" = "none") => wireModel({ kind: "rtu", baud, parity, dataBits: 8, stopBits: 1 });

/** Every kind of transport, and one where only transactions cost (which then wants the fewest). */
const wireArb: fc.Arbitrary<WireModel> = fc.oneof(
  fc.constantFrom(1200, 2400, 9600, 19200, 115200).map((baud) => rtu(baud)),
  fc.constant(wireModel({ kind: "tcp" })),
  fc.constant(wireModel({ kind: "rtu-over-tcp" })),
);

/**
 * Random points shaped like a valid profile: within a table no two points partly overlap (points
 * on exactly the same registers, like bits of one register, may), and none exceeds the limit.
 * The survivors keep their random order.
 */
function wellFormed(points: ModbusPoint[], limits: PlanLimits): ModbusPoint[] {
  const kept = new Set<ModbusPoint>();
  for (const table of TABLES) {
    let start = -1;
    let stop = -1;
    for (const p of points.filter((q) => q.table === table).sort(byAddress)) {
      if (registerCount(p) > limitOf(table, limits)) continue;
      if (p.address >= stop) [start, stop] = [p.address, end(p)];
      else if (p.address !== start || end(p) !== stop) continue;
      kept.add(p);
    }
  }
  return points.filter((p) => kept.has(p));
}

function scenario(maxPoints: number, maxAddress: number, tables = TABLES) {
  return fc
    .record({
      raw: fc.array(rawPoint(maxAddress, tables), { maxLength: maxPoints, size: "max" }),
      limits: limitsArb,
      breakList: fc.array(fc.record({ table: fc.constantFrom(...tables), address: addressArb(maxAddress) }), { maxLength: 8 }),
      rangeList: fc.array(fc.record({ table: fc.constantFrom(...tables), first: addressArb(maxAddress), size: fc.integer({ min: 1, max: 60 }) }), { maxLength: 3 }),
      wire: wireArb,
    })
    .map(({ raw, limits, breakList, rangeList, wire }) => {
      const all = raw.map(({ table, address, type, bit, length }, i): ModbusPoint => {
        if (isBitTable(table)) return { name: `p${i}`, table, address, type: "bool" };
        return { name: `p${i}`, table, address, type, ...(type === "bool" && { bit }), ...(type === "string" && { length }) };
      });
      const breaks = new Breaks();
      for (const b of breakList) breaks.add(b.table, b.address);
      // Ranges of one table do not overlap (a profile's never do: the registry test checks it).
      const readable: ReadableRange[] = [];
      for (const { table, first, size } of rangeList) {
        const r = { table, first, last: first + size - 1 };
        if (!readable.some((o) => o.table === r.table && o.first <= r.last && r.first <= o.last)) readable.push(r);
      }
      return { points: wellFormed(all, limits), limits: { ...limits, ...(readable.length > 0 && { readable }) }, breaks, wire };
    });
}

/** The readable range holding a point entirely, as an index; -1 for none. */
const rangeOf = (p: ModbusPoint, limits: PlanLimits) => (limits.readable ?? []).findIndex((r) => r.table === p.table && r.first <= p.address && end(p) - 1 <= r.last);

/** A request of several points (not all on the same registers) that touches a readable range must lie inside it. */
function keepsToRanges(block: readonly ModbusPoint[], start: number, stop: number, limits: PlanLimits): boolean {
  if (block.every((p) => p.address === block[0]!.address)) return true;
  const touched = (limits.readable ?? []).filter((r) => r.table === block[0]!.table && r.first < stop && start <= r.last);
  return touched.every((r) => r.first <= start && stop - 1 <= r.last);
}

function float32s(n: number, base = 0): ModbusPoint[] {
  return Array.from({ length: n }, (_, i) => ({ name: `f${i}`, table: "input", address: base + 2 * i, type: "float32" }));
}

/**
 * Can one request read exactly these points (given in address order)? Written apart from the
 * planner: within the limit, no hole wider than maxGap, no break, inside one readable range or
 * touching none.
 */
function feasible(block: ModbusPoint[], limits: PlanLimits, breaks: Breaks): boolean {
  const table = block[0]!.table;
  const start = block[0]!.address;
  let stop = start;
  for (const p of block) {
    if (limits.maxGap !== undefined && p.address - stop > limits.maxGap) return false;
    if (p.address !== block[0]!.address && rangeOf(p, limits) !== rangeOf(block[0]!, limits)) return false;
    stop = Math.max(stop, end(p));
  }
  if (stop - start > limitOf(table, limits)) return false;
  if (!keepsToRanges(block, start, stop, limits)) return false;
  for (let a = start + 1; a <= block.at(-1)!.address; a++) if (breaks.has(table, a)) return false;
  return true;
}

const blockMs = (wire: WireModel, block: ModbusPoint[]) => readMs(wire, block[0]!.table, Math.max(...block.map(end)) - block[0]!.address);

/** The least wire time (and the fewest requests at that time) over every partition of the points, not only runs, by search. */
function bruteForceBest(points: ModbusPoint[], limits: PlanLimits, breaks: Breaks, wire: WireModel): { ms: number; requests: number } {
  const total = { ms: 0, requests: 0 };
  for (const table of TABLES) {
    // In address order every partial block is a prefix of its final block, and a prefix of a
    // feasible block is feasible, so pruning on partial blocks loses nothing.
    const pts = points.filter((p) => p.table === table).sort(byAddress);
    let best = { ms: Number.POSITIVE_INFINITY, requests: 0 };
    const blocks: ModbusPoint[][] = [];
    const search = (i: number): void => {
      if (i === pts.length) {
        const ms = blocks.reduce((t, b) => t + blockMs(wire, b), 0);
        if (ms < best.ms - 1e-6 || (ms < best.ms + 1e-6 && blocks.length < best.requests)) best = { ms, requests: blocks.length };
        return;
      }
      for (const b of blocks) {
        b.push(pts[i]!);
        if (feasible(b, limits, breaks)) search(i + 1);
        b.pop();
      }
      blocks.push([pts[i]!]);
      search(i + 1);
      blocks.pop();
    };
    search(0);
    if (pts.length > 0) {
      total.ms += best.ms;
      total.requests += best.requests;
    }
  }
  return total;
}

describe("planReads properties", () => {
  it("covers every point exactly once, inside its request, within the limits, never across a break or out of a readable range", () => {
    fc.assert(
      fc.property(scenario(60, 500), ({ points, limits, breaks, wire }) => {
        const plan = planReads(points, limits, breaks, wire);
        const seen = new Map<ModbusPoint, number>();
        for (const req of plan) {
          expect(req.points.length).toBeGreaterThan(0);
          expect(req.count).toBeLessThanOrEqual(limitOf(req.table, limits));
          let stop = req.address;
          for (const p of req.points) {
            seen.set(p, (seen.get(p) ?? 0) + 1);
            expect(p.table).toBe(req.table);
            expect(p.address).toBeGreaterThanOrEqual(req.address);
            expect(end(p)).toBeLessThanOrEqual(req.address + req.count);
            if (limits.maxGap !== undefined) expect(p.address - stop).toBeLessThanOrEqual(limits.maxGap);
            if (p.address !== req.address) expect(rangeOf(p, limits)).toBe(rangeOf(req.points[0]!, limits));
            stop = Math.max(stop, end(p));
          }
          // The request reads nothing past its last point.
          expect(stop).toBe(req.address + req.count);
          expect(keepsToRanges(req.points, req.address, stop, limits)).toBe(true);
          expect(req.points[0]!.address).toBe(req.address);
          for (let b = req.address + 1; b < req.address + req.count; b++) {
            // A break may only fall inside one point, where it cannot be honoured.
            if (breaks.has(req.table, b)) expect(req.points.some((p) => p.address < b && b < end(p))).toBe(true);
          }
        }
        expect(seen.size).toBe(points.length);
        for (const n of seen.values()) expect(n).toBe(1);
      }),
    );
  });

  it("sorts requests by table then address, and requests of a table do not overlap", () => {
    fc.assert(
      fc.property(scenario(60, 500), ({ points, limits, breaks, wire }) => {
        const plan = planReads(points, limits, breaks, wire);
        for (const [i, req] of plan.entries()) {
          const prev = plan[i - 1];
          if (!prev) continue;
          expect(TABLES.indexOf(prev.table)).toBeLessThanOrEqual(TABLES.indexOf(req.table));
          if (prev.table === req.table) expect(req.address).toBeGreaterThanOrEqual(prev.address + prev.count);
        }
      }),
    );
  });

  it("reads a contiguous float32 map in ceil(n / floor(maxRegisters / 2)) requests on any transport", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 0, max: 1000 }),
        limitsArb,
        wireArb,
        (n, base, limits, wire) => {
          const plan = planReads(float32s(n, base), limits, undefined, wire);
          expect(plan).toHaveLength(Math.ceil(n / Math.floor(limits.maxRegisters / 2)));
        },
      ),
    );
  });

  it("costs no more wire time than the best partition, and at that time sends no more requests (brute force on small inputs)", () => {
    fc.assert(
      fc.property(scenario(14, 40, ["input", "coil"]), ({ points, limits, breaks, wire }) => {
        const plan = planReads(points, limits, breaks, wire);
        const best = bruteForceBest(points, limits, breaks, wire);
        expect(planMs(wire, plan)).toBeCloseTo(best.ms, 6);
        expect(plan).toHaveLength(best.requests);
      }),
      { numRuns: 300 },
    );
  });

  it("sends the fewest requests where only transactions cost", () => {
    const free: WireModel = { label: "free", fixedMs: 1, msPerByte: 0, requestBytes: 8, replyBytes: 5 };
    fc.assert(
      fc.property(scenario(14, 40, ["input", "coil"]), ({ points, limits, breaks }) => {
        const fewest = bruteForceBest(points, limits, breaks, free).requests;
        expect(planReads(points, limits, breaks, free)).toHaveLength(fewest);
      }),
      { numRuns: 200 },
    );
  });
});

describe("planReads: the cost of each plan on its transport", () => {
  const limits: PlanLimits = { ...PROTOCOL_LIMITS };
  // Two float32s with 30 unused registers between them.
  const apart: ModbusPoint[] = [...float32s(1), { name: "far", table: "input", address: 32, type: "float32" }];

  it("merges over a hole when that is cheaper than a transaction of its own: at 115200 baud and on TCP, not at 9600", () => {
    expect(planReads(apart, limits, undefined, rtu(9600))).toHaveLength(2);
    expect(planReads(apart, limits, undefined, rtu(115200))).toEqual([{ table: "input", address: 0, count: 34, points: apart }]);
    expect(planReads(apart, limits, undefined, wireModel({ kind: "tcp" }))).toHaveLength(1);
    expect(planReads(apart, limits)).toHaveLength(1); // no transport given: TCP's costs
    // At 9600 the 30 registers cost 60 bytes (62.5 ms) against a second transaction's 30.8 ms.
    const one = readMs(rtu(9600), "input", 34);
    const two = readMs(rtu(9600), "input", 2) * 2;
    expect(two).toBeLessThan(one);
    expect(planMs(rtu(9600), planReads(apart, limits, undefined, rtu(9600)))).toBeCloseTo(two, 6);
  });

  it("counts 10 bits per character for 8N1 and 11 for 8E1, and the fixed t3.5 above 19200 baud", () => {
    expect(rtu(9600).msPerByte).toBeCloseTo(10 / 9.6, 6);
    expect(rtu(9600, "even").msPerByte).toBeCloseTo(11 / 9.6, 6);
    expect(wireModel({ kind: "rtu", baud: 9600, parity: "none", dataBits: 8, stopBits: 2 }).msPerByte).toBeCloseTo(11 / 9.6, 6);
    // devices.md: at 9600 a read of 2 registers (8 + 9 bytes) is ~19.5 ms on the wire at 11 bits, plus two t3.5 and the turnaround.
    const w = rtu(9600, "even");
    expect(readMs(w, "input", 2) - w.fixedMs).toBeCloseTo((17 * 11) / 9.6, 6);
    expect(w.fixedMs - 10).toBeCloseTo((2 * 3.5 * 11) / 9.6, 6);
    expect(rtu(115200).fixedMs - 10).toBeCloseTo(3.5, 6);
  });

  it("plans an SDM630's values in 2 input reads and an SDM120's 0x0000–0x004F in 1, with the profiles' facts", () => {
    const sdm630 = getProfile("sdm630")!;
    const sdm120 = getProfile("sdm120")!;
    const input = (pts: ModbusPoint[]) => pts.filter((p) => p.table === "input");
    for (const wire of [wireModel({ kind: "tcp" }), rtu(9600), rtu(115200)]) {
      const plan = planReads(input(sdm630.points), readLimits("sdm630", {}), undefined, wire);
      expect(plan.map((r) => [r.address, r.count]), wire.label).toEqual([
        [0x0000, 80],
        [0x0156, 2],
      ]);
    }
    const block = sdm120.points.filter((p) => p.table === "input" && p.address < 0x50);
    expect(planReads(block, readLimits("sdm120", {}), undefined, wireModel({ kind: "tcp" })).map((r) => [r.address, r.count])).toEqual([[0, 80]]);
    // At the SDM120's own 2400 baud the 38 registers between power factor and frequency cost
    // more than a second request, so that is what the planner sends.
    expect(planReads(block, readLimits("sdm120", {}), undefined, rtu(2400)).map((r) => [r.address, r.count])).toEqual([
      [0x0000, 0x20],
      [0x0046, 10],
    ]);
    // The whole profiles, settings included: SDM630 3 reads (0x0000–0x004F, 0x0156, holding meter id),
    // SDM120 4 (its meter id and meter code are 0xFBEE registers apart).
    expect(planReads(sdm630.points, readLimits("sdm630", {}))).toHaveLength(3);
    expect(planReads(sdm120.points, readLimits("sdm120", {}))).toHaveLength(4);
  });

  it("keeps the requests of a profile with readable ranges inside them: EPEVER", () => {
    const epever = getProfile("epever")!;
    const plan = planReads(epever.points, readLimits("epever", {}), undefined, rtu(115200));
    expect(plan.map((r) => `${r.table} 0x${r.address.toString(16)}×${r.count}`)).toEqual([
      "coil 0x0×3",
      "coil 0x6×1",
      "discrete 0x2000×1",
      "discrete 0x200c×1",
      "input 0x3100×18",
      "input 0x311a×1",
      "input 0x311d×1",
      "input 0x3200×3",
      "input 0x331a×3",
    ]);
    // Without the facts the same points merge over what the controller refuses (and are learned).
    const blind = planReads(epever.points, { ...PROTOCOL_LIMITS }, undefined, rtu(115200));
    expect(blind.some((r) => r.table === "input" && r.address === 0x3100 && r.count > 18)).toBe(true);
  });

  it("honours hard caps: a user's max_gap, the profile's registers per read, a user's lower max_registers", () => {
    expect(planReads(apart, { ...limits, maxGap: 29 }, undefined, rtu(115200))).toHaveLength(2);
    expect(planReads(apart, { ...limits, maxGap: 30 }, undefined, rtu(115200))).toHaveLength(1);
    expect(readLimits("sdm630", {}).maxRegisters).toBe(80);
    expect(readLimits("sdm630", { maxRegisters: 40 }).maxRegisters).toBe(40);
    expect(readLimits("sdm630", { maxRegisters: 125 }).maxRegisters).toBe(80);
    expect(readLimits(undefined, { maxGap: 0 })).toEqual({ ...PROTOCOL_LIMITS, maxGap: 0 });
    const plan = planReads(float32s(50), readLimits("sdm630", { maxRegisters: 40 }));
    expect(plan.map((r) => r.count)).toEqual([40, 40, 20]);
  });

  it("still splits where a break was learned, whatever merging would save", () => {
    const breaks = new Breaks();
    breaks.add("input", 32);
    expect(planReads(apart, limits, breaks, wireModel({ kind: "tcp" })).map((r) => [r.address, r.count])).toEqual([
      [0, 2],
      [32, 2],
    ]);
    breaks.delete("input", 32);
    expect(planReads(apart, limits, breaks, wireModel({ kind: "tcp" }))).toHaveLength(1);
  });
});

describe("planReads examples", () => {
  const limits: PlanLimits = { ...PROTOCOL_LIMITS, maxGap: 5 };

  it("reads over a gap of at most maxGap registers", () => {
    const pts: ModbusPoint[] = [...float32s(2), { name: "far", table: "input", address: 10, type: "float32" }];
    expect(planReads(pts, limits)).toHaveLength(2); // 6 unused registers, 4–9
    expect(planReads(pts, { ...limits, maxGap: 6 })).toEqual([{ table: "input", address: 0, count: 12, points: pts }]);
    expect(naiveRequestCount(pts)).toBe(3);
  });

  it("puts bits of one register and the register after it in one request", () => {
    const bits: ModbusPoint[] = [0, 1, 2].map((bit) => ({ name: `b${bit}`, table: "holding", address: 10, type: "bool", bit }));
    const word: ModbusPoint = { name: "w", table: "holding", address: 11, type: "uint16" };
    expect(planReads([word, ...bits], limits)).toEqual([{ table: "holding", address: 10, count: 2, points: [...bits, word] }]);
  });

  it("orders requests by table, then address", () => {
    const pts: ModbusPoint[] = [
      { name: "h", table: "holding", address: 0, type: "uint16" },
      { name: "i2", table: "input", address: 100, type: "uint16" },
      { name: "i1", table: "input", address: 0, type: "uint16" },
      { name: "c", table: "coil", address: 3, type: "bool" },
    ];
    expect(planReads(pts, limits).map((r) => r.points[0]!.name)).toEqual(["c", "i1", "i2", "h"]);
  });

  it("does not read across a break", () => {
    const breaks = new Breaks();
    breaks.add("input", 4);
    breaks.add("input", 4);
    expect(breaks.size).toBe(1);
    expect(breaks.has("input", 4)).toBe(true);
    expect(breaks.has("holding", 4)).toBe(false);
    expect(planReads(float32s(4), limits, breaks).map((r) => [r.address, r.count])).toEqual([
      [0, 4],
      [4, 4],
    ]);
  });

  it("refuses a point no single read can return, naming it", () => {
    const serial: ModbusPoint = { name: "serial", table: "holding", address: 0x10, type: "string", length: 126 };
    expect(() => planReads([serial], { ...PROTOCOL_LIMITS, maxGap: 0 })).toThrow(/serial.*126/);
    expect(() => planReads([], { maxRegisters: 126, maxBits: 2000, maxGap: 0 })).toThrow(/maxRegisters 126/);
    expect(DEFAULT_WIRE.label).toBe("tcp");
  });
});

describe("splitRequest", () => {
  it("splits at an address (the widest hole, else the middle); replanning with that break separates exactly there", () => {
    fc.assert(
      fc.property(scenario(60, 500), ({ points, limits, wire }) => {
        for (const req of planReads(points, limits, undefined, wire)) {
          const split = splitRequest(req);
          const addresses = new Set(req.points.map((p) => p.address));
          if (addresses.size < 2) {
            expect(split).toBeNull();
            continue;
          }
          expect(split).not.toBeNull();
          const { breakAt, parts } = split!;
          expect([...parts[0].points, ...parts[1].points]).toEqual(req.points);
          expect(parts[1].address).toBe(breakAt);
          for (const p of parts[0].points) expect(p.address).toBeLessThan(breakAt);
          const gapless = req.points.reduce((n, p) => n + registerCount(p), 0) === req.count;
          if (addresses.size === req.points.length && gapless) {
            expect(Math.abs(parts[0].points.length - parts[1].points.length)).toBeLessThanOrEqual(1);
          }
          if (!gapless) {
            // The cut lies at a hole at least as wide as any other between the request's points.
            const sorted = [...req.points].sort((a, b) => a.address - b.address);
            const gapAt = (i: number) => sorted[i]!.address - (sorted[i - 1]!.address + registerCount(sorted[i - 1]!));
            const widest = Math.max(...sorted.slice(1).map((_, i) => gapAt(i + 1)));
            const cutIndex = sorted.findIndex((p) => p.address === breakAt);
            expect(gapAt(cutIndex)).toBe(widest);
          }
          const breaks = new Breaks();
          breaks.add(req.table, breakAt);
          expect(planReads(req.points, limits, breaks, wire)).toEqual<ReadRequest[]>(parts);
        }
      }),
    );
  });

  it("halves four float32s at the third", () => {
    const pts = float32s(4);
    const split = splitRequest({ table: "input", address: 0, count: 8, points: pts });
    expect(split).toEqual({
      breakAt: 4,
      parts: [
        { table: "input", address: 0, count: 4, points: pts.slice(0, 2) },
        { table: "input", address: 4, count: 4, points: pts.slice(2) },
      ],
    });
  });

  it("cuts at the hole, not in the middle", () => {
    const pts = [0, 2, 4, 40].map((a, i) => ({ name: `p${i}`, table: "input" as const, address: a, type: "float32" as const }));
    const split = splitRequest({ table: "input", address: 0, count: 42, points: pts });
    expect(split?.breakAt).toBe(40);
    expect(split?.parts.map((r) => r.points.length)).toEqual([3, 1]);
  });

  it("returns null for one point or bits of one register", () => {
    expect(splitRequest({ table: "input", address: 0, count: 2, points: float32s(1) })).toBeNull();
    const bits: ModbusPoint[] = [0, 1].map((bit) => ({ name: `b${bit}`, table: "holding", address: 7, type: "bool", bit }));
    expect(splitRequest({ table: "holding", address: 7, count: 1, points: bits })).toBeNull();
  });
});
