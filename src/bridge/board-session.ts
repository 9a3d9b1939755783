/**
 * The gateway's side of one board (docs/firmware-bridge.md, sections 5 to 8), over the reliable
 * link: asks for and checks the hello, keeps the heartbeat and the clock mapping, turns the
 * board's readings into the agent's (named, in UTC, duplicates recognised by board id, boot id
 * and board sequence), acknowledges them to the board only once the outbox committed them,
 * writes points (bounded, read back), and keeps the board's log lines. No I/O of its own: bytes
 * in through receive(), out through the `write` callback, time from an injected clock.
 *
 * Everything a board sends is hostile: a handler never throws past receive(); what is wrong is
 * counted, logged once per kind, and the link goes on.
 */
import type { Cursor, PollCommit } from "../model/cursor.js";
import type { Logger } from "../model/logger.js";
import type { Quality, Reading, Value } from "../model/reading.js";
import type { BoardStatus } from "../model/status.js";
import { BoardClock } from "./clock.js";
import { CHANNEL, GATEWAY_MAX_FRAME, PROTOCOL_VERSION } from "./frame.js";
import { Link, type LinkClock, systemClock } from "./link.js";
import {
  Capability,
  type CommandResult as BoardCommandResult,
  CommandStatus,
  decodeCommands,
  decodeLink,
  decodeLog,
  decodeTelemetry,
  encodeCommands,
  encodeLink,
  encodeTelemetry,
  type Hello,
  LogLevel,
  PointType,
  Quality as BoardQuality,
  type Reading as BoardReading,
  ResetReason,
} from "./messages.js";
import { SmpClient } from "./management.js";
import { formatSchemaHash, SCHEMA_HASH } from "./schema.js";

export interface BoardSessionOptions {
  /** The board's name in the config: its points are `<name>/<point>`. */
  name: string;
  /** Only a board with this unique id (hex, lower case) is accepted; null: any. */
  expectId: string | null;
  heartbeatMs: number;
  offlineAfterMs: number;
  timeSyncMs: number;
  commandTimeoutMs: number;
  maxFrame?: number;
  window?: number;
  /** Readings received and not yet committed, at most; beyond, the board is told we are busy. */
  maxPending: number;
  /** Points commands may write (names relative to the board). */
  writable: readonly string[];
  /** Tighter write bounds than the board's, per point. */
  limits: ReadonlyMap<string, { min?: number; max?: number }>;
  log: Logger;
  /** The outbox's committed cursor for a key (what this board stored of a boot). */
  cursor(key: string): number | undefined;
  /** A reason to refuse a board id (another source has it), or null. */
  idTaken?(id: string): string | null;
  /** A board with another id answered (probing by id): the owner closes the port and looks on. */
  otherBoard?(id: string): void;
  /** The board's points changed (described, or a child came or went). */
  changed?(): void;
  /** Every hello, before any check; returning false ends it there, unanswered (`bridge probe`). */
  heard?(hello: HelloInfo): boolean;
  clock?: LinkClock;
  utcMs?: () => number;
}

/** A point as the board described it. */
export interface BoardPoint {
  id: number;
  /** Relative to the board: `temperature`, `sensor-a/battery`. */
  name: string;
  unit: string;
  type: "number" | "bool" | "text" | "action";
  writable: boolean;
  min: number | null;
  max: number | null;
  child: string | null;
}

/** What a hello says, as a technician reads it. */
export interface HelloInfo {
  id: string;
  hardware: string;
  firmware: string;
  bootId: string;
  resetReason: string;
  protocol: number;
  schemaHash: string;
  /** Built from the same bridge.proto as this gateway. */
  schemaOk: boolean;
  /** SHA-256 of the running image (hex), "" if the board does not say. */
  imageHash: string;
  /** The board answers SMP on the management channel (firmware updates; CAP_MANAGEMENT). */
  management: boolean;
}

/** What the firmware update's health gate watches (src/update/). */
export type BoardEvent =
  | { kind: "online"; hello: HelloInfo }
  | { kind: "heartbeat" }
  | { kind: "readings"; count: number }
  | { kind: "offline"; reason: string };

export interface BoardLogLine {
  ts: number;
  level: "debug" | "info" | "warn" | "error";
  text: string;
}

const NAME = /^[a-z0-9][a-z0-9_.-]{0,31}$/;
const TEXT_MAX = 256;
const LOG_KEEP = 200;
const LOG_PER_SECOND = 50;
const HELLO_EVERY_MS = 1000;
const HELLO_AFTER_REFUSAL_MS = 60_000;
const TICK_MS = 100;
/** Boots whose clock mapping is kept (readings of an earlier boot resent after a reset). */
const BOOTS_KEPT = 4;

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

function helloInfo(h: Hello): HelloInfo {
  return {
    id: hex(h.boardId),
    hardware: h.hardware.slice(0, 64),
    firmware: h.firmware.slice(0, 64),
    bootId: hex32(h.bootId),
    resetReason: RESET_NAMES[h.resetReason] ?? `code ${h.resetReason}`,
    protocol: h.protocol,
    schemaHash: formatSchemaHash(h.schemaHash),
    schemaOk: h.schemaHash === SCHEMA_HASH,
    imageHash: h.imageHash.length === 32 ? hex(h.imageHash) : "",
    management: (h.capabilities & Capability.CAP_MANAGEMENT) !== 0,
  };
}
const hex32 = (n: number): string => (n >>> 0).toString(16).padStart(8, "0");

const RESET_NAMES: Record<number, string> = {
  [ResetReason.RESET_UNKNOWN]: "unknown",
  [ResetReason.RESET_POWER_ON]: "power-on",
  [ResetReason.RESET_PIN]: "reset pin",
  [ResetReason.RESET_SOFTWARE]: "software",
  [ResetReason.RESET_WATCHDOG]: "watchdog",
  [ResetReason.RESET_BROWNOUT]: "brownout",
  [ResetReason.RESET_CRASH]: "crash",
  [ResetReason.RESET_UPDATE]: "update",
};

interface Pending {
  resolve(readBack: Value): void;
  reject(err: Error): void;
  timer: unknown;
  point: BoardPoint;
  value: number | boolean | string;
}

/** What one take() handed to the store, to acknowledge or give back once it is settled. */
interface InFlight {
  readings: Reading[];
  acks: Map<string, { boot: number; upto: number }>;
}

export class BoardSession {
  private readonly o: BoardSessionOptions;
  private readonly link: Link;
  private readonly clock: LinkClock;
  private readonly utcMs: () => number;
  private state_: BoardStatus["state"] = "connecting";
  private refusedReason: string | null = null;
  private hello: Hello | null = null;
  private lastHeard = 0;
  private framesSeen = 0;
  private problemsSeen = 0;
  private nextHelloRequest = 0;
  private nextHeartbeat = 0;
  private nextTimeSync = 0;
  private timeRequestOut = false;
  private timer: unknown;
  private stopped = true;
  private sessions = 0;
  /** Board clocks by boot id: the current one and a few before. */
  private readonly clocks = new Map<number, { clock: BoardClock; coarseOffsetUs: number | null }>();
  private readonly points = new Map<number, BoardPoint>();
  /** Describe messages of one child ("" = the board) until their `complete`. */
  private readonly describing = new Map<string, BoardPoint[]>();
  private readonly children = new Set<string>();
  /** Received, not yet handed to the store; with the cursor each key reaches. */
  private pending: Reading[] = [];
  private readonly pendingAcks = new Map<string, { boot: number; upto: number }>();
  /** Highest board sequence received per key (pending, in flight, or committed). */
  private readonly received = new Map<string, number>();
  private inFlight: InFlight | null = null;
  private readonly commands = new Map<number, Pending>();
  private nextCommandId = 1;
  private readonly logLines: BoardLogLine[] = [];
  private logWindowStart = 0;
  private logsInWindow = 0;
  private logsSuppressed = 0;
  private readonly warned = new Set<string>();
  /** The last reading of each point (relative name), for `bridge read`. */
  private readonly latest = new Map<string, { ts: number; value: Value; quality: Quality }>();
  private readonly counts = { duplicates: 0, unknownPoints: 0, badMessages: 0, readings: 0 };
  private ringUsed: number | null = null;
  private ringDropped: number | null = null;
  private lastOkTs: number | null = null;
  private lastError: string | null = null;
  private readonly observers = new Set<(ev: BoardEvent) => void>();
  /** The board's SMP server on the management channel (firmware updates). */
  readonly smp: SmpClient;

  constructor(
    options: BoardSessionOptions,
    private readonly write: (bytes: Uint8Array) => void,
  ) {
    this.o = options;
    this.clock = options.clock ?? systemClock;
    this.utcMs = options.utcMs ?? Date.now;
    this.link = new Link(
      {
        write: (bytes) => this.write(bytes),
        deliver: (chan, payload) => this.deliver(chan, payload),
        sessionLost: (reason) => this.lose(`link lost: ${reason}`),
        garbage: (text) => this.warnOnce("garbage", `${this.o.name}: bytes between frames (not a frame): ${JSON.stringify(text)}`),
        error: (err) => this.warnOnce("callback", `${this.o.name}: ${(err as Error).message}`),
      },
      { role: "gateway", maxFrame: options.maxFrame ?? GATEWAY_MAX_FRAME, window: options.window ?? 8, clock: this.clock },
    );
    const sent = new Set(["sent", "queued"]);
    this.smp = new SmpClient({ send: (p) => this.online && sent.has(this.link.send(CHANNEL.MANAGEMENT, p, { reliable: true })) }, 5000, this.clock);
  }

  /** Watches the board's sessions, heartbeats and readings; returns the function that stops watching. */
  observe(listener: (ev: BoardEvent) => void): () => void {
    this.observers.add(listener);
    return () => this.observers.delete(listener);
  }

  /** The accepted hello of the current (or last) session, as a technician reads it. */
  helloInfo(): HelloInfo | null {
    return this.hello ? helloInfo(this.hello) : null;
  }

  /** The largest management (SMP) packet one frame carries in this session. */
  get maxManagementPacket(): number {
    return this.link.maxPayload;
  }

  private emit(ev: BoardEvent): void {
    for (const l of this.observers) {
      try {
        l(ev);
      } catch (err) {
        this.warnOnce("observer", `${this.o.name}: ${(err as Error).message}`);
      }
    }
  }

  /** The board's name in the config. */
  get name(): string {
    return this.o.name;
  }

  get state(): BoardStatus["state"] {
    return this.state_;
  }

  get online(): boolean {
    return this.state_ === "online";
  }

  /** The board's id as its hello said (hex), once one was accepted or seen. */
  get boardId(): string | null {
    return this.hello ? hex(this.hello.boardId) : null;
  }

  /** Starts asking for a hello (the port is open and the board had its boot delay). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    const now = this.clock.now();
    this.lastHeard = now;
    // A hello may have come in between the port opening and now: that session stands.
    if (this.state_ !== "online") this.state_ = "connecting";
    // A board announces itself at boot; ask only if it has not within half a second (asking at
    // once would cross a booting board's hello and start its session twice).
    this.nextHelloRequest = now + 500;
    this.tick();
  }

  /** Stops the timers; pending commands fail. What was received and not committed stays for take(). */
  stop(reason = "stopped"): void {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.link.endSession();
    this.failCommands(`board ${this.o.name} ${reason}`);
    this.smp.fail(`board ${this.o.name} ${reason}`);
    if (this.state_ === "online") this.emit({ kind: "offline", reason });
    if (this.state_ === "online") {
      this.markOffline();
      this.o.log.warn({ board: this.o.name }, `board offline: ${reason}`);
    }
    this.state_ = "offline";
  }

  /** Bytes from the port. Never throws. */
  receive(bytes: Uint8Array): void {
    try {
      this.link.receive(bytes);
      const framesIn = this.link.framesIn;
      if (framesIn !== this.framesSeen) {
        this.framesSeen = framesIn;
        this.lastHeard = this.clock.now();
      }
      // The full snapshot only when something went wrong (not per chunk on a busy link).
      const problems = this.link.problems;
      if (problems === this.problemsSeen) return;
      this.problemsSeen = problems;
      const l = this.link.stats();
      // Once per kind in the log (the counts are in the status and the metrics).
      if (l.unknownChannel > 0) this.warnOnce("unknown-channel", `${this.o.name}: frames on a channel this gateway does not know (counted as unknown channel)`);
      if (l.oversized > 0) this.warnOnce("oversized", `${this.o.name}: a chunk longer than the largest frame (${this.o.maxFrame ?? GATEWAY_MAX_FRAME} bytes) was dropped (counted as oversized)`);
      if (l.crcErrors > 0) this.warnOnce("crc", `${this.o.name}: a frame with a bad CRC (noise, or bytes written into a frame); the link asks for it again`);
      if (l.badVersion > 0) this.warnOnce("version", `${this.o.name}: a frame of another protocol version was dropped`);
    } catch (err) {
      this.warnOnce("receive", `${this.o.name}: ${(err as Error).message}`);
    }
  }

  /**
   * The readings received since the last take, for the store, with the cursors to commit in the
   * same transaction; settled() then acknowledges them to the board, or gives them back.
   */
  take(): { readings: Reading[]; commit: PollCommit | null } {
    if (this.inFlight) return { readings: [], commit: null }; // the previous tick's are not settled yet
    if (this.pending.length === 0 && this.pendingAcks.size === 0) return { readings: [], commit: null };
    const flight: InFlight = { readings: this.pending, acks: new Map(this.pendingAcks) };
    this.pending = [];
    this.pendingAcks.clear();
    this.inFlight = flight;
    const cursors: Cursor[] = [...flight.acks].map(([key, a]) => [key, a.upto] as const);
    return {
      readings: flight.readings,
      commit: { cursors, settled: (stored) => this.settled(flight, stored) },
    };
  }

  private settled(flight: InFlight, stored: boolean): void {
    if (this.inFlight === flight) this.inFlight = null;
    if (!stored) {
      // Not committed: they go again with the next tick (the board still has them too).
      this.pending = [...flight.readings, ...this.pending];
      for (const [key, a] of flight.acks) {
        const later = this.pendingAcks.get(key);
        if (!later || later.upto < a.upto) this.pendingAcks.set(key, a);
      }
      this.updateBusy();
      return;
    }
    this.lastOkTs = this.utcMs();
    for (const a of flight.acks.values()) this.sendAck(a.boot, a.upto);
    this.updateBusy();
  }

  /** The board's points now (writable ones included), for status and `bridge read`. */
  describedPoints(): BoardPoint[] {
    return [...this.points.values()];
  }

  /** The board's last log lines, oldest first. */
  logs(): BoardLogLine[] {
    return [...this.logLines];
  }

  /**
   * Writes a point (relative name) and resolves with the value read back after it. Refused with
   * a reason when the point is unknown, not writable (by the board or the config), or the value
   * is out of the bounds (board's ∩ config's); fails on the board's refusal, a timeout, a lost
   * session, or a read-back that differs.
   */
  async writePoint(point: string, value: number | boolean | string): Promise<{ readBack: Value }> {
    const p = this.checkWrite(point, value);
    if (!this.online) throw new Error(`board ${this.o.name} is ${this.state_}`);
    const id = this.nextCommandId;
    this.nextCommandId = (this.nextCommandId % 0xffff_fffe) + 1;
    const init = {
      id,
      point: p.id,
      value:
        typeof value === "number"
          ? { case: "number" as const, value }
          : typeof value === "boolean"
            ? { case: "flag" as const, value }
            : { case: "text" as const, value },
    };
    const sent = this.link.send(CHANNEL.COMMANDS, encodeCommands({ body: { case: "command", value: init } }), { reliable: true });
    if (sent !== "sent" && sent !== "queued") throw new Error(`board ${this.o.name}: command not sent (${sent})`);
    const readBack = await new Promise<Value>((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.commands.delete(id);
        reject(new Error(`board ${this.o.name} did not answer within ${this.o.commandTimeoutMs} ms`));
      }, this.o.commandTimeoutMs);
      this.commands.set(id, { resolve, reject, timer, point: p, value });
    });
    return { readBack };
  }

  /** The checks of a write, without sending: the point, who allows it, the bounds. Throws with the reason. */
  checkWrite(point: string, value: unknown): BoardPoint {
    const p = [...this.points.values()].find((x) => x.name === point);
    if (!p) throw new Error(`board ${this.o.name} has no point '${point}'${this.points.size === 0 ? " (not described yet)" : ""}`);
    if (!p.writable) throw new Error(`${this.o.name}/${point} is not writable (the board says so)`);
    if (!this.o.writable.includes(point)) throw new Error(`${this.o.name}/${point} is not in this board's writable list in the config`);
    const want = p.type === "bool" ? "boolean" : p.type === "text" ? "string" : p.type === "number" ? "number" : null;
    if (want && typeof value !== want) throw new Error(`${this.o.name}/${point} takes a ${want}, not ${JSON.stringify(value)}`);
    if (typeof value === "number") {
      if (!Number.isFinite(value)) throw new Error(`${this.o.name}/${point}: ${value} is not a finite number`);
      const { min, max } = this.bounds(p);
      if (min !== null && value < min) throw new Error(`${this.o.name}/${point}: ${value} is below ${min}`);
      if (max !== null && value > max) throw new Error(`${this.o.name}/${point}: ${value} is above ${max}`);
    }
    if (typeof value === "string" && value.length > 32) throw new Error(`${this.o.name}/${point}: text longer than 32 characters`);
    return p;
  }

  /** A point's write bounds: the board's intersected with the config's. */
  bounds(p: BoardPoint): { min: number | null; max: number | null } {
    const cfg = this.o.limits.get(p.name);
    const lo = [p.min, cfg?.min ?? null].filter((x): x is number => x !== null);
    const hi = [p.max, cfg?.max ?? null].filter((x): x is number => x !== null);
    return { min: lo.length ? Math.max(...lo) : null, max: hi.length ? Math.min(...hi) : null };
  }

  status(port: string | null): BoardStatus {
    const l = this.link.stats();
    const h = this.hello;
    const current = h ? this.clocks.get(h.bootId) : undefined;
    const est = current?.clock.estimate();
    return {
      port,
      state: this.state_,
      refusedReason: this.refusedReason,
      id: h ? hex(h.boardId) : null,
      hardware: h?.hardware ?? null,
      firmware: h?.firmware ?? null,
      bootId: h ? hex32(h.bootId) : null,
      resetReason: h ? (RESET_NAMES[h.resetReason] ?? `code ${h.resetReason}`) : null,
      sessions: this.sessions,
      framesIn: l.framesIn,
      framesOut: l.framesOut,
      retransmits: l.retransmits,
      crcErrors: l.crcErrors,
      garbage: l.garbage,
      oversized: l.oversized,
      unknownChannel: l.unknownChannel,
      naksSent: l.naksSent,
      naksReceived: l.naksReceived,
      duplicates: this.counts.duplicates,
      rttMs: l.srttMs === undefined ? null : Math.round(l.srttMs * 10) / 10,
      clockOffsetMs: est ? Math.round(est.offsetUs / 100) / 10 : null,
      clockDriftPpm: est ? Math.round(est.driftPpm * 10) / 10 : null,
      clockErrorMs: est ? Math.round(est.minDelayUs / 200) / 10 : null,
      bootedAt: est ? Math.round((current!.clock.toUtc(0) ?? 0) / 1000) : null,
      boardBuffered: this.ringUsed,
      boardDropped: this.ringDropped,
      children: [...this.children].sort(),
    };
  }

  /** Figures beyond the typed status (for --json): link internals, counts. */
  details(): Record<string, unknown> {
    return { link: this.link.stats(), ...this.counts, logsSuppressed: this.logsSuppressed, lastError: this.lastError, lastOkTs: this.lastOkTs };
  }

  get error(): string | null {
    return this.state_ === "refused" ? this.refusedReason : this.lastError;
  }

  get lastOk(): number | null {
    return this.lastOkTs;
  }

  // ---- inside ---------------------------------------------------------------------------------

  private tick(): void {
    if (this.stopped) return;
    try {
      this.onTick(this.clock.now());
    } catch (err) {
      this.warnOnce("tick", `${this.o.name}: ${(err as Error).message}`);
    }
    this.timer = this.clock.setTimeout(() => this.tick(), TICK_MS);
  }

  private onTick(now: number): void {
    if (this.state_ !== "online") {
      if (now >= this.nextHelloRequest) {
        this.nextHelloRequest = now + (this.state_ === "refused" ? HELLO_AFTER_REFUSAL_MS : HELLO_EVERY_MS);
        this.link.send(CHANNEL.LINK, encodeLink({ body: { case: "helloRequest", value: { protocol: PROTOCOL_VERSION } } }), { reliable: false });
      }
      return;
    }
    if (now - this.lastHeard > this.o.offlineAfterMs) {
      this.lose(`silent for ${Math.round((now - this.lastHeard) / 100) / 10} s`);
      return;
    }
    if (now >= this.nextHeartbeat) {
      this.nextHeartbeat = now + this.o.heartbeatMs;
      this.link.send(CHANNEL.LINK, encodeLink({ body: { case: "heartbeat", value: { uptimeUs: BigInt(this.utcMs()) * 1000n } } }), { reliable: false });
    }
    if (now >= this.nextTimeSync) {
      this.nextTimeSync = now + (this.timeRequestOut ? 5000 : this.o.timeSyncMs);
      this.timeRequestOut = true;
      this.link.send(CHANNEL.LINK, encodeLink({ body: { case: "timeRequest", value: { t1Us: BigInt(this.utcMs()) * 1000n } } }), { reliable: false });
    }
  }

  private deliver(chan: number, payload: Uint8Array): void {
    switch (chan) {
      case CHANNEL.LINK:
        return this.onLink(payload);
      case CHANNEL.TELEMETRY:
        return this.onTelemetry(payload);
      case CHANNEL.COMMANDS:
        return this.onCommands(payload);
      case CHANNEL.LOG:
        return this.onLog(payload);
      case CHANNEL.MANAGEMENT:
        if (this.online) this.smp.receive(payload);
        return;
      default:
        this.warnOnce(`chan-${chan}`, `${this.o.name}: frames on channel ${chan} ignored (not used by this gateway)`);
    }
  }

  private bad(what: string, error: string): void {
    this.counts.badMessages++;
    this.lastError = `${what}: ${error}`;
    this.warnOnce(`bad-${what}`, `${this.o.name}: ${what}: ${error}`);
  }

  private onLink(payload: Uint8Array): void {
    const r = decodeLink(payload);
    if (!r.ok) return this.bad("link message", r.error);
    const body = r.message.body;
    switch (body.case) {
      case "hello":
        return this.onHello(body.value);
      case "heartbeat":
        if (this.online) {
          this.ringUsed = body.value.ringUsed;
          this.ringDropped = body.value.ringDropped;
          this.emit({ kind: "heartbeat" });
        }
        return;
      case "timeReply": {
        if (!this.hello) return;
        this.timeRequestOut = false;
        this.nextTimeSync = this.clock.now() + this.o.timeSyncMs;
        const t = body.value;
        const added = this.clockOf(this.hello.bootId).clock.add({ t1: Number(t.t1Us), t2: Number(t.t2Us), t3: Number(t.t3Us), t4: this.utcMs() * 1000 });
        if ("error" in added) this.bad("time reply", added.error);
        return;
      }
      default:
        return; // hello requests, replies and time requests are ours to send
    }
  }

  private onHello(h: Hello): void {
    const id = hex(h.boardId);
    if (this.o.heard) {
      if (!this.o.heard(helloInfo(h))) {
        this.link.endSession();
        return;
      }
    }
    const refuse = (reason: string) => {
      this.link.send(CHANNEL.LINK, encodeLink({ body: { case: "helloReply", value: { accepted: false, reason, utcUs: BigInt(this.utcMs()) * 1000n } } }), { reliable: true });
      this.link.endSession();
      if (this.state_ === "online") this.markOffline();
      this.failCommands(`board ${this.o.name} refused`);
      this.state_ = "refused";
      this.nextHelloRequest = this.clock.now() + HELLO_AFTER_REFUSAL_MS;
      if (this.refusedReason !== reason) this.o.log.warn({ board: this.o.name, id }, `board refused: ${reason}`);
      this.refusedReason = reason;
    };
    if (h.protocol !== PROTOCOL_VERSION) return refuse(`protocol ${h.protocol} is not spoken here (this gateway speaks ${PROTOCOL_VERSION})`);
    if (h.schemaHash !== SCHEMA_HASH) return refuse(`schema ${formatSchemaHash(h.schemaHash)} differs from the gateway's ${formatSchemaHash(SCHEMA_HASH)} (the board was built from another bridge.proto)`);
    if (h.boardId.length < 4 || h.boardId.length > 16) return refuse(`board id of ${h.boardId.length} bytes (4 to 16 expected)`);
    if (this.o.expectId !== null && id !== this.o.expectId) {
      // Not ours (probing by id, or the wrong board on a fixed port): say nothing to it.
      this.link.endSession();
      this.o.otherBoard?.(id);
      if (this.state_ !== "refused" || this.refusedReason !== `board ${id} is not ${this.o.expectId}`) {
        this.o.log.warn({ board: this.o.name }, `a board with id ${id} answered, not ${this.o.expectId}`);
      }
      this.state_ = "refused";
      this.refusedReason = `board ${id} is not ${this.o.expectId}`;
      this.nextHelloRequest = this.clock.now() + HELLO_EVERY_MS;
      return;
    }
    if (h.bootId === 0) return refuse("boot id 0 (a board picks a random non-zero one at each reset)");
    const taken = this.o.idTaken?.(id) ?? null;
    if (taken) return refuse(taken);
    if (h.maxFrame < 256) return refuse(`max_frame ${h.maxFrame} is below 256`);

    const maxFrame = Math.min(this.o.maxFrame ?? GATEWAY_MAX_FRAME, h.maxFrame);
    const window = Math.max(1, Math.min(this.o.window ?? 8, h.window || 1, 16));
    const sameBoot = this.hello?.bootId === h.bootId && hex(this.hello.boardId) === id;
    this.hello = h;
    const c = this.clockOf(h.bootId);
    c.coarseOffsetUs = Number(h.uptimeUs) - this.utcMs() * 1000;
    if (!sameBoot) {
      this.smp.fail(`board ${this.o.name} restarted`);
      this.points.clear();
      this.describing.clear();
      for (const child of this.children) this.push(`${child}/online`, false, "good", this.utcMs());
      this.children.clear();
    }
    this.link.send(
      CHANNEL.LINK,
      encodeLink({ body: { case: "helloReply", value: { accepted: true, reason: "", utcUs: BigInt(this.utcMs()) * 1000n, maxFrame, window, heartbeatMs: this.o.heartbeatMs } } }),
      { reliable: true },
    );
    this.link.setSession({ window, maxFrame });
    const was = this.state_;
    this.state_ = "online";
    this.refusedReason = null;
    this.sessions++;
    this.lastHeard = this.clock.now();
    this.nextHeartbeat = this.clock.now();
    this.nextTimeSync = this.clock.now();
    this.timeRequestOut = false;
    this.push("online", true, "good", this.utcMs());
    this.o.log.info(
      { board: this.o.name, id, hardware: h.hardware, firmware: h.firmware, boot: hex32(h.bootId), reset: RESET_NAMES[h.resetReason] ?? h.resetReason },
      was === "online" ? "board session restarted" : "board online",
    );
    this.updateBusy();
    this.emit({ kind: "online", hello: helloInfo(h) });
  }

  private clockOf(boot: number): { clock: BoardClock; coarseOffsetUs: number | null } {
    let c = this.clocks.get(boot);
    if (!c) {
      c = { clock: new BoardClock(), coarseOffsetUs: null };
      this.clocks.set(boot, c);
      while (this.clocks.size > BOOTS_KEPT) this.clocks.delete(this.clocks.keys().next().value!);
    }
    return c;
  }

  private onTelemetry(payload: Uint8Array): void {
    if (!this.online || !this.hello) return;
    const r = decodeTelemetry(payload);
    if (!r.ok) return this.bad("telemetry", r.error);
    const body = r.message.body;
    switch (body.case) {
      case "describe":
        return this.onDescribe(body.value.points, body.value.complete, body.value.child);
      case "readings":
        return this.onReadings(body.value.bootId, body.value.firstSeq, body.value.readings);
      case "child": {
        const child = body.value.child;
        if (!NAME.test(child)) return this.bad("child event", `child id ${JSON.stringify(child.slice(0, 40))} is not [a-z0-9_.-]{1,32}`);
        if (body.value.present && !this.children.has(child)) {
          this.children.add(child);
          this.push(`${child}/online`, true, "good", this.utcMs());
          this.o.log.info({ board: this.o.name, child }, "child node appeared");
        } else if (!body.value.present && this.children.delete(child)) {
          this.push(`${child}/online`, false, "good", this.utcMs());
          this.o.log.warn({ board: this.o.name, child }, "child node vanished");
        }
        this.o.changed?.();
        return;
      }
      default:
        return;
    }
  }

  private onDescribe(points: ReadonlyArray<{ id: number; name: string; unit: string; type: PointType; writable: boolean; min: number; max: number; child: string }>, complete: boolean, child: string): void {
    if (child !== "" && !NAME.test(child)) return this.bad("describe", `child id ${JSON.stringify(child.slice(0, 40))} is not [a-z0-9_.-]{1,32}`);
    const list = this.describing.get(child) ?? [];
    for (const p of points) {
      const pc = p.child || child;
      if (!NAME.test(p.name) || (pc !== "" && !NAME.test(pc))) {
        this.bad("describe", `point name ${JSON.stringify(p.name.slice(0, 40))} is not [a-z0-9_.-]{1,32}`);
        continue;
      }
      const bounded = (p.min !== 0 || p.max !== 0) && Number.isFinite(p.min) && Number.isFinite(p.max) && p.min <= p.max;
      list.push({
        id: p.id,
        name: pc ? `${pc}/${p.name}` : p.name,
        unit: p.unit.slice(0, 16),
        type: p.type === PointType.POINT_BOOL ? "bool" : p.type === PointType.POINT_TEXT ? "text" : p.type === PointType.POINT_ACTION ? "action" : "number",
        writable: p.writable,
        min: bounded ? p.min : null,
        max: bounded ? p.max : null,
        child: pc || null,
      });
    }
    if (list.length > 4096) {
      this.describing.delete(child);
      return this.bad("describe", "more than 4096 points");
    }
    if (!complete) {
      this.describing.set(child, list);
      return;
    }
    this.describing.delete(child);
    for (const [id, p] of this.points) if ((child === "" ? p.child === null : p.child === child)) this.points.delete(id);
    for (const p of list) this.points.set(p.id, p);
    if (child !== "") this.children.add(child);
    this.o.changed?.();
  }

  private onReadings(boot: number, firstSeq: number, readings: readonly BoardReading[]): void {
    if (!this.hello) return;
    if (boot === 0 || firstSeq === 0) return this.bad("readings", `boot ${boot}, first sequence ${firstSeq}: both must be non-zero`);
    const key = `bridge:${hex(this.hello.boardId)}:${hex32(boot)}`;
    const committed = this.o.cursor(key) ?? 0;
    const seen = Math.max(committed, this.received.get(key) ?? 0);
    const last = firstSeq + readings.length - 1;
    const now = this.utcMs();
    let added = 0;
    readings.forEach((r, i) => {
      const seq = firstSeq + i;
      if (seq <= seen) {
        this.counts.duplicates++;
        return;
      }
      this.pushBoard(r, boot, now);
      added++;
    });
    if (added > 0) {
      this.emit({ kind: "readings", count: added });
      this.received.set(key, last);
      this.pendingAcks.set(key, { boot, upto: last });
      if (this.received.size > 64) this.received.delete(this.received.keys().next().value!);
    } else if (last <= committed) {
      // All stored before (the board did not get our ack): tell it again.
      this.sendAck(boot, last);
    }
    this.updateBusy();
  }

  private pushBoard(r: BoardReading, boot: number, receivedAt: number): void {
    this.counts.readings++;
    const p = this.points.get(r.point) ?? this.describing.get("")?.find((x) => x.id === r.point);
    let name: string;
    if (p) name = p.name;
    else {
      this.counts.unknownPoints++;
      this.warnOnce(`point-${r.point}`, `${this.o.name}: reading of point id ${r.point}, which the board did not describe: stored as point-${r.point}`);
      name = `point-${r.point >>> 0}`;
    }
    let quality: Quality = r.quality === BoardQuality.BAD ? "bad" : r.quality === BoardQuality.UNCERTAIN ? "uncertain" : "good";
    let value: Value = null;
    switch (r.value.case) {
      case "number":
        if (Number.isFinite(r.value.value)) value = r.value.value;
        else quality = "bad";
        break;
      case "flag":
        value = r.value.value;
        break;
      case "text":
        value = r.value.value.slice(0, TEXT_MAX);
        break;
      default:
        if (quality === "good") quality = "bad";
    }
    const c = this.clocks.get(boot);
    const tUs = Number(r.tUs);
    let ts: number;
    const precise = c?.clock.toUtc(tUs);
    if (precise !== undefined) ts = precise / 1000;
    else if (c?.coarseOffsetUs != null) ts = (tUs - c.coarseOffsetUs) / 1000;
    else {
      // A reading kept from a boot whose clock this gateway never saw: placed at its arrival.
      ts = receivedAt;
      if (quality === "good") quality = "uncertain";
    }
    // A reading is taken before it arrives: a time past the arrival (beyond a minute of clock
    // error) is a board clock gone wrong, not the future.
    if (!Number.isFinite(ts) || ts <= 0 || ts > receivedAt + 60_000) {
      ts = receivedAt;
      if (quality === "good") quality = "uncertain";
    }
    this.push(name, value, quality, Math.round(ts));
  }

  private push(point: string, value: Value, quality: Quality, ts: number): void {
    this.pending.push({ point: `${this.o.name}/${point}`, ts, value, quality });
    if (this.latest.has(point) || this.latest.size < 8192) this.latest.set(point, { ts, value, quality });
  }

  /** Each point's last reading (relative names), sorted by name. */
  values(): Array<{ point: string; ts: number; value: Value; quality: Quality }> {
    return [...this.latest].map(([point, r]) => ({ point, ...r })).sort((a, b) => (a.point < b.point ? -1 : a.point > b.point ? 1 : 0));
  }

  private sendAck(boot: number, upto: number): void {
    if (!this.online) return;
    this.link.send(CHANNEL.TELEMETRY, encodeTelemetry({ body: { case: "ack", value: { bootId: boot, uptoSeq: upto } } }), { reliable: true });
  }

  private updateBusy(): void {
    const n = this.pending.length + (this.inFlight?.readings.length ?? 0);
    if (n >= this.o.maxPending) this.link.setBusy(true);
    else if (n < this.o.maxPending / 2) this.link.setBusy(false);
  }

  private onCommands(payload: Uint8Array): void {
    const r = decodeCommands(payload);
    if (!r.ok) return this.bad("command result", r.error);
    if (r.message.body.case !== "result") return;
    this.onResult(r.message.body.value);
  }

  private onResult(res: BoardCommandResult): void {
    const pending = this.commands.get(res.id);
    if (!pending) return; // late (timed out) or not ours
    this.commands.delete(res.id);
    this.clock.clearTimeout(pending.timer);
    if (res.status !== CommandStatus.COMMAND_OK) {
      const what = res.status === CommandStatus.COMMAND_REFUSED ? "refused" : res.status === CommandStatus.COMMAND_UNKNOWN_POINT ? "does not know the point" : "failed";
      return pending.reject(new Error(`board ${this.o.name} ${what}${res.message ? `: ${res.message.slice(0, 200)}` : ""}`));
    }
    const rb = res.readback;
    let readBack: Value = null;
    if (rb?.value.case === "number" || rb?.value.case === "flag" || rb?.value.case === "text") readBack = rb.value.value;
    const want = pending.value;
    const same =
      typeof want === "number" && typeof readBack === "number" ? Math.abs(readBack - want) <= 1e-6 * Math.max(1, Math.abs(want)) : readBack === want || pending.point.type === "action";
    if (!same) return pending.reject(new Error(`${this.o.name}/${pending.point.name} read back ${JSON.stringify(readBack)} after writing ${JSON.stringify(want)}`));
    if (rb) this.pushBoard(rb, this.hello!.bootId, this.utcMs());
    pending.resolve(readBack);
  }

  private onLog(payload: Uint8Array): void {
    const r = decodeLog(payload);
    if (!r.ok) return this.bad("log line", r.error);
    const level = r.message.level === LogLevel.LOG_ERROR ? "error" : r.message.level === LogLevel.LOG_WARN ? "warn" : r.message.level === LogLevel.LOG_INFO ? "info" : "debug";
    const text = r.message.text.slice(0, 200).replace(/[\u0000-\u001f\u007f]/g, " ");
    const now = this.utcMs();
    this.logLines.push({ ts: now, level, text });
    if (this.logLines.length > LOG_KEEP) this.logLines.shift();
    if (now - this.logWindowStart >= 1000) {
      if (this.logsSuppressed > 0) this.o.log.warn({ board: this.o.name }, `${this.logsSuppressed} board log lines not written (over ${LOG_PER_SECOND}/s)`);
      this.logWindowStart = now;
      this.logsInWindow = 0;
      this.logsSuppressed = 0;
    }
    if (++this.logsInWindow > LOG_PER_SECOND) {
      this.logsSuppressed++;
      return;
    }
    this.o.log[level]({ board: this.o.name }, `board: ${text}`);
  }

  private lose(reason: string): void {
    if (this.stopped) return;
    this.link.endSession();
    this.failCommands(`board ${this.o.name}: ${reason}`);
    this.smp.fail(`board ${this.o.name}: ${reason}`);
    this.emit({ kind: "offline", reason });
    if (this.state_ === "online") {
      this.markOffline();
      this.o.log.warn({ board: this.o.name }, `board offline: ${reason}`);
    }
    this.lastError = reason;
    this.state_ = "offline";
    this.nextHelloRequest = this.clock.now();
  }

  private markOffline(): void {
    const now = this.utcMs();
    this.push("online", false, "good", now);
    for (const child of this.children) this.push(`${child}/online`, false, "good", now);
  }

  private failCommands(reason: string): void {
    for (const [id, p] of this.commands) {
      this.clock.clearTimeout(p.timer);
      this.commands.delete(id);
      p.reject(new Error(reason));
    }
  }

  private warnOnce(key: string, message: string): void {
    if (this.warned.has(key)) return;
    if (this.warned.size < 100) this.warned.add(key);
    this.o.log.warn({ board: this.o.name }, message);
  }
}
