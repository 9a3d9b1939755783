/**
 * Polls one Modbus device on a shared line: plans its points into the reads that cost least on
 * its transport, retries lost frames, learns where the device refuses merged reads or points
 * (and tries them again now and then: what a confused device refused is not refused forever),
 * and backs off when the device stops answering (a circuit breaker) so it cannot steal the line
 * from healthy neighbours.
 *
 * Health is published as readings: `<device>/online` every poll, and points whose read failed
 * come with quality bad and a null value — never a stale or wrong number.
 *
 * Writes (a relay switched by a charger or a streetlight) go through the same circuit breaker:
 * a write to an offline device fails at once without touching the line, unless a probe is due,
 * and then the write is the probe; a write nobody answers counts like a failed poll. They wait
 * for each other (one in progress per device, a bounded number waiting) so no caller can grow
 * the line's queue, and they take the line's urgent slot (see ModbusLine).
 */
import { decodePoint } from "../../../drivers/modbus/codec.js";
import type { ModbusPoint } from "../../../drivers/modbus/types.js";
import type { Table } from "../../../drivers/modbus/types.js";
import { type ModbusError, ModbusError as ModbusErrorClass, type ModbusErrorKind, type ModbusLink } from "../../buses/modbus/link.js";
import type { ModbusLine } from "../../buses/modbus/line.js";
import type { Reading } from "../../model/reading.js";
import type { Logger } from "../../model/logger.js";
import type { Source, SourceDetail } from "../source.js";
import { modbusDetail } from "./status.js";
import { encodeWrite, type WriteResult, writeAndReadBack } from "./write.js";
import { Breaks, DEFAULT_WIRE, type PlanLimits, planReads, type ReadRequest, splitRequest } from "./planner.js";
import { planMs, type WireModel } from "./wire-cost.js";

/** How long what a device refused stays out of its polls before it is tried again. */
export const DEFAULT_REPROBE_INTERVAL_MS = 10 * 60_000;

export interface ModbusDeviceOptions {
  name: string;
  unit: number;
  points: ModbusPoint[];
  interval: number;
  timeout: number;
  retries: number;
  limits: PlanLimits;
  offlineAfter: number;
  probeInterval: number;
  /** What a read costs on the device's transport, for the planner; default Modbus TCP. */
  wire?: WireModel;
  /**
   * A refused range or an unreadable point is tried again after this long (ms), and as soon as
   * the device answers again after being offline; default DEFAULT_REPROBE_INTERVAL_MS.
   */
  reprobeInterval?: number;
  /** Wall clock (ms) for writes, which come without a tick; Date.now unless a test sets one. */
  now?: () => number;
}

/**
 * Writes that may wait behind the one in progress: one per writable point (each actuator on a
 * relay module can have its safe-state write waiting), and never fewer than this.
 */
const MIN_WAITING_WRITES = 2;

export interface WriteCounters {
  /** Writes put on the line (each a write and a read-back; their frames are also in `counters`). */
  sent: number;
  /** Confirmed by the read-back. */
  ok: number;
  /** Sent and not confirmed: no answer, refused by the device, or read back different. */
  failed: number;
  /** Refused without touching the line: the device was offline and no probe was due. */
  refusedOffline: number;
  /** Refused because as many writes as allowed were already waiting for this device. */
  refusedFull: number;
  /** In progress or waiting now. */
  pending: number;
}

/** A write refused because the device is offline; `retryAt` (ms) is when a write may probe it. */
export class DeviceOfflineError extends ModbusErrorClass {
  constructor(
    message: string,
    readonly retryAt: number,
  ) {
    super("other", message);
    this.name = "DeviceOfflineError";
  }
}

export interface DeviceHealth {
  online: boolean;
  /** When the device went offline (ms), null while online. */
  offlineSince: number | null;
  lastError: string | null;
  lastOkTs: number | null;
  /** Reads planned per poll. */
  requestsPerPoll: number;
  /** Estimated time of those reads on the wire (ms), from the transport's cost model. */
  wireMsPerPoll: number;
  counters: Record<ModbusErrorKind | "requests" | "ok" | "retries" | "polls", number>;
  /** Points left out of the polls for now because the device refused them (also in `excluded`). */
  unsupported: string[];
  /** What is not read for now and why, since when it is refused (ms), when it is tried again (ms). */
  excluded: Exclusion[];
  writes: WriteCounters;
  /** The line (bus) the device is on, shared with its neighbours. */
  bus: { name: string; open: boolean; opens: number; openFailures: number; queued: number; lastError: string | null };
}

export interface Exclusion {
  /** `point battery_soc (input 0x311a)` or `reads across input 0x311a`. */
  what: string;
  since: number;
  retryAt: number;
}

/** Something the device refused: a point, or reads that span an address (a break). */
type Refusal = Exclusion & ({ kind: "point"; point: ModbusPoint } | { kind: "range"; table: Table; address: number });

export interface WriteOptions {
  /**
   * Try the line even while the device is backed off: for the last safe-state write before the
   * agent stops (a charger's off), which must not be skipped because a probe is not yet due.
   */
  evenIfOffline?: boolean;
}

export class ModbusDevice implements Source {
  readonly name: string;
  readonly interval: number;
  private readonly breaks = new Breaks();
  /** What the device refused, by point or by `table:address` of a break. */
  private readonly refused = new Map<ModbusPoint | string, Refusal>();
  /** Refusals taken back into the plan to be tried again, until a read shows how it went. */
  private readonly retrying = new Map<ModbusPoint | string, Refusal>();
  /** The earliest retryAt of `refused`. */
  private nextRetry = Number.POSITIVE_INFINITY;
  private readonly reprobeInterval: number;
  private readonly wire: WireModel;
  private plan: ReadRequest[];
  private planWireMs = 0;
  /** Each point's reading name ("device/point"), made once: a poll would build it per value. */
  private readonly keys: Map<ModbusPoint, string>;
  private readonly onlineKey: string;
  /** Polls and writes that failed in a row (the breaker's count). */
  private failures = 0;
  private online = true;
  private offlineSince: number | null = null;
  /** What took the device offline, for the message a refused write gives (stable while offline). */
  private offlineReason = "";
  private nextProbe = 0;
  private readonly now: () => number;
  /** Writes run one at a time per device: each waits for the previous one (failed or not). */
  private writeChain: Promise<unknown> = Promise.resolve();
  private readonly maxPendingWrites: number;
  private lastError: string | null = null;
  private lastOkTs: number | null = null;
  private readonly counters: DeviceHealth["counters"] = {
    polls: 0,
    requests: 0,
    ok: 0,
    retries: 0,
    timeout: 0,
    crc: 0,
    exception: 0,
    "wrong-unit": 0,
    truncated: 0,
    disconnected: 0,
    other: 0,
  };
  private readonly writes: Omit<WriteCounters, "pending"> = { sent: 0, ok: 0, failed: 0, refusedOffline: 0, refusedFull: 0 };
  private pendingWrites = 0;

  constructor(
    private readonly opts: ModbusDeviceOptions,
    private readonly line: ModbusLine,
    private readonly log: Logger,
  ) {
    this.name = opts.name;
    this.interval = opts.interval;
    this.keys = new Map(opts.points.map((p) => [p, `${opts.name}/${p.name}`]));
    this.onlineKey = `${opts.name}/online`;
    this.wire = opts.wire ?? DEFAULT_WIRE;
    this.reprobeInterval = opts.reprobeInterval ?? DEFAULT_REPROBE_INTERVAL_MS;
    this.plan = this.replan();
    this.now = opts.now ?? (() => Date.now());
    // One in progress, plus the waiting ones.
    this.maxPendingWrites = 1 + Math.max(MIN_WAITING_WRITES, opts.points.filter((p) => p.writable).length);
  }

  async start(): Promise<void> {
    this.line.acquire();
  }

  async stop(): Promise<void> {
    await this.line.release();
  }

  health(): DeviceHealth {
    return {
      online: this.online,
      offlineSince: this.offlineSince,
      lastError: this.lastError,
      lastOkTs: this.lastOkTs,
      requestsPerPoll: this.plan.length,
      wireMsPerPoll: Math.round(this.planWireMs * 10) / 10,
      counters: { ...this.counters },
      unsupported: [...this.refused.values()].flatMap((r) => (r.kind === "point" ? [r.point.name] : [])),
      excluded: [...this.refused.values()].map(({ what, since, retryAt }) => ({ what, since, retryAt })),
      writes: { ...this.writes, pending: this.pendingWrites },
      bus: (({ open, opens, openFailures, queued, lastError }) => ({ name: this.line.name, open, opens, openFailures, queued, lastError }))(this.line.stats()),
    };
  }

  /** The device and its line, typed for status and metrics. */
  status(): SourceDetail {
    return modbusDetail(this.name, this.health());
  }

  private replan(): ReadRequest[] {
    const plan = planReads(
      this.opts.points.filter((p) => !this.refused.has(p)),
      this.opts.limits,
      this.breaks,
      this.wire,
    );
    this.planWireMs = planMs(this.wire, plan);
    return plan;
  }

  async poll(tickTs: number): Promise<Reading[]> {
    this.counters.polls++;
    if (tickTs >= this.nextRetry) this.retryRefused(tickTs);
    const readings: Reading[] = [];
    if (!this.online) {
      if (tickTs < this.nextProbe) {
        // Backed off: do not touch the line, just say the device is still offline.
        readings.push(this.onlineReading(tickTs));
        return readings;
      }
      // This poll is the probe: a write meanwhile must not probe as well.
      this.nextProbe = tickTs + this.opts.probeInterval;
    }
    // While offline, one request is enough to find out whether the device is back.
    const requests = this.online ? this.plan : this.plan.slice(0, 1);
    let anyOk = false;
    for (let i = 0; i < requests.length; i++) {
      const result = await this.readRequest(requests[i]!, tickTs, readings);
      anyOk ||= result === "ok";
      if (result === "silent") {
        // A device that does not answer one request will not answer the next: give the line
        // back to the others instead of waiting out a timeout per request.
        for (const req of requests.slice(i + 1)) this.markBad(req, tickTs, readings);
        break;
      }
    }
    this.afterAttempt(anyOk || requests.length === 0, tickTs);
    readings.push(this.onlineReading(tickTs));
    return readings;
  }

  private onlineReading(ts: number): Reading {
    return { point: this.onlineKey, ts, value: this.online, quality: "good" };
  }

  /** The circuit breaker, after a poll or a write: did the device answer at all? */
  private afterAttempt(ok: boolean, ts: number): void {
    if (ok) {
      if (!this.online) {
        this.log.info({ device: this.name }, `${this.name}: answering again`);
        // What it refused may have been the trouble that took it offline: try it all again.
        if (this.refused.size > 0) this.retryAtOnce(ts);
      }
      this.online = true;
      this.offlineSince = null;
      this.failures = 0;
      this.lastOkTs = ts;
      return;
    }
    this.failures++;
    if (this.online && this.failures >= this.opts.offlineAfter) {
      this.online = false;
      this.offlineSince = ts;
      this.offlineReason = this.lastError ?? "no answer";
      this.log.warn({ device: this.name }, `${this.name}: offline after ${this.failures} failed polls or writes in a row (${this.lastError}); retrying every ${this.opts.probeInterval / 1000}s`);
    }
    if (!this.online) this.nextProbe = ts + this.opts.probeInterval;
  }

  private markBad(req: ReadRequest, ts: number, out: Reading[]): void {
    for (let i = 0; i < req.points.length; i++) out.push({ point: this.keys.get(req.points[i]!)!, ts, value: null, quality: "bad" });
  }

  /**
   * Reads one planned request (splitting it if the device refuses the merge). "ok": data or an
   * exception came back; "failed": a damaged reply; "silent": no answer or no line.
   */
  private async readRequest(req: ReadRequest, ts: number, out: Reading[]): Promise<"ok" | "failed" | "silent"> {
    let words: number[];
    try {
      words = await this.transact(req);
    } catch (err) {
      const e = toModbusError(err);
      if (isRefusal(e)) return this.onRefused(req, e, ts, out);
      this.markBad(req, ts, out);
      if (e.kind === "exception") return "ok"; // the device answered, even if with an exception
      return e.kind === "timeout" || e.kind === "disconnected" ? "silent" : "failed";
    }
    // Indexed: for…of makes an iterator result per value unless the optimising compiler runs (--no-opt).
    for (let i = 0; i < req.points.length; i++) {
      const p = req.points[i]!;
      const point = this.keys.get(p)!;
      try {
        out.push({ point, ts, value: decodePoint(p, words, p.address - req.address), quality: "good" });
      } catch {
        out.push({ point, ts, value: null, quality: "bad" });
      }
    }
    if (this.retrying.size > 0) this.noteReadable(req);
    return "ok";
  }

  /**
   * The device refused the read (illegal data address or value): a merged read spans registers
   * it does not implement, or more than it answers at once. Split, remember the split, read the
   * parts; a single point it refuses is left out. Both until the next re-probe.
   */
  private async onRefused(req: ReadRequest, e: ModbusError, ts: number, out: Reading[]): Promise<"ok" | "failed" | "silent"> {
    const split = splitRequest(req);
    const retryAt = ts + this.reprobeInterval;
    const again = minutesOrSeconds(this.reprobeInterval);
    if (!split) {
      for (const p of req.points) {
        const first = this.exclude(p, { kind: "point", point: p, what: `point ${p.name} (${where(p.table, p.address)})`, since: ts, retryAt });
        const message = `${this.name}: ${p.name} (${where(p.table, p.address)}) is not readable on this device (${e.message}); left out of the polls, tried again in ${again}`;
        if (first) this.log.warn({ device: this.name }, message);
        else this.log.debug({ device: this.name }, `${message} (still refused)`);
      }
      this.markBad(req, ts, out);
      this.plan = this.replan();
      return "ok";
    }
    const key = `${req.table}:${split.breakAt}`;
    this.breaks.add(req.table, split.breakAt);
    const first = this.exclude(key, { kind: "range", table: req.table, address: split.breakAt, what: `reads across ${where(req.table, split.breakAt)}`, since: ts, retryAt });
    this.plan = this.replan();
    const message = `${this.name}: refused a read of ${req.count} at ${req.table} 0x${req.address.toString(16)} (${e.message}); reading in smaller parts (${this.plan.length} per poll), the whole tried again in ${again}`;
    if (first) this.log.info({ device: this.name }, message);
    else this.log.debug({ device: this.name }, `${message} (still refused)`);
    let result: "ok" | "failed" | "silent" = "failed";
    for (const part of split.parts) {
      const r = await this.readRequest(part, ts, out);
      if (r === "ok") result = "ok";
    }
    return result;
  }

  /**
   * Records a refusal; a re-probe refused again keeps its first `since`. True when it is new
   * (worth a log line), false when a re-probe was refused again.
   */
  private exclude(key: ModbusPoint | string, r: Refusal): boolean {
    const before = this.retrying.get(key);
    this.retrying.delete(key);
    this.refused.set(key, before ? { ...r, since: before.since } : r);
    this.nextRetry = Math.min(this.nextRetry, r.retryAt);
    return !before;
  }

  /** Takes refusals whose time has come back into the plan; the next reads show how they went. */
  private retryRefused(now: number): void {
    this.nextRetry = Number.POSITIVE_INFINITY;
    let changed = false;
    for (const [key, r] of this.refused) {
      if (r.retryAt > now) {
        this.nextRetry = Math.min(this.nextRetry, r.retryAt);
        continue;
      }
      this.refused.delete(key);
      this.retrying.set(key, r);
      if (r.kind === "range") this.breaks.delete(r.table, r.address);
      changed = true;
    }
    if (changed) this.plan = this.replan();
  }

  private retryAtOnce(now: number): void {
    for (const r of this.refused.values()) r.retryAt = now;
    this.nextRetry = now;
  }

  /** A read answered: a retried point or range it covers is readable again. */
  private noteReadable(req: ReadRequest): void {
    for (const [key, r] of this.retrying) {
      const covered = r.kind === "point" ? req.points.includes(r.point) : r.table === req.table && req.address < r.address && r.address < req.address + req.count;
      if (!covered) continue;
      this.retrying.delete(key);
      this.log.info({ device: this.name }, `${this.name}: ${r.what} readable again`);
    }
  }

  private async transact(req: ReadRequest): Promise<number[]> {
    const what = `reading ${req.count} at ${req.table} 0x${req.address.toString(16).padStart(4, "0")}`;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.request(what, (link) => link.read(this.opts.unit, req.table, req.address, req.count, this.opts.timeout));
      } catch (err) {
        const e = toModbusError(err);
        if (!e.retryable || attempt >= this.opts.retries || !this.online) throw e;
        this.counters.retries++;
      }
    }
  }

  /** One request on the line, counted by outcome; `what` completes the error message. */
  private async request<T>(what: string, job: (link: ModbusLink) => Promise<T>, urgent = false): Promise<T> {
    this.counters.requests++;
    try {
      const result = await this.line.run(this.name, job, { urgent });
      this.counters.ok++;
      return result;
    } catch (err) {
      const e = toModbusError(err);
      this.counters[e.kind]++;
      this.noteError(`${e.message} ${what}`);
      throw e;
    }
  }

  private noteError(message: string): void {
    if (message !== this.lastError) this.log.debug({ device: this.name }, `${this.name}: ${message}`);
    this.lastError = message;
  }

  /**
   * Writes a point of this device (by name) and verifies it by reading it back. Refused at once
   * (DeviceOfflineError) while the device is offline and no probe is due, and when as many
   * writes as allowed already wait for it.
   */
  async writePoint(name: string, value: number | boolean | string, opts: WriteOptions = {}): Promise<WriteResult> {
    const point = this.opts.points.find((p) => p.name === name);
    if (!point) throw new ModbusErrorClass("other", `${this.name} has no point '${name}'`);
    encodeWrite(point, value); // a point or value that cannot be written is not the device's failure
    // Checked here, so a refused write does not even take a place in the queue, and again
    // when its turn comes (a write before it may have taken the device offline).
    if (!opts.evenIfOffline) this.refuseIfBackedOff(this.now());
    if (this.pendingWrites >= this.maxPendingWrites) {
      this.writes.refusedFull++;
      throw new ModbusErrorClass("other", `${this.name}: ${this.maxPendingWrites - 1} writes are already waiting for the device; refused (is it answering? last error: ${this.lastError ?? "none"})`);
    }
    this.pendingWrites++;
    const turn = this.writeChain.then(() => this.writeNow(point, value, opts));
    this.writeChain = turn.catch(() => {});
    try {
      return await turn;
    } finally {
      this.pendingWrites--;
    }
  }

  private async writeNow(point: ModbusPoint, value: number | boolean | string, opts: WriteOptions): Promise<WriteResult> {
    const start = this.now();
    if (!opts.evenIfOffline) this.refuseIfBackedOff(start);
    const probing = !this.online;
    // This write is the probe: polls and other writes meanwhile must not probe as well.
    if (probing) this.nextProbe = start + this.opts.probeInterval;
    this.writes.sent++;
    let answered = false;
    try {
      const result = await writeAndReadBack(
        async (step, job) => {
          try {
            const r = await this.request(`${step === "write" ? "writing" : "reading back"} ${point.name}`, job, true);
            answered = true;
            return r;
          } catch (err) {
            // An exception is an answer: the device is there, it refused this request.
            if (toModbusError(err).kind === "exception") answered = true;
            throw err;
          }
        },
        this.opts.unit,
        point,
        value,
        this.opts.timeout,
      );
      this.writes.ok++;
      this.afterAttempt(true, this.now());
      return result;
    } catch (err) {
      this.writes.failed++;
      this.afterAttempt(answered, this.now());
      // A failed probe gives the same message as a refused write: the device is still offline.
      if (probing && !this.online) throw this.offlineError();
      throw err;
    }
  }

  private refuseIfBackedOff(now: number): void {
    if (this.online || now >= this.nextProbe) return;
    this.writes.refusedOffline++;
    throw this.offlineError();
  }

  /**
   * Says when the next attempt may come but not in how many seconds: callers retrying every
   * second log a fault when its message changes, and a countdown would change on every retry.
   */
  private offlineError(): DeviceOfflineError {
    const since = new Date(this.offlineSince ?? this.now()).toISOString().replace(/\.\d+Z$/, "Z");
    return new DeviceOfflineError(`${this.name} is offline since ${since} (${this.offlineReason}); next attempt within ${this.opts.probeInterval / 1000}s`, this.nextProbe);
  }
}

/** Illegal data address or value: this read is refused, whatever else the device answers. */
function isRefusal(e: ModbusError): boolean {
  return e.kind === "exception" && (e.exceptionCode === 2 || e.exceptionCode === 3);
}

/** 600000 → "10 min", 30000 → "30 s". */
function minutesOrSeconds(ms: number): string {
  return ms >= 60_000 ? `${+(ms / 60_000).toFixed(1)} min` : `${+(ms / 1000).toFixed(1)} s`;
}

function where(table: Table, address: number): string {
  return `${table} 0x${address.toString(16).padStart(4, "0")}`;
}

function toModbusError(err: unknown): ModbusError {
  if (err instanceof ModbusErrorClass) return err;
  return new ModbusErrorClass("other", err instanceof Error ? err.message : String(err));
}
