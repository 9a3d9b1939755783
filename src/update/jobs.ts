/**
 * Firmware update jobs, durable: one SQLite file beside the outbox (`<data dir>/updates.db`), so
 * a gateway restart finds every job where it was — uploading at an offset, in the health gate —
 * and resumes it. A board has at most one job that is not finished.
 *
 * States: [queued (a rollout's next boards) →] [downloading →] verified → uploading (offset) →
 * testing → confirmed | rolled-back | failed (reason).
 * The image file stays in the image store until its job is finished.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { Database } from "../store/sqlite.js";
import type { Manifest } from "./manifest.js";

export type JobState = "queued" | "downloading" | "verified" | "uploading" | "testing" | "confirmed" | "rolled-back" | "failed";
export const FINISHED: ReadonlySet<JobState> = new Set(["confirmed", "rolled-back", "failed"]);

export interface Job {
  id: string;
  /** The board's source name in the config. */
  board: string;
  state: JobState;
  manifest: Manifest;
  /** Path of the image file in the image store (once downloaded). */
  imagePath: string;
  /** Where the image comes from (https), or "" when it was staged on the gateway. */
  url: string;
  /** Bytes the board has confirmed it holds. */
  offset: number;
  /** The firmware the board ran when the job began (what a rollback returns to). */
  fromVersion: string;
  fromHash: string;
  reason: string;
  /** What the health gate saw (heartbeats, readings, resets), as a technician reads it. */
  observed: string;
  /** A rollout this job is part of, or "". */
  rollout: string;
  created: number;
  updated: number;
  /** When the test boot began (ms), 0 before. */
  testStarted: number;
}

const SCHEMA_VERSION = 1;

export class JobStore {
  private readonly db: Database;

  constructor(path: string) {
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    const version = this.db.pragma("user_version", { simple: true }) as number;
    if (version > SCHEMA_VERSION) throw new Error(`${path}: update jobs written by a newer edge-agent (schema ${version}; this one knows ${SCHEMA_VERSION})`);
    if (version < 1) {
      this.db.exec(`
        CREATE TABLE IF NOT EXISTS jobs (
          id TEXT PRIMARY KEY,
          board TEXT NOT NULL,
          state TEXT NOT NULL,
          manifest TEXT NOT NULL,
          image_path TEXT NOT NULL,
          url TEXT NOT NULL DEFAULT '',
          offset INTEGER NOT NULL DEFAULT 0,
          from_version TEXT NOT NULL DEFAULT '',
          from_hash TEXT NOT NULL DEFAULT '',
          reason TEXT NOT NULL DEFAULT '',
          observed TEXT NOT NULL DEFAULT '',
          rollout TEXT NOT NULL DEFAULT '',
          created INTEGER NOT NULL,
          updated INTEGER NOT NULL,
          test_started INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX IF NOT EXISTS jobs_board ON jobs(board, created);
        PRAGMA user_version = ${SCHEMA_VERSION};
      `);
    }
  }

  close(): void {
    this.db.close();
  }

  get(id: string): Job | null {
    const row = this.db.prepare("SELECT * FROM jobs WHERE id = ?").get(id) as Row | undefined;
    return row ? fromRow(row) : null;
  }

  /** Jobs not finished, oldest first. */
  unfinished(): Job[] {
    return (this.db.prepare("SELECT * FROM jobs WHERE state NOT IN ('confirmed','rolled-back','failed') ORDER BY created, rowid").all() as Row[]).map(fromRow);
  }

  /** The board's unfinished job, if any. */
  active(board: string): Job | null {
    const row = this.db.prepare("SELECT * FROM jobs WHERE board = ? AND state NOT IN ('confirmed','rolled-back','failed') ORDER BY created DESC LIMIT 1").get(board) as Row | undefined;
    return row ? fromRow(row) : null;
  }

  /** The latest jobs, newest first. */
  recent(limit = 20, board?: string): Job[] {
    const rows = board
      ? this.db.prepare("SELECT * FROM jobs WHERE board = ? ORDER BY created DESC, rowid DESC LIMIT ?").all(board, limit)
      : this.db.prepare("SELECT * FROM jobs ORDER BY created DESC, rowid DESC LIMIT ?").all(limit);
    return (rows as Row[]).map(fromRow);
  }

  insert(job: Job): void {
    this.db
      .prepare(
        `INSERT INTO jobs (id, board, state, manifest, image_path, url, offset, from_version, from_hash, reason, observed, rollout, created, updated, test_started)
         VALUES (@id, @board, @state, @manifest, @imagePath, @url, @offset, @fromVersion, @fromHash, @reason, @observed, @rollout, @created, @updated, @testStarted)`,
      )
      .run({ ...job, manifest: JSON.stringify(job.manifest) });
  }

  update(id: string, change: Partial<Pick<Job, "state" | "offset" | "reason" | "observed" | "testStarted" | "fromVersion" | "fromHash">>, now = Date.now()): void {
    const cols: string[] = [];
    const args: Record<string, unknown> = { id, updated: now };
    const map: Record<string, string> = { state: "state", offset: "offset", reason: "reason", observed: "observed", testStarted: "test_started", fromVersion: "from_version", fromHash: "from_hash" };
    for (const [k, v] of Object.entries(change)) {
      const col = map[k];
      if (!col || v === undefined) continue;
      cols.push(`${col} = @${k}`);
      args[k] = v;
    }
    this.db.prepare(`UPDATE jobs SET ${[...cols, "updated = @updated"].join(", ")} WHERE id = @id`).run(args);
  }

  /** A rollout's jobs, in their order. */
  byRollout(rollout: string): Job[] {
    return (this.db.prepare("SELECT * FROM jobs WHERE rollout = ? ORDER BY created, rowid").all(rollout) as Row[]).map(fromRow);
  }

  /** Image paths still needed by an unfinished job. */
  imagesInUse(): Set<string> {
    return new Set(this.unfinished().map((j) => j.imagePath));
  }
}

interface Row {
  id: string;
  board: string;
  state: JobState;
  manifest: string;
  image_path: string;
  url: string;
  offset: number;
  from_version: string;
  from_hash: string;
  reason: string;
  observed: string;
  rollout: string;
  created: number;
  updated: number;
  test_started: number;
}

function fromRow(r: Row): Job {
  return {
    id: r.id,
    board: r.board,
    state: r.state,
    manifest: JSON.parse(r.manifest) as Manifest,
    imagePath: r.image_path,
    url: r.url,
    offset: r.offset,
    fromVersion: r.from_version,
    fromHash: r.from_hash,
    reason: r.reason,
    observed: r.observed,
    rollout: r.rollout,
    created: r.created,
    updated: r.updated,
    testStarted: r.test_started,
  };
}
