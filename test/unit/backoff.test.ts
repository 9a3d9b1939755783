import { describe, expect, it } from "vitest";
import { Backoff } from "../../src/uplink/backoff.js";

describe("Backoff", () => {
  it("doubles up to the cap, with jitter between half and all of the step", () => {
    const low = new Backoff(1000, 60_000, () => 0);
    const high = new Backoff(1000, 60_000, () => 0.999999);
    const lows = Array.from({ length: 10 }, () => low.next());
    const highs = Array.from({ length: 10 }, () => high.next());
    expect(lows).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
    expect(highs).toEqual([1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000, 60000]);
  });

  it("starts over after reset", () => {
    const b = new Backoff(100, 1000, () => 1);
    b.next();
    b.next();
    b.reset();
    expect(b.next()).toBe(100);
  });

  it("spreads the delays of many gateways", () => {
    const delays = new Set(Array.from({ length: 50 }, () => new Backoff(1000, 60_000).next()));
    expect(delays.size).toBeGreaterThan(25);
  });
});
