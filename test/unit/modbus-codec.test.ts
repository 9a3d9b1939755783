import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodePoint, encodePoint } from "../../drivers/modbus/codec.js";
import type { DataType, ModbusPoint, WordOrder } from "../../drivers/modbus/types.js";

const ORDERS: WordOrder[] = ["ABCD", "CDAB", "BADC", "DCBA"];

function point(type: DataType, extra: Partial<ModbusPoint> = {}): ModbusPoint {
  return { name: "p", table: "input", address: 0, type, ...extra };
}

describe("modbus codec", () => {
  it("decodes the SDM reference frame 43 66 33 34 as 230.2 V (float32 ABCD)", () => {
    expect(decodePoint(point("float32", { order: "ABCD" }), [0x4366, 0x3334])).toBeCloseTo(230.2, 4);
  });

  it("decodes the EPEVER reference value 0x04CE as 12.30 V (uint16 × 0.01)", () => {
    expect(decodePoint(point("uint16", { scale: 0.01 }), [0x04ce])).toBe(12.3);
  });

  it("places the bytes of a 32-bit value as each word order says", () => {
    const expected: Record<WordOrder, number[]> = {
      ABCD: [0x1234, 0x5678],
      CDAB: [0x5678, 0x1234],
      BADC: [0x3412, 0x7856],
      DCBA: [0x7856, 0x3412],
    };
    for (const order of ORDERS) {
      expect(encodePoint(point("uint32", { order }), 0x12345678)).toEqual(expected[order]);
    }
  });

  it("decodes an EPEVER 32-bit value low word first, scaled", () => {
    expect(decodePoint(point("uint32", { order: "CDAB", scale: 0.01 }), [0x5678, 0x1234])).toBe(3054198.96);
  });

  it("round-trips int32, uint32 and float64 in every word order", () => {
    const cases = [
      { type: "int32" as const, value: fc.integer({ min: -0x80000000, max: 0x7fffffff }) },
      { type: "uint32" as const, value: fc.integer({ min: 0, max: 0xffffffff }) },
      { type: "float64" as const, value: fc.double() },
    ];
    for (const { type, value } of cases) {
      fc.assert(
        fc.property(fc.constantFrom(...ORDERS), value, (order, v) => {
          const p = point(type, { order });
          const words = encodePoint(p, v);
          expect(words).toHaveLength(type === "float64" ? 4 : 2);
          for (const w of words) expect(Number.isInteger(w) && w >= 0 && w <= 0xffff).toBe(true);
          expect(decodePoint(p, words)).toBe(v);
        }),
      );
    }
  });

  it("decodes negative int16, with and without scale", () => {
    expect(decodePoint(point("int16"), [0xfffe])).toBe(-2);
    expect(decodePoint(point("int16", { scale: 0.01 }), [0xff9c])).toBe(-1);
    expect(encodePoint(point("int16"), -2)).toEqual([0xfffe]);
  });

  it("reads and writes a bool as one bit of a register", () => {
    expect(decodePoint(point("bool", { bit: 1 }), [0b1010])).toBe(true);
    expect(decodePoint(point("bool", { bit: 2 }), [0b1010])).toBe(false);
    expect(decodePoint(point("bool"), [0b1011])).toBe(true);
    expect(encodePoint(point("bool", { bit: 3 }), true)).toEqual([0b1000]);
  });

  it("reads a string padded with NULs and pads it back", () => {
    const p = point("string", { length: 3 });
    expect(encodePoint(p, "SDM")).toEqual([0x5344, 0x4d00, 0x0000]);
    expect(decodePoint(p, [0x5344, 0x4d00, 0x0000])).toBe("SDM");
  });

  it("round-trips scale and offset on every raw value", () => {
    const p = point("int16", { scale: 0.1, offset: -40 });
    fc.assert(
      fc.property(fc.integer({ min: -0x8000, max: 0x7fff }), (raw) => {
        const words = [raw & 0xffff];
        const value = decodePoint(p, words);
        expect(value).toBeCloseTo(raw * 0.1 - 40, 9);
        expect(encodePoint(p, value)).toEqual(words);
      }),
    );
  });
});
