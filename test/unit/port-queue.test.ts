/** One writer per physical port: the queue every bus goes through (PortQueue). */
import { afterEach, describe, expect, it, vi } from "vitest";
import { PortQueue } from "../../src/buses/port-queue.js";

class ClosedError extends Error {}

function queue(opts: { gapMs?: number } = {}) {
  const closes: string[] = [];
  const q = new PortQueue("ttyX", {
    closedError: (name) => new ClosedError(`${name} is closed`),
    onClose: async () => void closes.push("closed"),
    ...opts,
  });
  return { q, closes };
}

/** A job that records its label and, if `held`, waits until the test lets it go. */
function recorder() {
  const order: string[] = [];
  const held = new Map<string, () => void>();
  const job =
    (label: string, hold = false) =>
    async () => {
      order.push(label);
      if (hold) await new Promise<void>((r) => held.set(label, r));
      return label;
    };
  const release = async (label: string) => {
    await vi.waitFor(() => expect(held.has(label)).toBe(true));
    held.get(label)!();
  };
  return { order, job, release };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("PortQueue", () => {
  it("runs one job at a time, users taking turns round-robin", async () => {
    const { q } = queue();
    const { order, job, release } = recorder();
    let running = 0;
    let most = 0;
    const counted = (label: string, hold = false) => async () => {
      running++;
      most = Math.max(most, running);
      try {
        return await job(label, hold)();
      } finally {
        running--;
      }
    };
    const runs = [q.run("a", counted("a1", true))];
    for (const l of ["a2", "a3", "a4"]) runs.push(q.run("a", counted(l)));
    for (const l of ["b1", "b2"]) runs.push(q.run("b", counted(l)));
    runs.push(q.run("c", counted("c1")));
    expect(q.stats().queued).toBe(6);
    await release("a1");
    expect(await Promise.all(runs)).toEqual(["a1", "a2", "a3", "a4", "b1", "b2", "c1"]);
    // A user with many jobs does not hold the port: b and c get their turns in between.
    expect(order).toEqual(["a1", "a2", "b1", "c1", "a3", "b2", "a4"]);
    expect(most).toBe(1);
    expect(q.stats()).toMatchObject({ jobs: 7, failed: 0, queued: 0 });
  });

  it("runs an urgent job at the next slot, but never two in a row while ordinary jobs wait", async () => {
    const { q } = queue();
    const { order, job, release } = recorder();
    const runs = [q.run("meter-a", job("a1", true))];
    for (const l of ["a2", "a3"]) runs.push(q.run("meter-a", job(l)));
    for (const l of ["b1", "b2", "b3"]) runs.push(q.run("meter-b", job(l)));
    for (const l of ["w1", "w2"]) runs.push(q.run("relays", job(l), { urgent: true }));
    await release("a1");
    await Promise.all(runs);
    // Round-robin alone would run the writes last, after every poll queued before them.
    expect(order).toEqual(["a1", "w1", "a2", "w2", "b1", "a3", "b2", "b3"]);
  });

  it("urgent jobs run back to back when nothing else waits", async () => {
    const { q } = queue();
    const { order, job, release } = recorder();
    const runs = [q.run("w", job("w1", true), { urgent: true }), q.run("w", job("w2"), { urgent: true }), q.run("w", job("w3"), { urgent: true })];
    await release("w1");
    await Promise.all(runs);
    expect(order).toEqual(["w1", "w2", "w3"]);
  });

  it("a failing job does not stop the queue: its caller gets the error, the next job runs", async () => {
    const { q } = queue();
    const failing = q.run("a", async () => {
      throw new Error("no answer (timeout)");
    });
    const sync = q.run("b", () => {
      throw new Error("thrown before any await");
    });
    const next = q.run("a", async () => 42);
    await expect(failing).rejects.toThrow("no answer (timeout)");
    await expect(sync).rejects.toThrow("thrown before any await");
    await expect(next).resolves.toBe(42);
    expect(q.stats()).toMatchObject({ jobs: 3, failed: 2, lastError: "thrown before any await" });
  });

  it("closes on the last release: waiting jobs are refused, the running one finishes first", async () => {
    const { q, closes } = queue();
    const { job, release } = recorder();
    q.acquire();
    q.acquire();
    expect(q.stats().users).toBe(2);
    await q.release();
    expect(closes).toEqual([]);
    expect(q.isClosed).toBe(false);

    const running = q.run("a", job("a1", true));
    const waiting = q.run("b", job("b1"));
    const closing = q.release();
    await expect(waiting).rejects.toBeInstanceOf(ClosedError);
    expect(closes).toEqual([]); // not while a1 is still on the wire
    await release("a1");
    await closing;
    await expect(running).resolves.toBe("a1");
    expect(closes).toEqual(["closed"]);
    await expect(q.run("a", job("late"))).rejects.toThrow("ttyX is closed");

    // A user acquiring it again opens it for business again.
    q.acquire();
    await expect(q.run("a", async () => "again")).resolves.toBe("again");
  });

  it("keeps the gap (RTU t3.5) after each job before the next starts", async () => {
    vi.useFakeTimers();
    const { q } = queue({ gapMs: 4 });
    const started: number[] = [];
    const t0 = Date.now();
    const job = async () => void started.push(Date.now() - t0);
    const first = q.run("a", job);
    const second = q.run("b", job);
    await first;
    expect(started).toEqual([0]);
    await vi.advanceTimersByTimeAsync(3);
    expect(started).toEqual([0]);
    await vi.advanceTimersByTimeAsync(1);
    await second;
    expect(started).toEqual([0, 4]);
  });
});
