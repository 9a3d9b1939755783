/** The recorder commits the polls that end close together in one transaction, and loses none at stop. */
import { afterEach, describe, expect, it, vi } from "vitest";
import { Recorder, STORE_BATCH_MS } from "../../src/agent/recorder.js";
import type { Reading } from "../../src/model/reading.js";
import { silentLogger } from "../../src/ops/logger.js";
import type { Outbox } from "../../src/store/outbox.js";

const r = (point: string): Reading => ({ point, ts: 1, value: 1, quality: "good" });

/** An outbox that records each transaction (append call) and can be made to fail. */
function fakeOutbox() {
  const commits: string[][] = [];
  const events: string[][] = [];
  let failing = false;
  const outbox = {
    append: (rs: readonly Reading[]) => {
      if (failing) throw new Error("disk full");
      commits.push(rs.map((x) => x.point));
      return { first: 1, last: rs.length, stored: rs.length, refused: 0 };
    },
    stream: () => ({ append: (rs: readonly Reading[]) => events.push(rs.map((x) => x.point)) }),
  } as unknown as Outbox;
  return { outbox, commits, events, fail: () => (failing = true) };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("Recorder", () => {
  it("commits the ticks added within its window in one transaction, then tells the listeners once", () => {
    vi.useFakeTimers();
    const o = fakeOutbox();
    const rec = new Recorder(() => o.outbox, silentLogger());
    const told: string[][] = [];
    rec.listen({ readings: (rs) => told.push(rs.map((x) => x.point)), stored: (s) => told.push([`stored ${s}`]) });
    rec.add([r("m1/a"), r("m1/b")]);
    vi.advanceTimersByTime(STORE_BATCH_MS - 1);
    rec.add([r("m2/a")], [r("m2/door")]);
    expect(o.commits).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(o.commits).toEqual([["m1/a", "m1/b", "m2/a"]]);
    expect(o.events).toEqual([["m2/door"]]);
    expect(told).toEqual([["m1/a", "m1/b", "m2/a"], ["stored telemetry"], ["stored events"]]);
    expect(rec.stored).toBe(3);
    // The next tick opens a new window.
    rec.add([r("m1/a")]);
    vi.advanceTimersByTime(STORE_BATCH_MS);
    expect(o.commits).toHaveLength(2);
  });

  it("flush() commits what waits at once (at stop) and nothing when nothing waits", () => {
    vi.useFakeTimers();
    const o = fakeOutbox();
    const rec = new Recorder(() => o.outbox, silentLogger());
    rec.flush();
    rec.add([r("m1/a")]);
    rec.flush();
    expect(o.commits).toEqual([["m1/a"]]);
    vi.advanceTimersByTime(STORE_BATCH_MS * 2);
    expect(o.commits).toHaveLength(1);
  });

  it("a failed commit counts each tick it carried as a store error, and is logged, never thrown", () => {
    vi.useFakeTimers();
    const o = fakeOutbox();
    const rec = new Recorder(() => o.outbox, silentLogger());
    o.fail();
    rec.add([r("m1/a")]);
    rec.add([r("m2/a")]);
    expect(() => vi.advanceTimersByTime(STORE_BATCH_MS)).not.toThrow();
    expect(rec.storeErrors).toBe(2);
    expect(rec.stored).toBe(0);
  });
});
