import { describe, expect, it } from "vitest";
import { SimulatedSource, waveValue } from "../../src/sources/simulated/source.js";

const point = (over: object) => ({ name: "p", wave: "sine" as const, min: 0, max: 100, period: 1000, decimals: 2, ...over });

describe("simulated source", () => {
  it("draws each wave within its bounds", () => {
    expect(waveValue(point({}), 0, undefined, Math.random)).toBeCloseTo(50);
    expect(waveValue(point({}), 250, undefined, Math.random)).toBeCloseTo(100);
    expect(waveValue(point({ wave: "ramp" }), 500, undefined, Math.random)).toBeCloseTo(50);
    expect(waveValue(point({ wave: "square" }), 100, undefined, Math.random)).toBe(100);
    expect(waveValue(point({ wave: "square" }), 600, undefined, Math.random)).toBe(0);
    expect(waveValue(point({ wave: "constant", min: 7 }), 600, undefined, Math.random)).toBe(7);
    let v: number | undefined;
    for (let i = 0; i < 1000; i++) {
      const next = waveValue(point({ wave: "random-walk", step: 10 }), i, v, Math.random);
      if (v !== undefined) expect(Math.abs(next - v)).toBeLessThanOrEqual(10);
      expect(next).toBeGreaterThanOrEqual(0);
      expect(next).toBeLessThanOrEqual(100);
      v = next;
    }
  });

  it("names points <source>/<point> and rounds to the configured decimals", async () => {
    const src = new SimulatedSource({ type: "simulated", name: "meter-1", interval: 1000, points: [point({ name: "v", decimals: 1 })] });
    const [r] = await src.poll(123);
    expect(r).toMatchObject({ point: "meter-1/v", ts: 123, quality: "good" });
    expect(Number.isInteger((r!.value as number) * 10)).toBe(true);
  });
});
