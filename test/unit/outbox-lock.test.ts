/**
 * One writer per outbox file: a second writer — in this process or another live one — is
 * refused with a message naming the holder, before it can touch counters or sequence
 * reservations; a lock left by a process that is gone is taken over; inspection needs no lock.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Outbox, type OutboxOptions } from "../../src/store/outbox.js";
import { tempDir } from "../helpers/tmp.js";

const opts = (path: string): OutboxOptions => ({ path, quota: 1e9, whenFull: "drop-oldest", maxAge: 30 * 86_400_000, sync: "normal" });
const reading = (v: number) => [{ point: "m/p", ts: Date.now(), value: v, quality: "good" as const }];

describe("outbox lock", () => {
  it("refuses a second writer in this process, and lets it in after close; inspecting needs no lock", () => {
    const path = join(tempDir(), "o.db");
    const first = Outbox.open(opts(path));
    first.append(reading(1));
    const seqFile = readFileSync(`${path}.seq`, "utf8");
    expect(() => Outbox.open(opts(path))).toThrow(/store\.path: .*o\.db is already open in this process/);
    // The refused open changed nothing: not the reservation, not the numbers.
    expect(readFileSync(`${path}.seq`, "utf8")).toBe(seqFile);
    const inspected = Outbox.inspect(path, opts(path));
    expect(inspected.stats().lastSeq).toBe(1);
    inspected.close();
    first.close();
    expect(existsSync(`${path}.lock`)).toBe(false);
    const again = Outbox.open(opts(path));
    expect(again.append(reading(2)).first).toBe(2);
    again.close();
  });

  it("refuses a writer while another live process holds the file, naming it", async () => {
    const path = join(tempDir(), "o.db");
    const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
    try {
      const start = readFileSync(`/proc/${child.pid}/stat`, "utf8");
      const ticks = start.slice(start.lastIndexOf(")") + 2).split(" ")[19];
      writeFileSync(`${path}.lock`, JSON.stringify({ pid: child.pid, start: ticks }));
      expect(() => Outbox.open(opts(path))).toThrow(new RegExp(`in use by another edge-agent \\(pid ${child.pid}\\)`));
    } finally {
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
    }
    // Its holder is gone (killed): the lock is taken over.
    const box = Outbox.open(opts(path));
    expect(JSON.parse(readFileSync(`${path}.lock`, "utf8"))).toMatchObject({ pid: process.pid });
    box.close();
  });

  it("takes over a lock whose pid now belongs to another process started later (a reboot)", () => {
    const path = join(tempDir(), "o.db");
    writeFileSync(`${path}.lock`, JSON.stringify({ pid: 1, start: "-1" }));
    const box = Outbox.open(opts(path));
    box.close();
  });
});
