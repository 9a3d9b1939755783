/**
 * One writer per outbox file. The agent and a CLI command that changes the file (`buffer
 * dead-letters` when it cannot reach the agent) must never write it at the same time: each keeps
 * counters and sequence reservations in memory that the other would overwrite. A lock file
 * beside the outbox names the process that holds it (pid and start time, so a pid reused after a
 * reboot is not mistaken for the holder); a lock whose holder is gone is taken over.
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { UserError } from "../model/errors.js";

/** Outboxes this process holds (a second open in the same process is refused too). */
const held = new Set<string>();

interface Holder {
  pid: number;
  start: string | null;
}

/** A process's start time in clock ticks since boot (Linux /proc), or null elsewhere. */
function startOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 22, counted after the command name (which may contain spaces) in parentheses.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

function alive(h: Holder): boolean {
  try {
    process.kill(h.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const start = startOf(h.pid);
  return h.start === null || start === null || start === h.start;
}

export class OutboxLock {
  private constructor(private readonly file: string) {}

  static acquire(dbPath: string): OutboxLock {
    const file = `${dbPath}.lock`;
    if (held.has(file)) throw new UserError(`store.path: ${dbPath} is already open in this process`);
    const me = JSON.stringify({ pid: process.pid, start: startOf(process.pid) });
    try {
      writeFileSync(file, me, { flag: "wx" });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      let holder: Holder | null = null;
      try {
        holder = JSON.parse(readFileSync(file, "utf8")) as Holder;
      } catch {
        holder = null; // unreadable: a crash mid-write; nobody holds it
      }
      if (holder && Number.isSafeInteger(holder.pid) && holder.pid !== process.pid && alive(holder)) {
        throw new UserError(
          `store.path: ${dbPath} is in use by another edge-agent (pid ${holder.pid}); stop it first, or use what goes through it (edge-agent status, buffer stats, buffer dead-letters)`,
        );
      }
      // Its holder is gone: take it over (write then rename, so no one reads half a lock).
      writeFileSync(`${file}.tmp`, me);
      renameSync(`${file}.tmp`, file);
    }
    held.add(file);
    return new OutboxLock(file);
  }

  release(): void {
    if (!held.delete(this.file)) return;
    rmSync(this.file, { force: true });
  }
}
