import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { count, formatMultirange, intersect, openGaps, parseMultirange, type Range, subtract, union } from "../../src/ingest/ranges.js";

const toSet = (rs: readonly Range[]) => {
  const s = new Set<number>();
  for (const [a, b] of rs) for (let i = a; i <= b; i++) s.add(i);
  return s;
};
const normalised = (rs: readonly Range[]) => rs.every(([a, b], i) => a <= b && (i === 0 || a > rs[i - 1]![1] + 1));
const ranges = fc.array(fc.tuple(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 0, max: 20 })).map(([a, n]): Range => [a, a + n]), { maxLength: 12 });

describe("sequence ranges", () => {
  it("union, subtract and intersect agree with sets, and stay normalised", () => {
    fc.assert(
      fc.property(ranges, ranges, (x, y) => {
        const a = union(x, []);
        const b = union(y, []);
        const sa = toSet(a);
        const sb = toSet(b);
        const u = union(a, b);
        const d = subtract(a, b);
        const i = intersect(a, b);
        expect(normalised(u) && normalised(d) && normalised(i)).toBe(true);
        expect(toSet(u)).toEqual(new Set([...sa, ...sb]));
        expect(toSet(d)).toEqual(new Set([...sa].filter((n) => !sb.has(n))));
        expect(toSet(i)).toEqual(new Set([...sa].filter((n) => sb.has(n))));
        expect(count(u)).toBe(toSet(u).size);
      }),
    );
  });

  it("round-trips PostgreSQL's multirange text, half-open and closed bounds alike", () => {
    fc.assert(
      fc.property(ranges, (x) => {
        const a = union(x, []);
        expect(parseMultirange(formatMultirange(a))).toEqual(a);
      }),
    );
    expect(parseMultirange("{[1,101),[150,201)}")).toEqual([
      [1, 100],
      [150, 200],
    ]);
    expect(parseMultirange("{(0,5]}")).toEqual([[1, 5]]);
    expect(parseMultirange("{}")).toEqual([]);
    expect(parseMultirange(null)).toEqual([]);
    expect(() => parseMultirange("[1,2)")).toThrow(/not a multirange/);
  });

  it("open gaps are the holes inside what was received, minus what a gateway settled", () => {
    expect(openGaps([[1, 10]])).toEqual([]);
    expect(
      openGaps([
        [1, 10],
        [20, 30],
        [40, 40],
      ]),
    ).toEqual([
      [11, 19],
      [31, 39],
    ]);
    expect(
      openGaps(
        [
          [1, 10],
          [20, 30],
        ],
        [[11, 15]],
      ),
    ).toEqual([[16, 19]]);
  });

  it("handles numbers near the largest safe integer", () => {
    const big = Number.MAX_SAFE_INTEGER - 5;
    expect(subtract([[big, big + 5]], [[big + 2, big + 2]])).toEqual([
      [big, big + 1],
      [big + 3, big + 5],
    ]);
  });
});
