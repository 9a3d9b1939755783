import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Scheduler } from "../../src/agent/scheduler.js";

describe("Scheduler", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(1_000_000_250);
  });
  afterEach(() => vi.useRealTimers());

  it("ticks on multiples of the interval without drift, even when tasks take time", async () => {
    const s = new Scheduler();
    const ticks: number[] = [];
    s.add("a", 1000, async (tick) => {
      ticks.push(tick);
      await new Promise((r) => setTimeout(r, 130)); // work inside the tick
    });
    s.start();
    await vi.advanceTimersByTimeAsync(10_000);
    await s.stop();
    expect(ticks).toHaveLength(10);
    expect(ticks.every((t, i) => t === 1_000_001_000 + i * 1000)).toBe(true);
    expect(s.stats().a).toMatchObject({ overruns: 0, runs: 10 });
  });

  it("skips ticks a slow task overran, and counts them", async () => {
    const s = new Scheduler();
    const ticks: number[] = [];
    s.add("slow", 1000, async (tick) => {
      ticks.push(tick);
      if (ticks.length === 2) await new Promise((r) => setTimeout(r, 2500));
    });
    s.start();
    await vi.advanceTimersByTimeAsync(6_000);
    await s.stop();
    expect(ticks.map((t) => t - 1_000_000_000)).toEqual([1000, 2000, 5000, 6000]);
    expect(s.stats().slow!.overruns).toBe(2);
  });

  it("keeps going when a task throws", async () => {
    const s = new Scheduler();
    let n = 0;
    s.add("bad", 100, async () => {
      n++;
      throw new Error("boom");
    });
    s.start();
    await vi.advanceTimersByTimeAsync(1000);
    await s.stop();
    expect(n).toBe(10);
  });

  it("runs no tick after stop", async () => {
    const s = new Scheduler();
    let n = 0;
    s.add("a", 100, async () => {
      n++;
    });
    s.start();
    await vi.advanceTimersByTimeAsync(250); // ticks at …300, …400, …500
    await s.stop();
    await vi.advanceTimersByTimeAsync(1000);
    expect(n).toBe(3);
  });
});
