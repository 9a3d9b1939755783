/**
 * Polls one Modbus device on a shared line: plans its points into few reads, retries lost
 * frames, learns where the device refuses merged reads, and backs off when the device stops
 * answering (a circuit breaker) so it cannot steal the line from healthy neighbours.
 *
 * Health is published as readings: `<device>/online` every poll, and points whose read failed
 * come with quality bad and a null value — never a stale or wrong number.
 */
import { decodePoint } from "../../../drivers/modbus/codec.js";
import type { ModbusPoint } from "../../../drivers/modbus/types.js";
import { type ModbusError, ModbusError as ModbusErrorClass, type ModbusErrorKind } from "../../buses/modbus/link.js";
import type { ModbusLine } from "../../buses/modbus/line.js";
import type { Reading } from "../../model/reading.js";
import type { Logger } from "../../ops/logger.js";
import type { Source } from "../source.js";
import { type WriteResult, writeVerified } from "./write.js";
import { Breaks, type PlanLimits, planReads, type ReadRequest, splitRequest } from "./planner.js";

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
}

export interface DeviceHealth {
  online: boolean;
  lastError: string | null;
  lastOkTs: number | null;
  /** Reads planned per poll. */
  requestsPerPoll: number;
  counters: Record<ModbusErrorKind | "requests" | "ok" | "retries" | "polls", number>;
  unsupported: string[];
  /** The line (bus) the device is on, shared with its neighbours. */
  bus: { name: string; open: boolean; opens: number; openFailures: number; queued: number; lastError: string | null };
}

export class ModbusDevice implements Source {
  readonly name: string;
  readonly interval: number;
  private readonly breaks = new Breaks();
  private readonly unsupported = new Set<ModbusPoint>();
  private plan: ReadRequest[];
  /** Each point's reading name ("device/point"), made once: a poll would build it per value. */
  private readonly keys: Map<ModbusPoint, string>;
  private readonly onlineKey: string;
  private failedPolls = 0;
  private online = true;
  private nextProbe = 0;
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

  constructor(
    private readonly opts: ModbusDeviceOptions,
    private readonly line: ModbusLine,
    private readonly log: Logger,
  ) {
    this.name = opts.name;
    this.interval = opts.interval;
    this.keys = new Map(opts.points.map((p) => [p, `${opts.name}/${p.name}`]));
    this.onlineKey = `${opts.name}/online`;
    this.plan = this.replan();
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
      lastError: this.lastError,
      lastOkTs: this.lastOkTs,
      requestsPerPoll: this.plan.length,
      counters: { ...this.counters },
      unsupported: [...this.unsupported].map((p) => p.name),
      bus: (({ open, opens, openFailures, queued, lastError }) => ({ name: this.line.name, open, opens, openFailures, queued, lastError }))(this.line.stats()),
    };
  }

  private replan(): ReadRequest[] {
    return planReads(
      this.opts.points.filter((p) => !this.unsupported.has(p)),
      this.opts.limits,
      this.breaks,
    );
  }

  async poll(tickTs: number): Promise<Reading[]> {
    this.counters.polls++;
    const readings: Reading[] = [];
    if (!this.online && tickTs < this.nextProbe) {
      // Backed off: do not touch the line, just say the device is still offline.
      readings.push(this.onlineReading(tickTs));
      return readings;
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
    this.afterPoll(anyOk || requests.length === 0, tickTs);
    readings.push(this.onlineReading(tickTs));
    return readings;
  }

  private onlineReading(ts: number): Reading {
    return { point: this.onlineKey, ts, value: this.online, quality: "good" };
  }

  private afterPoll(ok: boolean, ts: number): void {
    if (ok) {
      if (!this.online) this.log.info({ device: this.name }, `${this.name}: answering again`);
      this.online = true;
      this.failedPolls = 0;
      this.lastOkTs = ts;
      return;
    }
    this.failedPolls++;
    if (this.online && this.failedPolls >= this.opts.offlineAfter) {
      this.online = false;
      this.log.warn({ device: this.name }, `${this.name}: offline after ${this.failedPolls} failed polls (${this.lastError}); retrying every ${this.opts.probeInterval / 1000}s`);
    }
    if (!this.online) this.nextProbe = ts + this.opts.probeInterval;
  }

  private markBad(req: ReadRequest, ts: number, out: Reading[]): void {
    for (const p of req.points) out.push({ point: this.keys.get(p)!, ts, value: null, quality: "bad" });
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
      if (e.kind === "exception" && e.exceptionCode === 2) return this.onIllegalAddress(req, ts, out);
      this.markBad(req, ts, out);
      if (e.kind === "exception") return "ok"; // the device answered, even if with an exception
      return e.kind === "timeout" || e.kind === "disconnected" ? "silent" : "failed";
    }
    for (const p of req.points) {
      const point = this.keys.get(p)!;
      try {
        out.push({ point, ts, value: decodePoint(p, words, p.address - req.address), quality: "good" });
      } catch {
        out.push({ point, ts, value: null, quality: "bad" });
      }
    }
    return "ok";
  }

  /** Illegal data address: the merge read over a hole. Split, remember the split, read the parts. */
  private async onIllegalAddress(req: ReadRequest, ts: number, out: Reading[]): Promise<"ok" | "failed" | "silent"> {
    const split = splitRequest(req);
    if (!split) {
      for (const p of req.points) {
        this.unsupported.add(p);
        this.log.warn({ device: this.name }, `${this.name}: ${p.name} (${p.table} 0x${p.address.toString(16).padStart(4, "0")}) is not readable on this device (illegal data address); no longer read`);
      }
      this.markBad(req, ts, out);
      this.plan = this.replan();
      return "ok";
    }
    this.breaks.add(req.table, split.breakAt);
    this.plan = this.replan();
    this.log.info({ device: this.name }, `${this.name}: refused a read of ${req.count} at ${req.table} 0x${req.address.toString(16)}; reading in smaller parts from now on (${this.plan.length} per poll)`);
    let result: "ok" | "failed" | "silent" = "failed";
    for (const part of split.parts) {
      const r = await this.readRequest(part, ts, out);
      if (r === "ok") result = "ok";
    }
    return result;
  }

  private async transact(req: ReadRequest): Promise<number[]> {
    for (let attempt = 0; ; attempt++) {
      this.counters.requests++;
      try {
        const words = await this.line.run(this.name, (link) => link.read(this.opts.unit, req.table, req.address, req.count, this.opts.timeout));
        this.counters.ok++;
        return words;
      } catch (err) {
        const e = toModbusError(err);
        this.counters[e.kind]++;
        this.noteError(`${e.message} reading ${req.count} at ${req.table} 0x${req.address.toString(16).padStart(4, "0")}`);
        if (!e.retryable || attempt >= this.opts.retries || !this.online) throw e;
        this.counters.retries++;
      }
    }
  }

  private noteError(message: string): void {
    if (message !== this.lastError) this.log.debug({ device: this.name }, `${this.name}: ${message}`);
    this.lastError = message;
  }

  /** Writes a point of this device (by name) and verifies it by reading it back. */
  async writePoint(name: string, value: number | boolean | string): Promise<WriteResult> {
    const point = this.opts.points.find((p) => p.name === name);
    if (!point) throw new ModbusErrorClass("other", `${this.name} has no point '${name}'`);
    return writeVerified(this.line, this.name, this.opts.unit, point, value, this.opts.timeout);
  }
}

function toModbusError(err: unknown): ModbusError {
  if (err instanceof ModbusErrorClass) return err;
  return new ModbusErrorClass("other", err instanceof Error ? err.message : String(err));
}
