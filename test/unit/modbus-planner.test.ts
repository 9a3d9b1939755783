import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { DataType, ModbusPoint, Table } from "../../drivers/modbus/types.js";
import { registerCount } from "../../drivers/modbus/types.js";
import type { PlanLimits, ReadRequest } from "../../src/sources/modbus/planner.js";
import { Breaks, naiveRequestCount, planReads, PROTOCOL_LIMITS, splitRequest } from "../../src/sources/modbus/planner.js";

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

const limitsArb: fc.Arbitrary<PlanLimits> = fc.record({
  maxRegisters: fc.integer({ min: 2, max: 125 }),
  maxBits: fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: PROTOCOL_LIMITS.maxBits })),
  maxGap: fc.integer({ min: 0, max: 20 }),
});

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
    })
    .map(({ raw, limits, breakList }) => {
      const all = raw.map(({ table, address, type, bit, length }, i): ModbusPoint => {
        if (isBitTable(table)) return { name: `p${i}`, table, address, type: "bool" };
        return { name: `p${i}`, table, address, type, ...(type === "bool" && { bit }), ...(type === "string" && { length }) };
      });
      const breaks = new Breaks();
      for (const b of breakList) breaks.add(b.table, b.address);
      return { points: wellFormed(all, limits), limits, breaks };
    });
}

function float32s(n: number, base = 0): ModbusPoint[] {
  return Array.from({ length: n }, (_, i) => ({ name: `f${i}`, table: "input", address: base + 2 * i, type: "float32" }));
}

/** Can one request read exactly these points (given in address order)? Written apart from the planner. */
function feasible(block: ModbusPoint[], limits: PlanLimits, breaks: Breaks): boolean {
  const table = block[0]!.table;
  const start = block[0]!.address;
  let stop = start;
  for (const p of block) {
    if (p.address - stop > limits.maxGap) return false;
    stop = Math.max(stop, end(p));
  }
  if (stop - start > limitOf(table, limits)) return false;
  for (let a = start + 1; a <= block.at(-1)!.address; a++) if (breaks.has(table, a)) return false;
  return true;
}

/** The fewest requests over every partition of the points (not only runs), by search. */
function bruteForceMinimum(points: ModbusPoint[], limits: PlanLimits, breaks: Breaks): number {
  let total = 0;
  for (const table of TABLES) {
    // In address order every partial block is a prefix of its final block, and a prefix of a
    // feasible block is feasible, so pruning on partial blocks loses nothing.
    const pts = points.filter((p) => p.table === table).sort(byAddress);
    let best = pts.length;
    const blocks: ModbusPoint[][] = [];
    const search = (i: number): void => {
      if (blocks.length >= best) return;
      if (i === pts.length) {
        best = blocks.length;
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
    total += best;
  }
  return total;
}

describe("planReads properties", () => {
  it("covers every point exactly once, inside its request, within the limits, never across a break", () => {
    fc.assert(
      fc.property(scenario(60, 500), ({ points, limits, breaks }) => {
        const plan = planReads(points, limits, breaks);
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
            expect(p.address - stop).toBeLessThanOrEqual(limits.maxGap);
            stop = Math.max(stop, end(p));
          }
          // The request reads nothing past its last point.
          expect(stop).toBe(req.address + req.count);
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
      fc.property(scenario(60, 500), ({ points, limits, breaks }) => {
        const plan = planReads(points, limits, breaks);
        for (const [i, req] of plan.entries()) {
          const prev = plan[i - 1];
          if (!prev) continue;
          expect(TABLES.indexOf(prev.table)).toBeLessThanOrEqual(TABLES.indexOf(req.table));
          if (prev.table === req.table) expect(req.address).toBeGreaterThanOrEqual(prev.address + prev.count);
        }
      }),
    );
  });

  it("reads a contiguous float32 map in ceil(n / floor(maxRegisters / 2)) requests", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 0, max: 1000 }),
        limitsArb,
        (n, base, limits) => {
          const plan = planReads(float32s(n, base), limits);
          expect(plan).toHaveLength(Math.ceil(n / Math.floor(limits.maxRegisters / 2)));
        },
      ),
    );
  });

  it("needs no more requests than the true minimum (brute force on small inputs)", () => {
    fc.assert(
      fc.property(scenario(16, 30, ["input", "coil"]), ({ points, limits, breaks }) => {
        expect(planReads(points, limits, breaks)).toHaveLength(bruteForceMinimum(points, limits, breaks));
      }),
      { numRuns: 300 },
    );
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
  });
});

describe("splitRequest", () => {
  it("splits at an address (the widest hole, else the middle); replanning with that break separates exactly there", () => {
    fc.assert(
      fc.property(scenario(60, 500), ({ points, limits }) => {
        for (const req of planReads(points, limits)) {
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
          expect(planReads(req.points, limits, breaks)).toEqual<ReadRequest[]>(parts);
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
