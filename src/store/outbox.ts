/**
 * The SQLite outbox: every reading is kept here, with its per-gateway sequence number, until the
 * broker has acknowledged the message that carried it.
 *
 * Durability: WAL with `synchronous=FULL` by default, so a committed sequence number survives a
 * power cut and is never handed out twice (a reused number would make the receiver drop a real
 * reading as a duplicate). Acknowledgement deletes are batched by the caller, so FULL costs one
 * fsync per tick and per ack batch, not per reading.
 */
import { mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { Database, type Statement } from "./sqlite.js";
import { UserError } from "../model/errors.js";
import type { DropCounters } from "./drops.js";
import type { Quality, Reading, StoredReading, Value } from "../model/reading.js";

export type DropPolicy = "drop-oldest" | "drop-newest";

export interface OutboxOptions {
  path: string;
  /** Bytes the database may use; the file stays within this plus a small margin. */
  quota: number;
  whenFull: DropPolicy;
  /** Readings older than this (by their timestamp) are dropped, in ms. */
  maxAge: number;
  sync: "full" | "normal";
  now?: () => number;
}


export interface OutboxStats {
  depth: number;
  firstSeq: number | null;
  lastSeq: number;
  oldestTs: number | null;
  oldestAgeMs: number | null;
  usedBytes: number;
  fileBytes: number;
  quota: number;
  dropped: DropCounters;
  /** The other streams: how much waits and the last sequence number given. */
  streams: Record<Exclude<StreamName, "telemetry">, { depth: number; lastSeq: number }>;
}

export interface AppendResult {
  /** First and last sequence number given, or null when nothing was stored. */
  first: number | null;
  last: number | null;
  stored: number;
  refused: number;
}

const QUALITY_CODE: Record<Quality, number> = { good: 0, bad: 1, uncertain: 2 };
const CODE_QUALITY: Quality[] = ["good", "bad", "uncertain"];
const BOOL_FLAG = 4;
/** Drop-oldest frees this share of the quota below the limit, so it does not run on every tick. */
const HEADROOM = 0.02;
/** How many command ids are remembered for de-duplication. */
const COMMAND_MEMORY = 10_000;

type Row = [seq: number, pointId: number, ts: number, v: number | string | null, q: number];

/**
 * Each stream has its own table and its own sequence numbers, so a receiver of telemetry sees no
 * gap where an event was stored. Telemetry lives in `readings` (the first stream there was).
 */
export type StreamName = "telemetry" | "events" | "results";
const STREAM_TABLE: Record<StreamName, string> = { telemetry: "readings", events: "events", results: "results" };
const STREAM_META: Record<StreamName, string> = { telemetry: "", events: "events.", results: "results." };
export const STREAMS: readonly StreamName[] = ["telemetry", "events", "results"];

/** One stream of the outbox: what the uplink needs to send it and delete what was acknowledged. */
export interface StreamStore {
  readonly name: StreamName;
  readonly lastSeq: number;
  readonly depth: number;
  append(readings: readonly Reading[]): AppendResult;
  readAfter(afterSeq: number, limit: number, upTo?: number): StoredReading[];
  firstSeq(): number | null;
  ack(ranges: ReadonlyArray<readonly [number, number]>): number;
}

interface PointCodec {
  pointId(name: string): number;
  pointName(id: number): string;
  setMeta: Statement;
}

class Stream implements StreamStore {
  seq: number;
  rows: number;
  private readonly stmt: {
    insert: Statement;
    readAfter: Statement;
    deleteRange: Statement;
    deleteBelow: Statement;
    deleteAll: Statement;
    nthSeq: Statement;
    oldestChunk: Statement;
    first: Statement;
  };
  private readonly metaKey: string;
  // Built once: db.transaction() makes a new wrapper (closures and property definitions) per call,
  // which on a busy gateway is garbage every tick.
  private readonly insertTx: (readings: readonly Reading[]) => void;
  private readonly deleteTx: (ranges: ReadonlyArray<readonly [number, number]>) => number;

  constructor(
    readonly name: StreamName,
    db: Database,
    meta: Map<string, number>,
    private readonly codec: PointCodec,
  ) {
    const t = STREAM_TABLE[name];
    // seq is the rowid; q = quality code | 4 when v holds a boolean.
    db.exec(`CREATE TABLE IF NOT EXISTS ${t} (seq INTEGER PRIMARY KEY, p INTEGER NOT NULL, ts INTEGER NOT NULL, v ANY, q INTEGER NOT NULL)`);
    this.stmt = {
      insert: db.prepare(`INSERT INTO ${t} (seq, p, ts, v, q) VALUES (?, ?, ?, ?, ?)`),
      readAfter: db.prepare(`SELECT seq, p, ts, v, q FROM ${t} WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?`).raw(),
      deleteRange: db.prepare(`DELETE FROM ${t} WHERE seq >= ? AND seq <= ?`),
      deleteBelow: db.prepare(`DELETE FROM ${t} WHERE seq < ?`),
      deleteAll: db.prepare(`DELETE FROM ${t}`),
      nthSeq: db.prepare(`SELECT seq FROM ${t} ORDER BY seq LIMIT 1 OFFSET ?`).pluck(),
      oldestChunk: db.prepare(`SELECT seq, ts FROM ${t} WHERE seq > ? ORDER BY seq LIMIT 1000`).raw(),
      first: db.prepare(`SELECT seq, ts FROM ${t} ORDER BY seq LIMIT 1`).raw(),
    };
    this.metaKey = `${STREAM_META[name]}last_seq`;
    const maxSeq = (db.prepare(`SELECT max(seq) FROM ${t}`).pluck().get() as number | null) ?? 0;
    this.seq = Math.max(meta.get(this.metaKey) ?? 0, maxSeq);
    this.rows = db.prepare(`SELECT count(*) FROM ${t}`).pluck().get() as number;
    this.insertTx = db.transaction((readings: readonly Reading[]) => {
      for (const r of readings) {
        const { v, q } = encodeValue(r.value, r.quality);
        this.stmt.insert.run(++this.seq, this.codec.pointId(r.point), r.ts, v, q);
      }
      this.codec.setMeta.run(this.metaKey, this.seq);
    });
    this.deleteTx = db.transaction((ranges: ReadonlyArray<readonly [number, number]>) => {
      let deleted = 0;
      for (const [first, last] of ranges) deleted += this.stmt.deleteRange.run(first, last).changes;
      return deleted;
    });
  }

  get lastSeq(): number {
    return this.seq;
  }

  get depth(): number {
    return this.rows;
  }

  /** Stores readings in one transaction, each with the stream's next sequence number. */
  append(readings: readonly Reading[]): AppendResult {
    if (readings.length === 0) return { first: null, last: null, stored: 0, refused: 0 };
    const before = this.seq;
    try {
      this.insertTx(readings);
    } catch (err) {
      this.seq = before;
      throw err;
    }
    this.rows += readings.length;
    return { first: before + 1, last: this.seq, stored: readings.length, refused: 0 };
  }

  /** Up to `limit` rows with afterSeq < seq <= upTo, in sequence order. */
  readAfter(afterSeq: number, limit: number, upTo: number = this.seq): StoredReading[] {
    const rows = this.stmt.readAfter.all(afterSeq, upTo, limit) as Row[];
    return rows.map(([seq, p, ts, v, q]) => ({
      seq,
      point: this.codec.pointName(p),
      ts,
      value: q & BOOL_FLAG ? v === 1 : v,
      quality: CODE_QUALITY[q & 3] ?? "bad",
    }));
  }

  firstSeq(): number | null {
    return this.oldest()?.[0] ?? null;
  }

  oldest(): [seq: number, ts: number] | undefined {
    return this.stmt.first.get() as [number, number] | undefined;
  }

  /** Deletes acknowledged ranges (inclusive) in one transaction; returns rows deleted. */
  ack(ranges: ReadonlyArray<readonly [number, number]>): number {
    if (ranges.length === 0) return 0;
    const deleted = this.deleteTx(ranges);
    this.rows -= deleted;
    return deleted;
  }

  /** Deletes the `n` oldest rows; returns how many went. */
  dropOldest(n: number): number {
    const boundary = n >= this.rows ? undefined : (this.stmt.nthSeq.get(n) as number | undefined);
    const deleted = boundary === undefined ? this.stmt.deleteAll.run().changes : this.stmt.deleteBelow.run(boundary).changes;
    this.rows -= deleted;
    return deleted;
  }

  /** Deletes rows stamped before `cutoff`, oldest first; returns how many. */
  expire(cutoff: number): number {
    let total = 0;
    let after = 0;
    for (;;) {
      const chunk = this.stmt.oldestChunk.all(after) as [number, number][];
      if (chunk.length === 0) break;
      // Rows are stored roughly in time order: stop at the first chunk with nothing to expire.
      const old = chunk.filter(([, ts]) => ts < cutoff);
      if (old.length === 0) break;
      total += this.deleteTx(old.map(([seq]) => [seq, seq] as const));
      after = chunk[chunk.length - 1]![0];
    }
    this.rows -= total;
    return total;
  }
}

export class Outbox {
  private readonly db: Database;
  private readonly now: () => number;
  private readonly pointIds = new Map<string, number>();
  private readonly pointNames: string[] = [];
  private readonly pageSize: number;
  private readonly dropped: DropCounters;
  private readonly streams: Record<StreamName, Stream>;
  private readonly telemetry: Stream;
  private readonly stmt: {
    insertPoint: Statement;
    setMeta: Statement;
    recallCommand: Statement;
    rememberCommand: Statement;
    pruneCommands: Statement;
    usedPages: Statement;
  };
  private commandsSincePrune = 0;

  private constructor(
    db: Database,
    private readonly opts: OutboxOptions,
  ) {
    this.db = db;
    this.now = opts.now ?? Date.now;
    db.pragma("journal_mode = WAL");
    db.pragma(`synchronous = ${opts.sync === "full" ? "FULL" : "NORMAL"}`);
    // Truncate the WAL after checkpoints so it cannot grow the footprint past the quota.
    db.pragma("journal_size_limit = 4194304");
    db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS points (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
      -- Results of recent commands by id: a repeated id is answered again, never executed twice.
      CREATE TABLE IF NOT EXISTS commands (id TEXT PRIMARY KEY, ts INTEGER NOT NULL, result TEXT NOT NULL) WITHOUT ROWID;
    `);
    this.pageSize = db.pragma("page_size", { simple: true }) as number;
    this.stmt = {
      insertPoint: db.prepare("INSERT INTO points (name) VALUES (?)"),
      setMeta: db.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"),
      recallCommand: db.prepare("SELECT result FROM commands WHERE id = ?").pluck(),
      rememberCommand: db.prepare("INSERT OR REPLACE INTO commands (id, ts, result) VALUES (?, ?, ?)"),
      pruneCommands: db.prepare("DELETE FROM commands WHERE id NOT IN (SELECT id FROM commands ORDER BY ts DESC LIMIT ?)"),
      // Prepared once: db.pragma() prepares a new statement per call, and this runs on every append.
      usedPages: db.prepare("SELECT (SELECT page_count FROM pragma_page_count()) - (SELECT freelist_count FROM pragma_freelist_count())").pluck(),
    };
    for (const { id, name } of db.prepare("SELECT id, name FROM points").all() as { id: number; name: string }[]) {
      this.pointIds.set(name, id);
      this.pointNames[id] = name;
    }
    const meta = new Map(
      (db.prepare("SELECT key, value FROM meta").all() as { key: string; value: number }[]).map((r) => [r.key, r.value]),
    );
    const codec: PointCodec = {
      pointId: (n) => this.pointId(n),
      pointName: (id) => this.pointNames[id] ?? `unknown-${id}`,
      setMeta: this.stmt.setMeta,
    };
    this.streams = {
      telemetry: new Stream("telemetry", db, meta, codec),
      events: new Stream("events", db, meta, codec),
      results: new Stream("results", db, meta, codec),
    };
    this.telemetry = this.streams.telemetry;
    this.dropped = {
      quota_oldest: meta.get("dropped.quota_oldest") ?? 0,
      quota_newest: meta.get("dropped.quota_newest") ?? 0,
      max_age: meta.get("dropped.max_age") ?? 0,
    };
  }

  /** Opens (and creates) the outbox; a path the agent cannot write is a UserError naming it. */
  static open(opts: OutboxOptions): Outbox {
    let db: Database;
    try {
      if (opts.path !== ":memory:") mkdirSync(dirname(opts.path), { recursive: true });
      db = new Database(opts.path);
      const outbox = new Outbox(db, opts);
      outbox.expire();
      return outbox;
    } catch (err) {
      throw new UserError(`store.path: cannot open ${opts.path}: ${describeFsError(err)}`);
    }
  }

  /** Opens an existing outbox for inspection (another process may be writing it). */
  static inspect(path: string, opts: Omit<OutboxOptions, "path">): Outbox {
    try {
      statSync(path);
    } catch {
      throw new UserError(`store.path: no outbox at ${path} (has the agent run with this config?)`);
    }
    try {
      return new Outbox(new Database(path, { fileMustExist: true }), { ...opts, path });
    } catch (err) {
      throw new UserError(`store.path: cannot open ${path}: ${describeFsError(err)}`);
    }
  }

  /**
   * A stream by name. Telemetry appends should go through Outbox.append (quota policy); the
   * other streams (events, command results) are small and always kept.
   */
  stream(name: StreamName): StreamStore {
    return this.streams[name];
  }

  /** The stored result of a command id, if it was seen among the last COMMAND_MEMORY commands. */
  recallCommand(id: string): string | undefined {
    return this.stmt.recallCommand.get(id) as string | undefined;
  }

  rememberCommand(id: string, ts: number, result: string): void {
    this.stmt.rememberCommand.run(id, ts, result);
    if (++this.commandsSincePrune >= 100) {
      this.commandsSincePrune = 0;
      this.stmt.pruneCommands.run(COMMAND_MEMORY);
    }
  }

  get lastSeq(): number {
    return this.telemetry.seq;
  }

  get depth(): number {
    return this.telemetry.rows;
  }

  /**
   * Stores the telemetry of one tick in one transaction, each reading with the next sequence
   * number, then applies the quota policy. With drop-newest and a full store the batch is
   * refused and counted.
   */
  append(readings: readonly Reading[]): AppendResult {
    if (readings.length === 0) return { first: null, last: null, stored: 0, refused: 0 };
    if (this.opts.whenFull === "drop-newest" && this.usedBytes() >= this.opts.quota) {
      this.addDropped("quota_newest", readings.length);
      return { first: null, last: null, stored: 0, refused: readings.length };
    }
    const result = this.telemetry.append(readings);
    if (this.opts.whenFull === "drop-oldest") this.enforceQuota();
    return result;
  }

  private pointId(name: string): number {
    let id = this.pointIds.get(name);
    if (id === undefined) {
      id = Number(this.stmt.insertPoint.run(name).lastInsertRowid);
      this.pointIds.set(name, id);
      this.pointNames[id] = name;
    }
    return id;
  }

  /** Up to `limit` telemetry readings with afterSeq < seq <= upTo, in sequence order. */
  readAfter(afterSeq: number, limit: number, upTo: number = this.telemetry.seq): StoredReading[] {
    return this.telemetry.readAfter(afterSeq, limit, upTo);
  }

  /** Sequence number of the oldest stored telemetry reading, or null when empty. */
  firstSeq(): number | null {
    return this.telemetry.firstSeq();
  }

  /** Deletes acknowledged telemetry ranges (inclusive) in one transaction; returns rows deleted. */
  ack(ranges: ReadonlyArray<readonly [number, number]>): number {
    return this.telemetry.ack(ranges);
  }

  /** Drops rows older than max_age in every stream; returns how many. Called at open and periodically. */
  expire(): number {
    const cutoff = this.now() - this.opts.maxAge;
    let total = 0;
    for (const name of STREAMS) total += this.streams[name].expire(cutoff);
    if (total > 0) this.addDropped("max_age", total);
    return total;
  }

  /** Bytes of the database that hold data (free pages are reused before the file grows). */
  usedBytes(): number {
    return (this.stmt.usedPages.get() as number) * this.pageSize;
  }

  private enforceQuota(): void {
    const used = this.usedBytes();
    const t = this.telemetry;
    if (used <= this.opts.quota || t.rows === 0) return;
    const target = this.opts.quota * (1 - HEADROOM);
    const share = Math.min(1, (used - target) / used);
    this.addDropped("quota_oldest", t.dropOldest(Math.max(1, Math.ceil(t.rows * share))));
  }

  private addDropped(reason: keyof DropCounters, n: number): void {
    this.dropped[reason] += n;
    this.stmt.setMeta.run(`dropped.${reason}`, this.dropped[reason]);
  }

  stats(): OutboxStats {
    const first = this.telemetry.oldest();
    return {
      depth: this.telemetry.rows,
      firstSeq: first ? first[0] : null,
      lastSeq: this.telemetry.seq,
      oldestTs: first ? first[1] : null,
      oldestAgeMs: first ? Math.max(0, this.now() - first[1]) : null,
      usedBytes: this.usedBytes(),
      fileBytes: this.fileBytes(),
      quota: this.opts.quota,
      dropped: { ...this.dropped },
      streams: {
        events: { depth: this.streams.events.rows, lastSeq: this.streams.events.seq },
        results: { depth: this.streams.results.rows, lastSeq: this.streams.results.seq },
      },
    };
  }

  /** The database file plus its WAL and shared-memory files. */
  fileBytes(): number {
    if (this.opts.path === ":memory:") return this.usedBytes();
    let total = 0;
    for (const suffix of ["", "-wal", "-shm"]) {
      try {
        total += statSync(this.opts.path + suffix).size;
      } catch {
        // absent: nothing to count
      }
    }
    return total;
  }

  /** Runs a WAL checkpoint (and truncates the WAL) so the files stay small. */
  checkpoint(): void {
    this.db.pragma("wal_checkpoint(TRUNCATE)");
  }

  close(): void {
    if (!this.db.open) return;
    try {
      this.checkpoint();
    } finally {
      this.db.close();
    }
  }
}


function encodeValue(value: Value, quality: Quality): { v: number | string | null; q: number } {
  const q = QUALITY_CODE[quality];
  if (typeof value === "boolean") return { v: value ? 1 : 0, q: q | BOOL_FLAG };
  return { v: value, q };
}

function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EROFS") return "read-only file system";
  if (code === "ENOTDIR") return "a parent is not a directory";
  if (code === "SQLITE_CANTOPEN") return "cannot open the database file (check the directory exists and is writable)";
  if (code === "SQLITE_READONLY") return "the database is read-only";
  if (code === "SQLITE_NOTADB") return "not an outbox database";
  return err instanceof Error ? err.message : String(err);
}
