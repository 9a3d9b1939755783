/**
 * The SQLite outbox: every reading, event and command result is kept here, with its per-gateway
 * sequence number, until the broker has acknowledged the message that carried it.
 *
 * Durability: WAL with `synchronous=FULL` by default, so a committed sequence number survives a
 * power cut and is never handed out twice (a reused number would make the receiver drop a real
 * reading as a duplicate). Under `normal`, numbers come from blocks reserved durably beforehand
 * (seq-reservation.ts), so they stay unique too. Acknowledgement deletes are batched by the
 * caller, so FULL costs one fsync per tick and per ack batch, not per reading.
 *
 * The quota and max_age cover everything in the file: the three streams and the dead letters
 * (messages the broker refused even one reading at a time, kept for an operator to resend).
 * Every drop is counted per stream and reason.
 *
 * In-memory state (cursors, caches, counters) changes only once the transaction that backs it
 * committed: a failed transaction (disk full, I/O error) leaves nothing behind that no longer
 * exists in the file.
 */
import type { Cursor } from "../model/cursor.js";
import { mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { Database, type Statement } from "./sqlite.js";
import { UserError } from "../model/errors.js";
import { type DropCounters, noDrops, sumDrops } from "./drops.js";
import { OutboxLock } from "./lock.js";
import { nextBlock, MIN_BLOCK, SeqReservations } from "./seq-reservation.js";
import { DropLedger } from "./drop-ledger.js";
import { KeptRows } from "./kept.js";
import { rangesSql } from "./ranges.js";
import { coalesce, type SeqRange, subtract, toRanges } from "../model/seq-ranges.js";
import type { Quality, Reading, StoredReading, Value } from "../model/reading.js";
import type { DroppedRange, DropReason, ReplayAnswer } from "../model/replay.js";
import type { DeadLetterStats, OutboxStats, StreamName, StreamStats } from "../model/status.js";

export type { DeadLetterStats, OutboxStats, StreamName, StreamStats };

export type DropPolicy = "drop-oldest" | "drop-newest";

export interface OutboxOptions {
  path: string;
  /** Bytes the database may use; the file stays within this plus a small margin. */
  quota: number;
  whenFull: DropPolicy;
  /** Rows older than this (by their timestamp) are dropped, in ms. */
  maxAge: number;
  sync: "full" | "normal";
  /**
   * How long rows the broker acknowledged are kept for a replay, in ms after the acknowledgement
   * (store.replay_window); 0 (the default): deleted at once.
   */
  replayWindow?: number;
  now?: () => number;
}

export interface AppendResult {
  /** First and last sequence number given, or null when nothing was stored. */
  first: number | null;
  last: number | null;
  stored: number;
  refused: number;
}

/** A stored row the broker refused, kept with the reason. */
export interface DeadLetter extends StoredReading {
  stream: StreamName;
  reason: string;
  /** When it was set aside (Unix ms). */
  at: number;
}

export interface DeadLetterFilter {
  stream?: StreamName;
  /** Inclusive sequence range within the stream(s). */
  seq?: readonly [number, number];
}

/** Ranges moved back to a stream for sending again. */
export interface Resent {
  stream: StreamName;
  ranges: Array<[number, number]>;
  count: number;
}

/** What an open after an unclean stop skipped (sync: normal), for the log. */
export interface SkippedSeqs {
  stream: StreamName;
  from: number;
  to: number;
}

const QUALITY_CODE: Record<Quality, number> = { good: 0, bad: 1, uncertain: 2 };
const CODE_QUALITY: Quality[] = ["good", "bad", "uncertain"];
const BOOL_FLAG = 4;
/** Drop-oldest frees this share of the quota below the limit, so it does not run on every tick. */
const HEADROOM = 0.02;
/** How many command ids are remembered for de-duplication. */
const COMMAND_MEMORY = 10_000;
/** Ranges a replay answer holds at most (about 50 kB of JSON); a longer answer ends early. */
export const REPLAY_MAX_RANGES = 1000;

/**
 * The outbox file's format. 1: release 0.1.0 (no `format` key). 2: dead letters, drop counters
 * per stream. 3: cursors (what a pushing source — a bridged board — has stored, committed with
 * its readings, so a resent reading is recognised after a crash). 4: rows kept for replay
 * (`<table>_kept`) and the drop ledger (`dropped_ranges`: which numbers were dropped, and why).
 * Each step runs in one transaction when a file of an older format is opened; a file
 * of a newer format is refused rather than misread. Every change to the format adds a step here
 * and an upgrade test on a fixture written by the release before it (test/fixtures/outbox-*.db).
 */
export const FORMAT = 4;
const MIGRATIONS: ReadonlyArray<{ to: number; sql: string }> = [
  {
    to: 2,
    sql: `
      CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY, stream TEXT NOT NULL, seq INTEGER NOT NULL, p INTEGER NOT NULL, ts INTEGER NOT NULL,
        v ANY, q INTEGER NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL, UNIQUE (stream, seq));
    `,
  },
  {
    to: 3,
    sql: `CREATE TABLE IF NOT EXISTS cursors (key TEXT PRIMARY KEY, value INTEGER NOT NULL, at INTEGER NOT NULL) WITHOUT ROWID;`,
  },
  {
    to: 4,
    // Kept rows: a stream's columns and when the broker acknowledged them (at, Unix ms).
    sql: `
      CREATE TABLE IF NOT EXISTS readings_kept (seq INTEGER PRIMARY KEY, p INTEGER NOT NULL, ts INTEGER NOT NULL, v ANY, q INTEGER NOT NULL, at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS events_kept (seq INTEGER PRIMARY KEY, p INTEGER NOT NULL, ts INTEGER NOT NULL, v ANY, q INTEGER NOT NULL, at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS results_kept (seq INTEGER PRIMARY KEY, p INTEGER NOT NULL, ts INTEGER NOT NULL, v ANY, q INTEGER NOT NULL, at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS dropped_ranges (
        stream TEXT NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL,
        PRIMARY KEY (stream, first)) WITHOUT ROWID;
    `,
  },
];

/** How many cursors are kept (the least recently moved go first), and for how long one that stopped moving is. */
const CURSOR_MEMORY = 10_000;
const CURSOR_MAX_AGE_MS = 90 * 86_400_000;

export type { Cursor };

type Row = [seq: number, pointId: number, ts: number, v: number | string | null, q: number];

/**
 * Each stream has its own table and its own sequence numbers, so a receiver of telemetry sees no
 * gap where an event was stored. Telemetry lives in `readings` (the first stream there was).
 */
const STREAM_TABLE: Record<StreamName, string> = { telemetry: "readings", events: "events", results: "results" };
const STREAM_META: Record<StreamName, string> = { telemetry: "", events: "events.", results: "results." };
export const STREAMS: readonly StreamName[] = ["telemetry", "events", "results"];

export function isStreamName(s: string): s is StreamName {
  return (STREAMS as readonly string[]).includes(s);
}

/** One stream of the outbox: what the uplink needs to send it and delete what was acknowledged. */
export interface StreamStore {
  readonly name: StreamName;
  readonly lastSeq: number;
  readonly depth: number;
  /** Stores rows under the outbox's quota policy, each with the stream's next sequence number. */
  append(readings: readonly Reading[]): AppendResult;
  readAfter(afterSeq: number, limit: number, upTo?: number): StoredReading[];
  firstSeq(): number | null;
  ack(ranges: ReadonlyArray<readonly [number, number]>): number;
}

/** What a stream needs from the outbox around it. */
interface StreamHost {
  pointId(name: string): number;
  pointName(id: number): string;
  setMeta: Statement;
  appendTo(stream: Stream, readings: readonly Reading[]): AppendResult;
  /** Writes cursors inside the transaction under way. */
  writeCursors(cursors: readonly Cursor[]): void;
  /** Records dropped numbers in the drop ledger, inside the transaction under way. */
  recordDrop(stream: StreamName, ranges: readonly SeqRange[], reason: DropReason): void;
  now(): number;
}

class Stream implements StreamStore {
  seq: number;
  rows: number;
  /** Numbers up to this one are reserved durably (sync: normal); Infinity when not needed. */
  reserved = Number.POSITIVE_INFINITY;
  block = MIN_BLOCK;
  reservedAt = 0;
  readonly dropped: DropCounters;
  /** Rows the broker acknowledged, kept for replay (null: an older file opened read-only). */
  readonly kept: KeptRows | null;
  /** Acknowledged rows go to `kept` instead of being deleted (store.replay_window > 0). */
  keepAcked = false;
  private readonly stmt: {
    insert: Statement;
    readAfter: Statement;
    deleteRange: Statement;
    deleteBelow: Statement;
    nthSeq: Statement;
    oldestChunk: Statement;
    first: Statement;
    ranges: Statement;
    rangesBelow: Statement;
  };
  readonly metaPrefix: string;
  private readonly metaKey: string;
  // Built once: db.transaction() makes a new wrapper (closures and property definitions) per call,
  // which on a busy gateway is garbage every tick.
  private readonly insertTx: (readings: readonly Reading[], first: number, cursors: readonly Cursor[] | null) => void;
  private readonly deleteTx: (ranges: ReadonlyArray<readonly [number, number]>) => number;
  private readonly keepTx: (ranges: ReadonlyArray<readonly [number, number]>, at: number) => [deleted: number, kept: number];
  private readonly dropTx: (ranges: readonly SeqRange[], reason: DropReason) => number;
  private readonly dropBelowTx: (boundary: number) => number;

  constructor(
    readonly name: StreamName,
    readonly table: string,
    db: Database,
    meta: Map<string, number>,
    private readonly host: StreamHost,
  ) {
    const t = table;
    this.stmt = {
      insert: db.prepare(`INSERT INTO ${t} (seq, p, ts, v, q) VALUES (?, ?, ?, ?, ?)`),
      readAfter: db.prepare(`SELECT seq, p, ts, v, q FROM ${t} WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?`).raw(),
      deleteRange: db.prepare(`DELETE FROM ${t} WHERE seq >= ? AND seq <= ?`),
      deleteBelow: db.prepare(`DELETE FROM ${t} WHERE seq < ?`),
      nthSeq: db.prepare(`SELECT seq FROM ${t} ORDER BY seq LIMIT 1 OFFSET ?`).pluck(),
      oldestChunk: db.prepare(`SELECT seq, ts FROM ${t} WHERE seq > ? ORDER BY seq LIMIT 1000`).raw(),
      first: db.prepare(`SELECT seq, ts FROM ${t} ORDER BY seq LIMIT 1`).raw(),
      ranges: db.prepare(rangesSql(t, "seq >= ? AND seq <= ?")).raw(),
      rangesBelow: db.prepare(rangesSql(t, "seq < ?")).raw(),
    };
    this.kept = hasTable(db, `${t}_kept`) ? new KeptRows(db, t, `${t}_kept`) : null;
    this.metaPrefix = STREAM_META[name];
    this.metaKey = `${this.metaPrefix}last_seq`;
    const maxSeq = (db.prepare(`SELECT max(seq) FROM ${t}`).pluck().get() as number | null) ?? 0;
    this.seq = Math.max(meta.get(this.metaKey) ?? 0, maxSeq);
    this.rows = db.prepare(`SELECT count(*) FROM ${t}`).pluck().get() as number;
    this.dropped = noDrops();
    for (const reason of Object.keys(this.dropped) as (keyof DropCounters)[]) {
      this.dropped[reason] = meta.get(`${this.metaPrefix}dropped.${reason}`) ?? 0;
    }
    this.insertTx = db.transaction((readings: readonly Reading[], first: number, cursors: readonly Cursor[] | null) => {
      let seq = first;
      // Indexed, and no object per row (storedValue, qualityCode): garbage on every append otherwise.
      for (let i = 0; i < readings.length; i++) {
        const r = readings[i]!;
        this.stmt.insert.run(seq++, this.host.pointId(r.point), r.ts, storedValue(r.value), qualityCode(r.value, r.quality));
      }
      this.host.setMeta.run(this.metaKey, seq - 1);
      if (cursors) this.host.writeCursors(cursors);
    });
    this.deleteTx = db.transaction((ranges: ReadonlyArray<readonly [number, number]>) => {
      let deleted = 0;
      for (const [first, last] of ranges) deleted += this.stmt.deleteRange.run(first, last).changes;
      return deleted;
    });
    this.keepTx = db.transaction((ranges: ReadonlyArray<readonly [number, number]>, at: number): [number, number] => {
      let deleted = 0;
      let kept = 0;
      for (const [first, last] of ranges) {
        kept += this.kept!.keep(first, last, at);
        deleted += this.stmt.deleteRange.run(first, last).changes;
      }
      return [deleted, kept];
    });
    this.dropTx = db.transaction((ranges: readonly SeqRange[], reason: DropReason) => {
      let deleted = 0;
      for (const [first, last] of ranges) deleted += this.stmt.deleteRange.run(first, last).changes;
      this.host.recordDrop(this.name, ranges, reason);
      return deleted;
    });
    this.dropBelowTx = db.transaction((boundary: number) => {
      this.host.recordDrop(this.name, this.stmt.rangesBelow.all(boundary) as SeqRange[], "quota");
      return this.stmt.deleteBelow.run(boundary).changes;
    });
  }

  get lastSeq(): number {
    return this.seq;
  }

  get depth(): number {
    return this.rows;
  }

  append(readings: readonly Reading[]): AppendResult {
    return this.host.appendTo(this, readings);
  }

  /** Inserts in one transaction (with the cursors given); seq and row count move only once it committed. */
  insert(readings: readonly Reading[], cursors: readonly Cursor[] | null = null): AppendResult {
    const first = this.seq + 1;
    this.insertTx(readings, first, cursors);
    this.seq += readings.length;
    this.rows += readings.length;
    return { first, last: this.seq, stored: readings.length, refused: 0 };
  }

  /** Up to `limit` rows with afterSeq < seq <= upTo, in sequence order. */
  readAfter(afterSeq: number, limit: number, upTo: number = this.seq): StoredReading[] {
    const rows = this.stmt.readAfter.all(afterSeq, upTo, limit) as Row[];
    const out: StoredReading[] = new Array(rows.length);
    // Indexed, not destructured: an array pattern runs the iterator protocol, five results per row.
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      out[i] = decodeRow(r[0], this.host.pointName(r[1]), r[2], r[3], r[4]);
    }
    return out;
  }

  firstSeq(): number | null {
    return this.oldest()?.[0] ?? null;
  }

  oldest(): [seq: number, ts: number] | undefined {
    return this.stmt.first.get() as [number, number] | undefined;
  }

  /**
   * Deletes acknowledged ranges (inclusive) in one transaction — or, with a replay window, moves
   * them to the kept rows; returns rows deleted from the stream.
   */
  ack(ranges: ReadonlyArray<readonly [number, number]>): number {
    if (ranges.length === 0) return 0;
    if (this.keepAcked) {
      const [deleted, kept] = this.keepTx(ranges, this.host.now());
      this.rows -= deleted;
      this.kept!.count += kept;
      return deleted;
    }
    const deleted = this.deleteTx(ranges);
    this.rows -= deleted;
    return deleted;
  }

  /** The numbers within lo..hi still in the stream (not acknowledged yet). */
  unsentRanges(lo: number, hi: number): SeqRange[] {
    return this.stmt.ranges.all(lo, hi) as SeqRange[];
  }

  /** Deletes the `n` oldest rows (recorded in the drop ledger as `quota`); returns how many went. */
  dropOldest(n: number): number {
    if (n <= 0 || this.rows === 0) return 0;
    const boundary = n >= this.rows ? undefined : (this.stmt.nthSeq.get(n) as number | undefined);
    const deleted = this.dropBelowTx(boundary ?? Number.MAX_SAFE_INTEGER);
    this.rows -= deleted;
    return deleted;
  }

  /** Deletes rows stamped before `cutoff`, oldest first (recorded as `max-age`); returns how many. */
  expire(cutoff: number): number {
    let total = 0;
    let after = 0;
    for (;;) {
      const chunk = this.stmt.oldestChunk.all(after) as [number, number][];
      if (chunk.length === 0) break;
      // Rows are stored roughly in time order: stop at the first chunk with nothing to expire.
      const old = chunk.filter(([, ts]) => ts < cutoff);
      if (old.length === 0) break;
      const deleted = this.dropTx(toRanges(old.map(([seq]) => seq)), "max-age");
      this.rows -= deleted;
      total += deleted;
      after = chunk[chunk.length - 1]![0];
    }
    return total;
  }

  /** Rows moved out (dead letters) or back in (resent): the count follows the file. */
  adjustRows(delta: number): void {
    this.rows += delta;
  }
}

export class Outbox {
  private readonly db: Database;
  private readonly now: () => number;
  private readonly pointIds = new Map<string, number>();
  private readonly pointNames: string[] = [];
  /** Point names inserted by the transaction under way: forgotten again if it rolls back. */
  private readonly uncommittedPoints: string[] = [];
  private readonly pageSize: number;
  private readonly streams: Record<StreamName, Stream>;
  private readonly telemetry: Stream;
  private readonly reservations: SeqReservations | null;
  private readonly stmt: {
    insertPoint: Statement;
    setMeta: Statement;
    recallCommand: Statement;
    rememberCommand: Statement;
    pruneCommands: Statement;
    usedPages: Statement;
    setCursor: Statement | null;
    pruneCursors: Statement | null;
  };
  /** Committed cursors by key (keys come from outside: a Map). */
  private readonly cursors = new Map<string, number>();
  private readonly uncommittedCursors: Cursor[] = [];
  private readonly host: StreamHost;
  private readonly dl: DeadLetterTable | null;
  /** Which numbers were dropped, and why (null: an older file opened read-only). */
  private readonly ledger: DropLedger | null;
  private readonly replayWindow: number;
  /** Builds a replay answer and moves the kept rows back, in one transaction. */
  private readonly replayTx: (stream: Stream, from: number, to: number, maxRanges: number) => { answer: ReplayAnswer; moved: number };
  private commandsSincePrune = 0;
  /** This process's claim on the file, released at close (none when inspecting). */
  private lock: OutboxLock | null = null;
  /** The format the file had when it was opened (before any migration). */
  readonly openedFormat: number;
  /** Sequence numbers skipped because the last stop was unclean (sync: normal). */
  readonly skipped: SkippedSeqs[] = [];

  private constructor(
    db: Database,
    private readonly opts: OutboxOptions,
    private readonly readOnly: boolean,
  ) {
    this.db = db;
    this.now = opts.now ?? Date.now;
    if (!readOnly) {
      db.pragma("journal_mode = WAL");
      db.pragma(`synchronous = ${opts.sync === "full" ? "FULL" : "NORMAL"}`);
      // Truncate the WAL after checkpoints so it cannot grow the footprint past the quota.
      db.pragma("journal_size_limit = 4194304");
    }
    this.openedFormat = readOnly ? formatOf(db) : prepareFile(db);
    this.pageSize = db.pragma("page_size", { simple: true }) as number;
    this.stmt = {
      insertPoint: db.prepare("INSERT INTO points (name) VALUES (?)"),
      setMeta: db.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"),
      recallCommand: db.prepare("SELECT result FROM commands WHERE id = ?").pluck(),
      rememberCommand: db.prepare("INSERT OR REPLACE INTO commands (id, ts, result) VALUES (?, ?, ?)"),
      pruneCommands: db.prepare("DELETE FROM commands WHERE id NOT IN (SELECT id FROM commands ORDER BY ts DESC LIMIT ?)"),
      // Prepared once: db.pragma() prepares a new statement per call, and this runs on every append.
      usedPages: db.prepare("SELECT (SELECT page_count FROM pragma_page_count()) - (SELECT freelist_count FROM pragma_freelist_count())").pluck(),
      setCursor: readOnly ? null : db.prepare("INSERT INTO cursors (key, value, at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, at = excluded.at"),
      pruneCursors: readOnly ? null : db.prepare("DELETE FROM cursors WHERE at < ? OR key NOT IN (SELECT key FROM cursors ORDER BY at DESC LIMIT ?)"),
    };
    if (hasTable(db, "cursors")) {
      for (const { key, value } of db.prepare("SELECT key, value FROM cursors").all() as { key: string; value: number }[]) this.cursors.set(key, value);
    }
    for (const { id, name } of db.prepare("SELECT id, name FROM points").all() as { id: number; name: string }[]) {
      this.pointIds.set(name, id);
      this.pointNames[id] = name;
    }
    const meta = new Map(
      (db.prepare("SELECT key, value FROM meta").all() as { key: string; value: number }[]).map((r) => [r.key, r.value]),
    );
    const host: StreamHost = (this.host = {
      pointId: (n) => this.pointId(n),
      pointName: (id) => this.pointNames[id] ?? `unknown-${id}`,
      setMeta: this.stmt.setMeta,
      appendTo: (stream, readings) => this.appendTo(stream, readings),
      writeCursors: (cursors) => {
        if (!this.stmt.setCursor) throw new Error("outbox opened read-only");
        const at = this.now();
        for (const c of cursors) {
          this.stmt.setCursor.run(c[0], c[1], at);
          this.uncommittedCursors.push(c);
        }
      },
      recordDrop: (stream, ranges, reason) => this.ledger?.record(stream, ranges, reason, this.now()),
      now: () => this.now(),
    });
    this.ledger = hasTable(db, "dropped_ranges") ? new DropLedger(db) : null;
    this.replayWindow = opts.replayWindow ?? 0;
    this.replayTx = db.transaction((stream: Stream, from: number, to: number, maxRanges: number) => this.answerReplay(stream, from, to, maxRanges));
    this.streams = {
      telemetry: new Stream("telemetry", STREAM_TABLE.telemetry, db, meta, host),
      events: new Stream("events", STREAM_TABLE.events, db, meta, host),
      results: new Stream("results", STREAM_TABLE.results, db, meta, host),
    };
    this.telemetry = this.streams.telemetry;
    if (!readOnly && this.replayWindow > 0) for (const name of STREAMS) this.streams[name].keepAcked = this.streams[name].kept !== null;
    this.dl = hasTable(db, "dead_letters") ? new DeadLetterTable(db, this.readOnly) : null;
    // Numbers a dead letter holds are taken as well (its row left the stream's table).
    if (this.dl) for (const s of STREAMS) this.streams[s].seq = Math.max(this.streams[s].seq, this.dl.maxSeq(s));
    this.reservations = readOnly || opts.path === ":memory:" ? null : new SeqReservations(opts.path);
    if (this.reservations) this.resumeSequences();
  }

  /** Opens (and creates, or migrates) the outbox; a path the agent cannot write is a UserError naming it. */
  static open(opts: OutboxOptions): Outbox {
    let db: Database | undefined;
    let lock: OutboxLock | null = null;
    try {
      if (opts.path !== ":memory:") {
        mkdirSync(dirname(opts.path), { recursive: true });
        lock = OutboxLock.acquire(opts.path);
      }
      db = new Database(opts.path);
      const outbox = new Outbox(db, opts, false);
      outbox.lock = lock;
      outbox.expire();
      return outbox;
    } catch (err) {
      if (db?.open) db.close();
      lock?.release();
      if (err instanceof UserError) throw err;
      throw new UserError(`store.path: cannot open ${opts.path}: ${describeFsError(err)}`);
    }
  }

  /**
   * Opens an existing outbox read-only, for inspection while the agent may be writing it: no
   * pragma, migration, checkpoint or sidecar write, so the running agent's files stay untouched.
   */
  static inspect(path: string, opts: Omit<OutboxOptions, "path">): Outbox {
    try {
      statSync(path);
    } catch {
      throw new UserError(`store.path: no outbox at ${path} (has the agent run with this config?)`);
    }
    let db: Database | undefined;
    try {
      db = new Database(path, { fileMustExist: true, readonly: true });
      return new Outbox(db, { ...opts, path }, true);
    } catch (err) {
      if (db?.open) db.close();
      if (err instanceof UserError) throw err;
      throw new UserError(`store.path: cannot open ${path}: ${describeFsError(err)}`);
    }
  }

  /** A stream by name; its appends follow the quota policy like telemetry's. */
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
  append(readings: readonly Reading[], cursors: readonly Cursor[] | null = null): AppendResult {
    return this.appendTo(this.telemetry, readings, cursors);
  }

  /**
   * A cursor's committed value: what a pushing source stored last under `key` (a board's highest
   * stored sequence of one boot), or undefined. Moves only with a committed append.
   */
  cursor(key: string): number | undefined {
    return this.cursors.get(key);
  }

  private appendTo(stream: Stream, readings: readonly Reading[], cursors: readonly Cursor[] | null = null): AppendResult {
    if (readings.length === 0) {
      // Nothing to store but cursors to move (every reading was a duplicate): their own transaction.
      if (cursors && cursors.length > 0) this.commitCursors(cursors);
      return { first: null, last: null, stored: 0, refused: 0 };
    }
    if (this.opts.whenFull === "drop-newest" && this.usedBytes() >= this.opts.quota) {
      this.addDropped(stream, "quota_newest", readings.length);
      return { first: null, last: null, stored: 0, refused: readings.length };
    }
    if (stream.seq + readings.length > stream.reserved) this.reserve(stream, stream.seq + readings.length);
    let result: AppendResult | undefined;
    try {
      result = stream.insert(readings, cursors);
    } finally {
      this.settlePoints(result !== undefined);
      this.settleCursors(result !== undefined);
    }
    if (this.opts.whenFull === "drop-oldest") this.enforceQuota();
    return result;
  }

  private pointId(name: string): number {
    let id = this.pointIds.get(name);
    if (id === undefined) {
      id = Number(this.stmt.insertPoint.run(name).lastInsertRowid);
      this.pointIds.set(name, id);
      this.pointNames[id] = name;
      this.uncommittedPoints.push(name);
    }
    return id;
  }

  private commitCursors(cursors: readonly Cursor[]): void {
    let done = false;
    try {
      this.db.transaction(() => this.host.writeCursors(cursors))();
      done = true;
    } finally {
      this.settleCursors(done);
    }
  }

  /** After a transaction: the cursors it wrote count only if it committed. */
  private settleCursors(committed: boolean): void {
    if (committed) for (const [key, value] of this.uncommittedCursors) this.cursors.set(key, value);
    this.uncommittedCursors.length = 0;
  }

  /** After a transaction: keep the new point ids if it committed, forget them if it rolled back. */
  private settlePoints(committed: boolean): void {
    if (!committed) {
      for (const name of this.uncommittedPoints) {
        const id = this.pointIds.get(name);
        this.pointIds.delete(name);
        if (id !== undefined) delete this.pointNames[id];
      }
    }
    this.uncommittedPoints.length = 0;
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

  /**
   * Drops rows older than max_age in every stream and among the dead letters, and kept rows past
   * max_age or the replay window; returns how many unsent rows went (kept rows were delivered:
   * they are in the drop ledger, not in the drop counters).
   */
  expire(): number {
    const now = this.now();
    const cutoff = now - this.opts.maxAge;
    let total = 0;
    for (const name of STREAMS) {
      const stream = this.streams[name];
      const n = stream.expire(cutoff);
      if (n > 0) this.addDropped(stream, "max_age", n);
      total += n;
      const dead = this.dl ? this.dropDead(name, () => this.dl!.expire(name, cutoff), "max-age") : 0;
      if (dead > 0) this.addDropped(stream, "max_age", dead);
      total += dead;
      if (stream.kept && !this.readOnly) {
        this.dropKept(stream, () => stream.kept!.expire("ts", cutoff), "max-age");
        this.dropKept(stream, () => stream.kept!.expire("at", now - this.replayWindow), "replay-window");
      }
    }
    this.pruneCursors();
    return total;
  }

  /** Deletes kept rows of a stream and records them in the ledger, in one transaction; returns how many. */
  private dropKept(stream: Stream, drop: () => { ranges: SeqRange[]; count: number }, reason: DropReason): number {
    if (stream.kept!.count === 0) return 0;
    const { count } = this.db.transaction(() => {
      const r = drop();
      this.ledger?.record(stream.name, r.ranges, reason, this.now());
      return r;
    })();
    stream.kept!.count -= count;
    return count;
  }

  /** Deletes dead letters of a stream and records them in the ledger, in one transaction; returns how many. */
  private dropDead(name: StreamName, drop: () => number[], reason: DropReason): number {
    return this.db.transaction(() => {
      const seqs = drop().sort((a, b) => a - b);
      this.ledger?.record(name, toRanges(seqs), reason, this.now());
      return seqs.length;
    })();
  }

  /** Forgets cursors that stopped moving long ago, and the least recent beyond CURSOR_MEMORY. */
  private pruneCursors(): void {
    if (!this.stmt.pruneCursors || this.cursors.size === 0) return;
    if (this.stmt.pruneCursors.run(this.now() - CURSOR_MAX_AGE_MS, CURSOR_MEMORY).changes === 0) return;
    this.cursors.clear();
    for (const { key, value } of this.db.prepare("SELECT key, value FROM cursors").all() as { key: string; value: number }[]) this.cursors.set(key, value);
  }

  /** Bytes of the database that hold data (free pages are reused before the file grows). */
  usedBytes(): number {
    return (this.stmt.usedPages.get() as number) * this.pageSize;
  }

  /**
   * Over the quota: the oldest rows go, in this order — rows kept for replay (delivered already),
   * dead letters, telemetry, events, command results (the last are few, and someone waits for
   * them) — enough to get HEADROOM below it.
   */
  private enforceQuota(): void {
    // Rows are dropped as a share of the rows, but part of the file is not rows (tables, the drop
    // ledger): a second round catches what the first estimate left over.
    for (let round = 0; round < 3; round++) {
      const used = this.usedBytes();
      if (used <= this.opts.quota) return;
      this.dropShare(used);
    }
  }

  private dropShare(used: number): void {
    const target = this.opts.quota * (1 - HEADROOM);
    const share = Math.min(1, (used - target) / used);
    const dead = this.dl?.count() ?? 0;
    const rows = dead + STREAMS.reduce((n, s) => n + this.streams[s].rows + (this.streams[s].kept?.count ?? 0), 0);
    let need = Math.max(1, Math.ceil(rows * share));
    for (const name of STREAMS) {
      const stream = this.streams[name];
      if (need <= 0) break;
      if (!stream.kept) continue;
      const n = need;
      need -= this.dropKept(stream, () => stream.kept!.dropOldest(n), "quota");
    }
    if (this.dl && dead > 0 && need > 0) {
      const n = need;
      const per = this.db.transaction(() => {
        const dropped = this.dl!.dropOldest(Math.min(n, dead));
        for (const { stream, seqs } of dropped) this.ledger?.record(stream, toRanges(seqs), "quota", this.now());
        return dropped;
      })();
      for (const { stream, seqs } of per) {
        this.addDropped(this.streams[stream], "quota_oldest", seqs.length);
        need -= seqs.length;
      }
    }
    for (const name of STREAMS) {
      if (need <= 0) break;
      const stream = this.streams[name];
      const n = stream.dropOldest(Math.min(need, stream.rows));
      if (n > 0) this.addDropped(stream, "quota_oldest", n);
      need -= n;
    }
  }

  private addDropped(stream: Stream, reason: keyof DropCounters, n: number): void {
    const total = stream.dropped[reason] + n;
    if (!this.readOnly) this.stmt.setMeta.run(`${stream.metaPrefix}dropped.${reason}`, total);
    stream.dropped[reason] = total;
  }

  // --- dead letters ---------------------------------------------------------------------------

  /**
   * Sets rows aside that the broker refused, with the reason: they leave the stream (so what
   * follows them is delivered) but stay in the file, within the quota, until an operator resends
   * or purges them. Returns how many rows moved.
   */
  deadLetter(name: StreamName, first: number, last: number, reason: string): number {
    const dl = this.requireDeadLetters();
    const moved = dl.take(name, first, last, reason, this.now());
    this.streams[name].adjustRows(-moved);
    return moved;
  }

  deadLetters(filter: DeadLetterFilter = {}, limit = 1000): DeadLetter[] {
    if (!this.dl) return [];
    return this.dl.list(filter, limit).map((r) => ({ ...decodeRow(r.seq, this.pointNames[r.p] ?? `unknown-${r.p}`, r.ts, r.v, r.q), stream: r.stream as StreamName, reason: r.reason, at: r.at }));
  }

  /** Moves dead letters back into their streams (with their sequence numbers) to be sent again. */
  resendDeadLetters(filter: DeadLetterFilter = {}): Resent[] {
    const dl = this.requireDeadLetters();
    const out: Resent[] = [];
    for (const name of filter.stream ? [filter.stream] : STREAMS) {
      const seqs = dl.giveBack(name, filter.seq);
      if (seqs.length === 0) continue;
      this.streams[name].adjustRows(seqs.length);
      out.push({ stream: name, ranges: toRanges(seqs), count: seqs.length });
    }
    return out;
  }

  /** Deletes dead letters for good (counted as purged); returns how many per stream. */
  purgeDeadLetters(filter: DeadLetterFilter = {}): Array<{ stream: StreamName; count: number }> {
    const dl = this.requireDeadLetters();
    const out: Array<{ stream: StreamName; count: number }> = [];
    for (const name of filter.stream ? [filter.stream] : STREAMS) {
      const n = this.dropDead(name, () => dl.purge(name, filter.seq), "purged");
      if (n === 0) continue;
      this.addDropped(this.streams[name], "purged", n);
      out.push({ stream: name, count: n });
    }
    return out;
  }

  private requireDeadLetters(): DeadLetterTable {
    if (!this.dl || this.readOnly) throw new UserError("the outbox is open read-only here");
    return this.dl;
  }

  // --- replay --------------------------------------------------------------------------------

  /**
   * A replay (the gateway's `outbox` command target): the rows of `name` within from..to still
   * kept go back into the stream with their original numbers, to be sent again; the answer says
   * which numbers were put back, which were never acknowledged (pending: waiting, in flight, or
   * dead letters), and why each other one is missing. One transaction. At most `maxRanges`
   * ranges: past that the answer — and what is put back — ends early, and its `to` says where.
   */
  replay(name: StreamName, from: number, to: number, maxRanges = REPLAY_MAX_RANGES): ReplayAnswer {
    if (this.readOnly) throw new UserError("the outbox is open read-only here");
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 1 || to < from || !(maxRanges >= 1)) {
      throw new RangeError(`replay: expected 1 <= from <= to (safe integers), got ${from}..${to}`);
    }
    const stream = this.streams[name];
    const { answer, moved } = this.replayTx(stream, from, to, maxRanges);
    stream.adjustRows(moved);
    if (stream.kept) stream.kept.count -= moved;
    return answer;
  }

  private answerReplay(stream: Stream, from: number, to: number, maxRanges: number): { answer: ReplayAnswer; moved: number } {
    const name = stream.name;
    const issued = Math.min(to, stream.seq);
    let resent: SeqRange[] = [];
    let pending: SeqRange[] = [];
    let missing: DroppedRange[] = [];
    if (from <= issued) {
      pending = coalesce([...stream.unsentRanges(from, issued), ...(this.dl?.ranges(name, from, issued) ?? [])]);
      resent = stream.kept?.ranges(from, issued) ?? [];
      missing = this.explain(name, subtract(subtract([[from, issued]], pending), resent));
    }
    if (to > issued) missing.push({ from: Math.max(from, issued + 1), to, reason: "not-issued" });
    let end = to;
    if (resent.length + pending.length + missing.length > maxRanges) {
      // The first maxRanges ranges of all three, in number order: the answer ends with the last.
      const ends = [...resent.map((r) => r[1]), ...pending.map((r) => r[1]), ...missing.map((m) => m.to)].sort((a, b) => a - b);
      end = ends[maxRanges - 1]!;
      resent = resent.filter((r) => r[1] <= end);
      pending = pending.filter((r) => r[1] <= end);
      missing = missing.filter((m) => m.to <= end);
    }
    let moved = 0;
    for (const [a, b] of resent) moved += stream.kept!.requeue(a, b);
    return { answer: { stream: name, from, to: end, resent, pending, missing }, moved };
  }

  /** Why each number of `rest` (sorted ranges no table holds) is missing: the ledger's reason, or `unknown`. */
  private explain(name: StreamName, rest: readonly SeqRange[]): DroppedRange[] {
    if (rest.length === 0) return [];
    const known = this.ledger?.lookup(name, rest[0]![0], rest[rest.length - 1]![1]) ?? [];
    const out: DroppedRange[] = [];
    const add = (from: number, to: number, reason: DroppedRange["reason"]) => {
      const last = out[out.length - 1];
      if (last && last.reason === reason && last.to + 1 === from) last.to = to;
      else out.push({ from, to, reason });
    };
    let k = 0;
    for (const [a, b] of rest) {
      let lo = a;
      while (k < known.length && known[k]!.to < lo) k++;
      for (let j = k; lo <= b; j++) {
        const d = known[j];
        if (!d || d.from > b) {
          add(lo, b, "unknown");
          break;
        }
        if (d.from > lo) add(lo, d.from - 1, "unknown");
        const hi = Math.min(b, d.to);
        add(Math.max(lo, d.from), hi, d.reason);
        lo = hi + 1;
      }
    }
    return out;
  }

  // --- sequence numbers under sync: normal -----------------------------------------------------

  /**
   * At open: after an unclean stop with reservations, every stream resumes above its reserved
   * block (the numbers in between may have been used by commits a power cut took back). Then the
   * file is marked unclean until close, and in `full` mode removed (commits are durable there).
   */
  private resumeSequences(): void {
    const r = this.reservations!;
    const state = r.read();
    if (state && !state.clean) {
      for (const name of STREAMS) {
        const stream = this.streams[name];
        const reserved = state.reserved[name] ?? 0;
        if (reserved > stream.seq) {
          this.skipped.push({ stream: name, from: stream.seq + 1, to: reserved });
          this.ledger?.record(name, [[stream.seq + 1, reserved]], "skipped", this.now());
          stream.seq = reserved;
          this.stmt.setMeta.run(`${stream.metaPrefix}last_seq`, reserved);
        }
      }
    }
    if (this.opts.sync === "full") {
      // A full commit is durable: the reservation above (if any) is now in the file, and the
      // meta write is committed with FULL before the sidecar goes.
      r.remove();
      return;
    }
    for (const name of STREAMS) {
      const s = this.streams[name];
      s.reserved = s.seq;
    }
    r.write({ clean: false, reserved: this.reservedMap() });
  }

  private reserve(stream: Stream, upTo: number): void {
    const t = this.now();
    stream.block = nextBlock(stream.block, t - stream.reservedAt);
    stream.reservedAt = t;
    const previous = stream.reserved;
    stream.reserved = upTo + stream.block;
    try {
      this.reservations!.write({ clean: false, reserved: this.reservedMap() });
    } catch (err) {
      stream.reserved = previous;
      throw err;
    }
  }

  private reservedMap(): Record<string, number> {
    const out: Record<string, number> = Object.create(null) as Record<string, number>;
    for (const name of STREAMS) out[name] = Number.isFinite(this.streams[name].reserved) ? this.streams[name].reserved : this.streams[name].seq;
    return out;
  }

  stats(): OutboxStats {
    const first = this.telemetry.oldest();
    const perStreamDead = this.dl?.countByStream() ?? new Map<string, number>();
    const streams = {} as Record<StreamName, StreamStats>;
    for (const name of STREAMS) {
      const s = this.streams[name];
      streams[name] = { depth: s.rows, lastSeq: s.seq, dropped: { ...s.dropped }, deadLetters: perStreamDead.get(name) ?? 0, kept: s.kept?.count ?? 0 };
    }
    return {
      depth: this.telemetry.rows,
      firstSeq: first ? first[0] : null,
      lastSeq: this.telemetry.seq,
      oldestTs: first ? first[1] : null,
      oldestAgeMs: first ? Math.max(0, this.now() - first[1]) : null,
      usedBytes: this.usedBytes(),
      fileBytes: this.fileBytes(),
      quota: this.opts.quota,
      dropped: sumDrops(STREAMS.map((n) => this.streams[n].dropped)),
      streams,
      deadLetters: { count: this.dl?.count() ?? 0, reasons: this.dl?.reasons() ?? [] },
      kept: STREAMS.reduce((n, name) => n + streams[name].kept, 0),
      replayWindowMs: this.replayWindow,
      droppedRanges: this.ledger?.count() ?? 0,
      format: this.readOnly ? this.openedFormat : FORMAT,
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

  /** Runs a WAL checkpoint (and truncates the WAL) so the files stay small; true when complete. */
  checkpoint(): boolean {
    if (this.readOnly) return false;
    const [row] = this.db.pragma("wal_checkpoint(TRUNCATE)") as Array<{ busy: number }>;
    return row?.busy === 0;
  }

  close(): void {
    if (!this.db.open) return;
    try {
      if (!this.readOnly) {
        const complete = this.checkpoint();
        // Everything is in the database file now: the next open needs no reservation to trust it.
        if (complete && this.reservations && this.opts.sync === "normal") this.reservations.write({ clean: true, reserved: this.reservedMap() });
      }
    } finally {
      this.db.close();
      this.lock?.release();
    }
  }
}

/** Creates the tables of a new file, or migrates an older one; returns the format it had. */
function prepareFile(db: Database): number {
  const fresh = (db.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table'").pluck().get() as number) === 0;
  db.exec(`
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS points (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    -- Results of recent commands by id: a repeated id is answered again, never executed twice.
    CREATE TABLE IF NOT EXISTS commands (id TEXT PRIMARY KEY, ts INTEGER NOT NULL, result TEXT NOT NULL) WITHOUT ROWID;
  `);
  // seq is the rowid; q = quality code | 4 when v holds a boolean.
  for (const t of Object.values(STREAM_TABLE)) {
    db.exec(`CREATE TABLE IF NOT EXISTS ${t} (seq INTEGER PRIMARY KEY, p INTEGER NOT NULL, ts INTEGER NOT NULL, v ANY, q INTEGER NOT NULL)`);
  }
  const had = fresh ? FORMAT : formatOf(db);
  if (had > FORMAT) {
    throw new UserError(`store.path: this outbox was written by a newer edge-agent (format ${had}; this one reads up to ${FORMAT}); its readings are kept — run the newer version, or move the file aside`);
  }
  const setFormat = db.prepare("INSERT INTO meta (key, value) VALUES ('format', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  db.transaction(() => {
    for (const step of MIGRATIONS) if (fresh || step.to > had) db.exec(step.sql);
    setFormat.run(FORMAT);
  })();
  return had;
}

function formatOf(db: Database): number {
  if (!hasTable(db, "meta")) throw Object.assign(new Error("not an outbox database"), { code: "SQLITE_NOTADB" });
  return (db.prepare("SELECT value FROM meta WHERE key = 'format'").pluck().get() as number | undefined) ?? 1;
}

function hasTable(db: Database, name: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").pluck().get(name) !== undefined;
}

interface DeadRow {
  stream: string;
  seq: number;
  p: number;
  ts: number;
  v: number | string | null;
  q: number;
  reason: string;
  at: number;
}

/** The dead-letter table: rows moved out of their stream, and back. */
class DeadLetterTable {
  private readonly s: {
    count: Statement;
    byStream: Statement;
    reasons: Statement;
    maxSeq: Statement;
    list: Statement;
    oldest: Statement;
    deleteUpTo: Statement;
    expired: Statement;
    deleteExpired: Statement;
    inRange: Statement;
    purge: Statement;
    select: Statement;
  };
  /** Per stream, built once: move rows out of its table, and back in. */
  private readonly take_ = new Map<StreamName, (first: number, last: number, reason: string, at: number) => number>();
  private readonly giveBack_ = new Map<StreamName, (lo: number, hi: number) => number[]>();

  constructor(db: Database, readonly: boolean) {
    this.s = {
      count: db.prepare("SELECT count(*) FROM dead_letters").pluck(),
      byStream: db.prepare("SELECT stream, count(*) AS n FROM dead_letters GROUP BY stream").raw(),
      reasons: db.prepare("SELECT reason, count(*) AS n FROM dead_letters GROUP BY reason ORDER BY n DESC, reason").raw(),
      maxSeq: db.prepare("SELECT max(seq) FROM dead_letters WHERE stream = ?").pluck(),
      list: db.prepare("SELECT stream, seq, p, ts, v, q, reason, at FROM dead_letters WHERE (@stream IS NULL OR stream = @stream) AND seq >= @lo AND seq <= @hi ORDER BY id LIMIT @limit"),
      oldest: db.prepare("SELECT id, stream, seq FROM dead_letters ORDER BY id LIMIT ?").raw(),
      deleteUpTo: db.prepare("DELETE FROM dead_letters WHERE id <= ?"),
      expired: db.prepare("SELECT seq FROM dead_letters WHERE stream = ? AND ts < ?").pluck(),
      deleteExpired: db.prepare("DELETE FROM dead_letters WHERE stream = ? AND ts < ?"),
      inRange: db.prepare(rangesSql("dead_letters", "stream = ? AND seq >= ? AND seq <= ?")).raw(),
      purge: db.prepare("DELETE FROM dead_letters WHERE stream = ? AND seq >= ? AND seq <= ?"),
      select: db.prepare("SELECT seq FROM dead_letters WHERE stream = ? AND seq >= ? AND seq <= ? ORDER BY seq").pluck(),
    };
    if (readonly) return;
    const select = this.s.select;
    for (const stream of STREAMS) {
      const t = STREAM_TABLE[stream];
      const moveOut = db.prepare(`INSERT OR REPLACE INTO dead_letters (stream, seq, p, ts, v, q, reason, at) SELECT ?, seq, p, ts, v, q, ?, ? FROM ${t} WHERE seq >= ? AND seq <= ?`);
      const deleteOut = db.prepare(`DELETE FROM ${t} WHERE seq >= ? AND seq <= ?`);
      const moveIn = db.prepare(`INSERT OR REPLACE INTO ${t} (seq, p, ts, v, q) SELECT seq, p, ts, v, q FROM dead_letters WHERE stream = ? AND seq >= ? AND seq <= ?`);
      this.take_.set(
        stream,
        db.transaction((first: number, last: number, reason: string, at: number) => {
          const moved = moveOut.run(stream, reason, at, first, last).changes;
          deleteOut.run(first, last);
          return moved;
        }),
      );
      this.giveBack_.set(
        stream,
        db.transaction((lo: number, hi: number) => {
          const seqs = select.all(stream, lo, hi) as number[];
          moveIn.run(stream, lo, hi);
          this.s.purge.run(stream, lo, hi);
          return seqs;
        }),
      );
    }
  }

  count(): number {
    return this.s.count.get() as number;
  }

  countByStream(): Map<string, number> {
    return new Map(this.s.byStream.all() as Array<[string, number]>);
  }

  reasons(): Array<{ reason: string; count: number }> {
    return (this.s.reasons.all() as Array<[string, number]>).map(([reason, count]) => ({ reason, count }));
  }

  maxSeq(stream: StreamName): number {
    return (this.s.maxSeq.get(stream) as number | null) ?? 0;
  }

  list(filter: DeadLetterFilter, limit: number): DeadRow[] {
    const [lo, hi] = filter.seq ?? ALL_SEQS;
    return this.s.list.all({ stream: filter.stream ?? null, lo, hi, limit }) as DeadRow[];
  }

  take(stream: StreamName, first: number, last: number, reason: string, at: number): number {
    return this.take_.get(stream)!(first, last, reason, at);
  }

  giveBack(stream: StreamName, range: readonly [number, number] = ALL_SEQS): number[] {
    return this.giveBack_.get(stream)!(range[0], range[1]);
  }

  /** Deletes the stream's dead letters in the range; returns their numbers. */
  purge(stream: StreamName, range: readonly [number, number] = ALL_SEQS): number[] {
    const seqs = this.s.select.all(stream, range[0], range[1]) as number[];
    this.s.purge.run(stream, range[0], range[1]);
    return seqs;
  }

  /** The stream's dead-letter numbers within lo..hi. */
  ranges(stream: StreamName, lo: number, hi: number): SeqRange[] {
    return this.s.inRange.all(stream, lo, hi) as SeqRange[];
  }

  /** Deletes up to `n` of the oldest; returns their numbers per stream. */
  dropOldest(n: number): Array<{ stream: StreamName; seqs: number[] }> {
    const rows = this.s.oldest.all(n) as Array<[number, string, number]>;
    if (rows.length === 0) return [];
    const per = new Map<StreamName, number[]>();
    for (const [, stream, seq] of rows) {
      if (!isStreamName(stream)) continue;
      const seqs = per.get(stream) ?? [];
      seqs.push(seq);
      per.set(stream, seqs);
    }
    this.s.deleteUpTo.run(rows[rows.length - 1]![0]);
    return [...per].map(([stream, seqs]) => ({ stream, seqs: seqs.sort((a, b) => a - b) }));
  }

  /** Deletes the stream's dead letters read before `cutoff`; returns their numbers. */
  expire(stream: StreamName, cutoff: number): number[] {
    const seqs = this.s.expired.all(stream, cutoff) as number[];
    if (seqs.length > 0) this.s.deleteExpired.run(stream, cutoff);
    return seqs;
  }
}

const ALL_SEQS: readonly [number, number] = [0, Number.MAX_SAFE_INTEGER];

function decodeRow(seq: number, point: string, ts: number, v: number | string | null, q: number): StoredReading {
  return { seq, point, ts, value: q & BOOL_FLAG ? v === 1 : v, quality: CODE_QUALITY[q & 3] ?? "bad" };
}

/**
 * A row's v and q columns, as two functions rather than one returning an object: without the
 * optimising compiler (the unit's --no-opt) that object would be garbage for every reading.
 */
function storedValue(value: Value): number | string | null {
  return typeof value === "boolean" ? (value ? 1 : 0) : value;
}

function qualityCode(value: Value, quality: Quality): number {
  return typeof value === "boolean" ? QUALITY_CODE[quality] | BOOL_FLAG : QUALITY_CODE[quality];
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
