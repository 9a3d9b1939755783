/**
 * A board's clock mapped to UTC (docs/firmware-bridge.md, section 6): a simulated board whose
 * crystal runs 50 ppm fast, over a link whose delays differ each way and vary.
 */
import { describe, expect, it } from "vitest";
import { BoardClock, offsetDelay } from "../../src/bridge/clock.js";
import { prng } from "../../src/simulators/prng.js";

const BOOT_UTC = 1_767_258_000_000_000; // µs, 2026-01-01 09:00 UTC

/** The board's monotonic clock (µs since boot) at a UTC instant. */
const board = (ppm: number) => (utc: number) => (utc - BOOT_UTC) * (1 + ppm * 1e-6);

function exchange(clockAt: (utc: number) => number, t1: number, out: number, back: number, turn = 150) {
  const t2 = clockAt(t1 + out);
  const t3 = t2 + turn;
  const t4 = t1 + out + turn + back; // the turn-around, in UTC: close enough at 50 ppm
  return { t1, t2, t3, t4 };
}

describe("BoardClock", () => {
  it("computes offset and delay as NTP does", () => {
    expect(offsetDelay({ t1: 1000, t2: 5100, t3: 5200, t4: 1300 })).toEqual({ offset: 4000, delay: 200 });
  });

  it("follows a +50 ppm crystal over asymmetric, varying delays to within 2 ms", () => {
    const rnd = prng(42);
    const at = board(50);
    const clock = new BoardClock();
    expect(clock.toUtc(1)).toBeUndefined();
    let worst = 0;
    for (let k = 0; k < 120; k++) {
      const t1 = BOOT_UTC + 5e6 + k * 60e6;
      // Out 2–4 ms, back 1–2 ms (USB polling), and one exchange in four held up 5–30 ms one way (a busy gateway, a busy line).
      const spike = () => (rnd() < 0.125 ? 5000 + rnd() * 25_000 : 0);
      const s = exchange(at, t1, 2000 + rnd() * 2000 + spike(), 1000 + rnd() * 1000 + spike());
      expect("error" in clock.add(s)).toBe(false);
      // A reading taken in the next minute, placed by the mapping known so far.
      const utc = t1 + rnd() * 60e6;
      if (k >= 3) worst = Math.max(worst, Math.abs(clock.toUtc(at(utc))! - utc));
    }
    expect(worst).toBeLessThan(2000);
    const e = clock.estimate()!;
    expect(e.driftPpm).toBeGreaterThan(40);
    expect(e.driftPpm).toBeLessThan(60);
    expect(e.samples).toBe(16);
  });

  it("places readings taken before the first exchange on the same clock", () => {
    const at = board(-20);
    const clock = new BoardClock();
    clock.add(exchange(at, BOOT_UTC + 30e6, 1500, 1500));
    const early = BOOT_UTC + 2e6; // two seconds after boot, no time yet
    // One sample gives no drift yet: 20 ppm over the 28 s between them is the error.
    expect(Math.abs(clock.toUtc(at(early))! - early)).toBeLessThan(600);
  });

  it("refuses impossible samples as values", () => {
    const clock = new BoardClock();
    expect(clock.add({ t1: 100, t2: 50, t3: 40, t4: 200 })).toMatchObject({ error: expect.stringContaining("t3") });
    expect(clock.add({ t1: 100, t2: 50, t3: 60, t4: 90 })).toMatchObject({ error: expect.stringContaining("negative delay") });
    expect(clock.add({ t1: Number.NaN, t2: 50, t3: 60, t4: 90 })).toMatchObject({ error: expect.stringContaining("non-finite") });
    expect(clock.estimate()).toBeUndefined();
  });
});
