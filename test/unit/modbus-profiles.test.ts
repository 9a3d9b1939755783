import { describe, expect, it } from "vitest";
import { decodePoint, encodePoint } from "../../drivers/modbus/codec.js";
import { getProfile, listProfiles, profileIds } from "../../drivers/modbus/registry.js";
import type { ModbusPoint, ModbusProfile } from "../../drivers/modbus/types.js";
import { registerCount } from "../../drivers/modbus/types.js";
import { naiveRequestCount, planReads, PROTOCOL_LIMITS } from "../../src/sources/modbus/planner.js";
import { readLimits } from "../../src/sources/modbus/source.js";

const ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"];
const isBitTable = (p: ModbusPoint) => p.table === "coil" || p.table === "discrete";
const isNumeric = (p: ModbusPoint) => !isBitTable(p) && p.type !== "bool" && p.type !== "string";
const where = (profile: ModbusProfile, p: { name?: string; table: string; address: number }) =>
  `${profile.id} ${p.name ?? "probe"} ${p.table} 0x${p.address.toString(16)}`;

function point(id: string, table: string, address: number): ModbusPoint {
  const p = getProfile(id)?.points.find((q) => q.table === table && q.address === address);
  if (!p) throw new Error(`${id} has no ${table} point at 0x${address.toString(16)}`);
  return p;
}

describe("modbus profile registry", () => {
  it("has unique ids equal to the registry keys", () => {
    const ids = listProfiles().map((p) => p.id);
    expect(ids).toEqual(profileIds());
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(getProfile(id)?.id).toBe(id);
    expect(getProfile("toString")).toBeUndefined();
    expect(getProfile("nope")).toBeUndefined();
  });

  describe.each(listProfiles().map((p) => [p.id, p] as const))("%s", (_id, profile) => {
    it("names its source and points uniquely in snake_case", () => {
      expect(profile.source.length).toBeGreaterThan(0);
      expect(profile.points.length).toBeGreaterThan(0);
      const names = profile.points.map((p) => p.name);
      expect(new Set(names).size).toBe(names.length);
      for (const name of names) expect(name).toMatch(/^[a-z][a-z0-9_]*$/);
    });

    it("keeps addresses inside the 16-bit address space", () => {
      for (const p of profile.points) {
        expect(Number.isInteger(p.address), where(profile, p)).toBe(true);
        expect(p.address, where(profile, p)).toBeGreaterThanOrEqual(0);
        expect(p.address + registerCount(p) - 1, where(profile, p)).toBeLessThanOrEqual(0xffff);
      }
    });

    it("types its points consistently with their table", () => {
      for (const p of profile.points) {
        if (isBitTable(p)) expect(p.type, where(profile, p)).toBe("bool");
        if (!isBitTable(p) && registerCount(p) > 1) expect(ORDERS, where(profile, p)).toContain(p.order ?? "ABCD");
        if (p.type === "bool" && !isBitTable(p)) expect(p.bit, where(profile, p)).toBeGreaterThanOrEqual(0);
        if (p.writable) expect(["coil", "holding"], where(profile, p)).toContain(p.table);
      }
    });

    it("gives every numeric point a unit ('' when dimensionless) and a sim hint its type can hold", () => {
      for (const p of profile.points.filter(isNumeric)) {
        expect(typeof p.unit, where(profile, p)).toBe("string");
        expect(p.sim, where(profile, p)).toBeDefined();
        const { min, max } = p.sim!;
        expect(min, where(profile, p)).toBeLessThanOrEqual(max);
        // An unsigned register cannot show a negative simulated value, nor a 16-bit one 700 V.
        for (const v of [min, max]) expect(decodePoint(p, encodePoint(p, v)), where(profile, p)).toBeCloseTo(v, 2);
      }
    });

    it("has no two points on the same registers, except bits of one register", () => {
      const pts = profile.points;
      for (const [i, a] of pts.entries()) {
        for (const b of pts.slice(i + 1)) {
          if (a.table !== b.table) continue;
          const overlap = a.address < b.address + registerCount(b) && b.address < a.address + registerCount(a);
          const bits = !isBitTable(a) && a.type === "bool" && b.type === "bool" && a.address === b.address && a.bit !== b.bit;
          expect(overlap && !bits, `${where(profile, a)} overlaps ${where(profile, b)}`).toBe(false);
        }
      }
    });

    it("states its block-read facts consistently: registers per read within the protocol, readable ranges apart and around whole points", () => {
      if (profile.maxRegisters !== undefined) {
        expect(Number.isInteger(profile.maxRegisters)).toBe(true);
        expect(profile.maxRegisters).toBeGreaterThanOrEqual(1);
        expect(profile.maxRegisters).toBeLessThanOrEqual(PROTOCOL_LIMITS.maxRegisters);
      }
      const ranges = profile.readable ?? [];
      for (const [i, r] of ranges.entries()) {
        const at = `${profile.id} readable ${r.table} 0x${r.first.toString(16)}–0x${r.last.toString(16)}`;
        expect(r.first, at).toBeLessThanOrEqual(r.last);
        expect(r.first, at).toBeGreaterThanOrEqual(0);
        expect(r.last, at).toBeLessThanOrEqual(0xffff);
        for (const o of ranges.slice(i + 1)) expect(o.table === r.table && o.first <= r.last && r.first <= o.last, `${at} overlaps another`).toBe(false);
        // A point half in a range would make the range's edge cut through a value.
        for (const p of profile.points.filter((q) => q.table === r.table)) {
          const inside = r.first <= p.address && p.address + registerCount(p) - 1 <= r.last;
          const apart = p.address + registerCount(p) - 1 < r.first || p.address > r.last;
          expect(inside || apart, `${where(profile, p)} straddles ${at}`).toBe(true);
        }
      }
    });

    it("identifies by registers that its points cover", () => {
      for (const probe of profile.identify ?? []) {
        const n = registerCount(probe);
        const covered = profile.points.some(
          (p) => p.table === probe.table && p.address <= probe.address && probe.address + n <= p.address + registerCount(p),
        );
        expect(covered, where(profile, probe)).toBe(true);
        expect(probe.equals !== undefined || (probe.min !== undefined && probe.max !== undefined)).toBe(true);
      }
    });

    it("passes its own identify probes when simulated", () => {
      for (const probe of profile.identify ?? []) {
        const p = profile.points.find((q) => q.table === probe.table && q.address === probe.address);
        expect(p?.sim, where(profile, probe)).toBeDefined();
        for (const v of [p!.sim!.min, p!.sim!.max]) {
          const seen = decodePoint({ ...probe, name: "probe" }, encodePoint(p!, v)) as number;
          if (probe.equals !== undefined) expect(seen, where(profile, probe)).toBe(probe.equals);
          else expect(seen >= probe.min! && seen <= probe.max!, `${where(profile, probe)} reads ${seen}`).toBe(true);
        }
      }
    });
  });
});

describe("modbus profile facts (devices.md)", () => {
  it("SDM120: voltage is an input float32 at 0x0000, 2400 8N1 unit 1, meter code 0x0020 at 0xFC02", () => {
    expect(point("sdm120", "input", 0x0000)).toMatchObject({ type: "float32", unit: "V" });
    expect(getProfile("sdm120")?.serial).toEqual({ baud: 2400, parity: "none", dataBits: 8, stopBits: 1, unit: 1 });
    expect(getProfile("sdm120")?.identify).toEqual([{ table: "holding", address: 0xfc02, type: "uint16", equals: 0x20 }]);
    expect(point("sdm120", "holding", 0x0014)).toMatchObject({ type: "float32", writable: true });
  });

  it("SDM630: total active power at input 0x0034, 9600 parity none", () => {
    expect(point("sdm630", "input", 0x0034)).toMatchObject({ type: "float32", unit: "W" });
    expect(getProfile("sdm630")?.serial).toMatchObject({ baud: 9600, parity: "none" });
    const probed = getProfile("sdm630")?.identify?.map((p) => p.address);
    expect(probed).toEqual(expect.arrayContaining([0x0002, 0x0004]));
  });

  it("EPEVER: battery voltage at input 0x3104 × 0.01, PV power 32-bit low word first, load coil writable", () => {
    expect(point("epever", "input", 0x3104)).toMatchObject({ type: "uint16", scale: 0.01, unit: "V" });
    expect(point("epever", "input", 0x3102)).toMatchObject({ type: "uint32", order: "CDAB", scale: 0.01 });
    expect(point("epever", "coil", 0x0002)).toMatchObject({ type: "bool", writable: true });
    expect(point("epever", "discrete", 0x200c).type).toBe("bool");
    expect(getProfile("epever")?.serial).toEqual({ baud: 115200, parity: "none", dataBits: 8, stopBits: 1, unit: 1 });
  });

  it("Eastron block reads: up to 80 registers, unused input registers read as zero; EPEVER only within its blocks", () => {
    for (const id of ["sdm120", "sdm630"]) {
      expect(getProfile(id)?.maxRegisters, id).toBe(80);
      expect(getProfile(id)?.readable, id).toEqual([{ table: "input", first: 0, last: 0x157 }]);
    }
    const epever = getProfile("epever")!;
    expect(epever.readable).toContainEqual({ table: "input", first: 0x3100, last: 0x3111 });
    for (const alone of [0x311a, 0x311b, 0x311d]) expect(epever.readable).toContainEqual({ table: "input", first: alone, last: alone });
  });

  it("SDM630: the input points plan into 2 reads (0x0000–0x004F, 0x0156), one per point without a planner", () => {
    const sdm630 = getProfile("sdm630")!;
    const plan = planReads(sdm630.points, readLimits("sdm630", {}));
    expect(plan.filter((r) => r.table === "input").map((r) => [r.address, r.count])).toEqual([
      [0, 80],
      [0x156, 2],
    ]);
    // …plus the holding register with the meter id.
    expect(plan).toHaveLength(3);
    expect(naiveRequestCount(sdm630.points)).toBe(sdm630.points.length);
  });
});
