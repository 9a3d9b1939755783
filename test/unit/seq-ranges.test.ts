/** Range arithmetic (model/seq-ranges.ts) against plain sets of numbers. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { coalesce, countOf, type SeqRange, subtract, toRanges } from "../../src/model/seq-ranges.js";

const numbers = (ranges: readonly SeqRange[]) => ranges.flatMap(([a, b]) => Array.from({ length: b - a + 1 }, (_, i) => a + i));
const anyRanges = fc.array(fc.tuple(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 0, max: 20 })).map(([a, n]): SeqRange => [a, a + n]), { maxLength: 12 });
const normalised = (r: readonly SeqRange[]) => r.every(([a, b], i) => a <= b && (i === 0 || a > r[i - 1]![1] + 1));

describe("sequence ranges", () => {
  it("toRanges: [3,4,5,9,10] → [[3,5],[9,10]]", () => {
    expect(toRanges([3, 4, 5, 9, 10])).toEqual([[3, 5], [9, 10]]);
    expect(toRanges([])).toEqual([]);
  });

  it("coalesce holds the same numbers, sorted, merged where they overlap or touch", () => {
    fc.assert(
      fc.property(anyRanges, (r) => {
        const c = coalesce(r);
        expect(normalised(c)).toBe(true);
        expect(numbers(c)).toEqual([...new Set(numbers(r))].sort((x, y) => x - y));
        expect(countOf(c)).toBe(new Set(numbers(r)).size);
      }),
    );
  });

  it("subtract takes out exactly the numbers of the second", () => {
    fc.assert(
      fc.property(anyRanges, anyRanges, (a, b) => {
        const out = subtract(coalesce(a), coalesce(b));
        const cut = new Set(numbers(b));
        expect(normalised(out)).toBe(true);
        expect(numbers(out)).toEqual([...new Set(numbers(a))].filter((n) => !cut.has(n)).sort((x, y) => x - y));
      }),
    );
  });
});
