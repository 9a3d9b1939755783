/**
 * A pushing source's commit: its cursors are stored in the same transaction as the tick's
 * readings, and settled() tells it whether they were — false when the store failed or refused
 * them (the source keeps them and sends them again), never an exception through the tick.
 */
import { describe, expect, it } from "vitest";
import { Polling } from "../../src/agent/parts/polling.js";
import { Recorder } from "../../src/agent/recorder.js";
import { Scheduler } from "../../src/agent/scheduler.js";
import type { Cursor } from "../../src/model/cursor.js";
import type { Reading } from "../../src/model/reading.js";
import type { Source } from "../../src/sources/source.js";
import { Outbox, type OutboxOptions } from "../../src/store/outbox.js";
import { until } from "../helpers/wait.js";
import { silentLogger } from "../../src/ops/logger.js";

class Pushed implements Source {
  readonly name = "board";
  readonly interval = 20;
  pending: Reading[] = [];
  cursors: Cursor[] = [];
  settled: boolean[] = [];
  throwInSettled = false;
  async poll(): Promise<Reading[]> {
    const out = this.pending;
    this.pending = [];
    return out;
  }
  commit() {
    const cursors = this.cursors;
    this.cursors = [];
    if (cursors.length === 0) return null;
    return {
      cursors,
      settled: (ok: boolean) => {
        this.settled.push(ok);
        if (this.throwInSettled) throw new Error("settled blew up");
      },
    };
  }
}

const options = (over: Partial<OutboxOptions> = {}): OutboxOptions => ({ path: ":memory:", quota: 64 * 1024 * 1024, whenFull: "drop-oldest", maxAge: 86_400_000, sync: "full", ...over });
const reading = (v: number): Reading => ({ point: "board/t", ts: Date.now(), value: v, quality: "good" });

async function run(outbox: Outbox | null, source: Pushed, until_: () => boolean) {
  const polling = new Polling([{ source, type: "bridge" }], [], new Scheduler(), new Recorder(() => outbox, silentLogger()), silentLogger());
  await polling.start();
  try {
    await until(until_, "the tick");
  } finally {
    await polling.stop();
  }
  return polling;
}

describe("Polling: a pushing source's commit", () => {
  it("stores its cursors with the readings and says so", async () => {
    const outbox = Outbox.open(options());
    const s = new Pushed();
    s.pending = [reading(1), reading(2)];
    s.cursors = [["bridge:n1:5", 2]];
    await run(outbox, s, () => s.settled.length > 0);
    expect(s.settled).toEqual([true]);
    expect(outbox.cursor("bridge:n1:5")).toBe(2);
    expect(outbox.depth).toBe(2);
  });

  it("says false when the store refused the readings (drop-newest, full), and the cursor stays", async () => {
    const outbox = Outbox.open(options({ quota: 1, whenFull: "drop-newest" }));
    const s = new Pushed();
    s.pending = [reading(1)];
    s.cursors = [["bridge:n1:5", 1]];
    await run(outbox, s, () => s.settled.length > 0);
    expect(s.settled).toEqual([false]);
    expect(outbox.cursor("bridge:n1:5")).toBeUndefined();
  });

  it("says false when there is no store, and a settled() that throws is counted, not thrown", async () => {
    const s = new Pushed();
    s.throwInSettled = true;
    s.pending = [reading(1)];
    s.cursors = [["k", 1]];
    const polling = await run(null, s, () => s.settled.length > 0);
    expect(s.settled).toEqual([false]);
    expect(polling.status().board!.errors).toBe(1);
    expect(polling.status().board!.lastError).toBe("settled blew up");
  });
});
