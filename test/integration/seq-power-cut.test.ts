/**
 * `store.sync: normal` after a power cut: a child process appends as fast as it can and reports
 * every committed sequence number; it is killed with SIGKILL mid-commit, and the WAL is cut back
 * to its last checkpoint (what a power cut may leave when the WAL was not synced). Reopened, the
 * outbox must never hand out a number the dead process had already given to a reading.
 */
import { spawn } from "node:child_process";
import { existsSync, rmSync, truncateSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { Outbox } from "../../src/store/outbox.js";
import { tempDir } from "../helpers/tmp.js";

const DAY = 86_400_000;
const dist = resolve("dist/src/store/outbox.js");

/** Runs an appender until it reported `atLeast` commits, kills it, returns the highest number it reported. */
async function appendAndKill(path: string, atLeast: number, streams: readonly string[]): Promise<Record<string, number>> {
  const code = `
    const { Outbox } = await import(${JSON.stringify(dist)});
    const box = Outbox.open({ path: ${JSON.stringify(path)}, quota: 1e9, whenFull: "drop-oldest", maxAge: ${30 * DAY}, sync: "normal" });
    const streams = ${JSON.stringify(streams)};
    for (let i = 0; ; i++) {
      const name = streams[i % streams.length];
      const rows = Array.from({ length: 50 }, (_, j) => ({ point: name + "/p" + (j % 7), ts: Date.now(), value: i * 50 + j, quality: "good" }));
      const r = box.stream(name).append(rows);
      process.stdout.write(name + " " + r.last + "\\n");
    }`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", code], { stdio: ["ignore", "pipe", "pipe"] });
  const last: Record<string, number> = Object.create(null) as Record<string, number>;
  let commits = 0;
  let err = "";
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  await new Promise<void>((done, fail) => {
    let buf = "";
    child.stdout.on("data", (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split("\n");
      buf = lines.pop()!;
      for (const line of lines) {
        const [name, seq] = line.split(" ");
        last[name!] = Math.max(last[name!] ?? 0, Number(seq));
        if (++commits === atLeast) child.kill("SIGKILL");
      }
    });
    child.on("exit", (code, signal) => (signal === "SIGKILL" ? done() : fail(new Error(`appender exited ${code}: ${err}`))));
  });
  return last;
}

/** A power cut: every WAL frame since the last checkpoint is gone, and so is the shared memory. */
function cutPower(path: string): void {
  if (existsSync(`${path}-wal`)) truncateSync(`${path}-wal`, 0);
  rmSync(`${path}-shm`, { force: true });
}

describe("sequence numbers under sync: normal", () => {
  it("are never reused after a kill with the WAL cut back to its last checkpoint", { timeout: 60_000 }, async () => {
    const dir = tempDir();
    const path = join(dir, "outbox.db");
    const streams = ["telemetry", "events", "results"] as const;
    const highest: Record<string, number> = Object.create(null) as Record<string, number>;
    for (let round = 0; round < 3; round++) {
      const reported = await appendAndKill(path, 300 + round * 500, streams);
      cutPower(path);
      const box = Outbox.open({ path, quota: 1e9, whenFull: "drop-oldest", maxAge: 30 * DAY, sync: "normal" });
      for (const s of streams) {
        highest[s] = Math.max(highest[s] ?? 0, reported[s] ?? 0);
        // Everything the dead process handed out is behind the next number.
        expect(box.stream(s).lastSeq).toBeGreaterThanOrEqual(highest[s]!);
        const next = box.stream(s).append([{ point: `${s}/after`, ts: Date.now(), value: 1, quality: "good" }]);
        expect(next.first).toBeGreaterThan(highest[s]!);
        highest[s] = next.last!;
      }
      // The skipped ranges are reported for the log.
      expect(box.skipped.length).toBeGreaterThan(0);
      box.close();
    }
  });

  it("a clean stop skips nothing", () => {
    const dir = tempDir();
    const path = join(dir, "outbox.db");
    const open = () => Outbox.open({ path, quota: 1e9, whenFull: "drop-oldest", maxAge: 30 * DAY, sync: "normal" });
    let box = open();
    box.append([{ point: "a/b", ts: Date.now(), value: 1, quality: "good" }]);
    box.close();
    box = open();
    expect(box.skipped).toEqual([]);
    expect(box.append([{ point: "a/b", ts: Date.now(), value: 2, quality: "good" }]).first).toBe(2);
    box.close();
  });
});
