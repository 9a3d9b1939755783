import { describe, expect, it } from "vitest";
import { SeqTracker } from "../../src/uplink/seq-tracker.js";

describe("SeqTracker", () => {
  it("merges ranges in any order and reports gaps and duplicates", () => {
    const t = new SeqTracker();
    t.add(1, 10);
    t.add(21, 30);
    t.add(11, 15);
    t.add(5, 12); // 8 already seen
    const r = t.report();
    expect(r).toEqual({ first: 1, last: 30, received: 33, duplicates: 8, gaps: [[16, 20]], missing: 5 });
    t.add(16, 20);
    expect(t.report()).toMatchObject({ gaps: [], missing: 0, duplicates: 8 });
    expect(t.has(17)).toBe(true);
    expect(t.has(31)).toBe(false);
  });

  it("counts a duplicate that spans several ranges", () => {
    const t = new SeqTracker();
    t.add(1, 2);
    t.add(5, 6);
    t.add(9, 10);
    expect(t.add(1, 10)).toBe(6);
    expect(t.report()).toMatchObject({ first: 1, last: 10, gaps: [], duplicates: 6, received: 16 });
  });

  it("matches a naive set on random input", () => {
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const t = new SeqTracker();
    const seen = new Set<number>();
    let dupes = 0;
    for (let i = 0; i < 500; i++) {
      const a = 1 + Math.floor(rnd() * 2000);
      const b = a + Math.floor(rnd() * 20);
      for (let s = a; s <= b; s++) {
        if (seen.has(s)) dupes++;
        seen.add(s);
      }
      t.add(a, b);
    }
    const r = t.report();
    expect(r.duplicates).toBe(dupes);
    const sorted = [...seen].sort((x, y) => x - y);
    expect(r.first).toBe(sorted[0]);
    expect(r.last).toBe(sorted[sorted.length - 1]);
    expect(r.missing).toBe(r.last! - r.first! + 1 - seen.size);
  });
});
