/**
 * An e-bike charging point: a relay and an energy meter (an SDM120 polled like any Modbus
 * device). The limits live here, on the gateway: energy and duration per session, power per
 * point — a session is cut within one poll of the meter showing it past a limit, whether or not
 * the uplink is there. Losing the meter is a fault that ends the session too (safe state: off).
 *
 * Session records (start, end, kWh, reason) are events, so they reach the platform like readings.
 */
import { z } from "zod";
import type { Reading } from "../model/reading.js";
import type { Logger } from "../model/logger.js";
import type { Processor, ProcessorOutput } from "../model/processor.js";
import type { Actuator } from "./commands.js";
import type { Relay } from "./relay.js";

export interface ChargerOptions {
  name: string;
  relay: Relay;
  /** Point ids of the meter: power (W), imported energy (kWh), and the device's online flag. */
  powerPoint: string;
  energyPoint: string;
  onlinePoint: string;
  /** Cut off when the point draws more than this. */
  maxPowerW: number;
  /** Session limits: the defaults and the most a command may ask for. */
  maxKwh: number;
  maxMinutes: number;
  /** Without a meter reading for this long while charging, the session ends (meter lost). */
  meterTimeoutMs: number;
}

export type StopReason = "command" | "kwh-limit" | "duration-limit" | "power-limit" | "meter-lost" | "relay-fault" | "shutdown";

interface Session {
  start: number;
  startKwh: number;
  maxKwh: number;
  maxMinutes: number;
  origin: string;
}

export class Charger implements Actuator, Processor {
  readonly kind = "charger";
  readonly name: string;
  readonly actions: ReadonlyMap<string, z.ZodType>;
  /** Stopped: in its safe state for good, until started again. */
  private stopped = false;
  private session: Session | null = null;
  /** Why the last session ended (for a start whose session ended while switching on). */
  private lastEnd: StopReason | null = null;
  /** The off write on the line, if any: at most one at a time. */
  private offWrite: Promise<void> | null = null;
  private power: number | null = null;
  private energy: number | null = null;
  private meterOnline = false;
  private lastMeterTs = 0;
  /** The relay is off and confirmed (safe), or an off is still owed to it. */
  private relayOn = false;
  private offOwed = true;
  private fault: string | null = null;
  private pendingEvents: Reading[] = [];

  constructor(
    private readonly opts: ChargerOptions,
    private readonly log: Logger,
  ) {
    this.name = opts.name;
    this.actions = new Map<string, z.ZodType>([
      [
        "start",
        z.strictObject({
          max_kwh: z.number().min(0.01).max(opts.maxKwh).optional(),
          max_minutes: z.int().min(1).max(opts.maxMinutes).optional(),
        }),
      ],
      ["stop", z.strictObject({})],
    ]);
  }

  /** Safe state at start: off, until a session is asked for. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.enforceOff();
  }

  /** Safe state at stop: off, and the session recorded as ended by shutdown. */
  async stop(now = Date.now()): Promise<ProcessorOutput> {
    this.stopped = true;
    if (this.session) this.endSession("shutdown", now);
    await this.enforceOff();
    // The last chance while the lines are open: try the relay even if its device is backed off
    // (the write above is refused at once then, waiting for a probe that would come too late).
    if (this.offOwed) await this.writeOff({ evenIfOffline: true });
    return this.drain([]);
  }

  state(): Record<string, unknown> {
    const s = this.session;
    return {
      charging: s !== null,
      relay: this.offOwed ? "off-pending" : this.relayOn ? "on" : "off",
      power_w: this.power,
      energy_kwh: this.energy,
      meter: this.meterOnline ? "online" : "offline",
      ...(s ? { session: { start: s.start, kwh: this.sessionKwh(), max_kwh: s.maxKwh, max_minutes: s.maxMinutes } } : {}),
      ...(this.fault ? { fault: this.fault } : {}),
    };
  }

  async execute(action: string, args: unknown, now: number): Promise<Record<string, unknown>> {
    // After the stop the relay stays off: only an off is still taken.
    if (this.stopped && action !== "stop") throw new Error(`${this.name} is stopped (the gateway is stopping); not started`);
    if (action === "stop") {
      if (this.session) this.endSession("command", now);
      await this.enforceOff();
      return this.state();
    }
    const a = args as { max_kwh?: number; max_minutes?: number };
    // An off still on the line goes first: an on sent beside it could land before it.
    if (this.offWrite) await this.offWrite;
    if (this.session) throw new Error(`${this.name} is already charging`);
    if (!this.meterOnline || this.energy === null || now - this.lastMeterTs > this.opts.meterTimeoutMs) {
      throw new Error(`${this.name}: the meter has not been read recently; not starting without it`);
    }
    // Kept in a local: a limit, a lost meter or a stop may end this.session during the await.
    const session: Session = { start: now, startKwh: this.energy, maxKwh: a.max_kwh ?? this.opts.maxKwh, maxMinutes: a.max_minutes ?? this.opts.maxMinutes, origin: "command" };
    this.session = session;
    try {
      await this.opts.relay.set(true);
    } catch (err) {
      if (this.session === session) this.session = null;
      await this.enforceOff();
      throw new Error(`${this.name}: could not switch on: ${(err as Error).message}`);
    }
    if (this.session !== session) {
      // The off that ended the session is on the line with this on; it may have reached the
      // relay first. So after it, one more off: the relay ends off whatever order they took.
      this.relayOn = true;
      this.offOwed = true;
      const raced = this.offWrite !== null;
      await this.enforceOff();
      if (raced) await this.enforceOff();
      throw new Error(`${this.name}: the session ended (${this.lastEnd ?? "unknown"}) while the relay was switching on; the relay is ${this.offOwed ? "being switched off" : "off"}`);
    }
    this.relayOn = true;
    this.offOwed = false;
    this.fault = null;
    this.log.info({ max_kwh: session.maxKwh, max_minutes: session.maxMinutes }, "session started");
    return this.state();
  }

  /** Every tick's readings: the meter's figures, and the limits checked against them. */
  process(readings: readonly Reading[], now: number): ProcessorOutput {
    let metered = false;
    for (const r of readings) {
      if (r.point === this.opts.onlinePoint || r.point === this.opts.powerPoint || r.point === this.opts.energyPoint) metered = true;
      if (r.point === this.opts.onlinePoint) this.meterOnline = r.value === true;
      else if (r.point === this.opts.powerPoint) {
        if (r.quality === "good" && typeof r.value === "number") {
          this.power = r.value;
          this.lastMeterTs = r.ts;
        } else this.power = null;
      } else if (r.point === this.opts.energyPoint && r.quality === "good" && typeof r.value === "number") {
        this.energy = r.value;
      }
    }
    this.check(now);
    // The point's figures go with its meter's poll, not with every other source's.
    return this.drain(metered ? this.figures(now) : []);
  }

  /** Every second: the duration limit and a silent meter need no reading to be noticed. */
  tick(now: number): ProcessorOutput {
    this.check(now);
    // enforceOff shares the write in flight: a relay that hangs sees one write, not one per tick.
    if (this.offOwed && !this.session) void this.enforceOff();
    return this.drain([]);
  }

  private check(now: number): void {
    const s = this.session;
    if (!s) return;
    if (this.power !== null && this.power > this.opts.maxPowerW) this.endSession("power-limit", now);
    else if (this.sessionKwh() >= s.maxKwh) this.endSession("kwh-limit", now);
    else if (now - s.start >= s.maxMinutes * 60_000) this.endSession("duration-limit", now);
    else if (!this.meterOnline || now - this.lastMeterTs > this.opts.meterTimeoutMs) this.endSession("meter-lost", now);
  }

  private sessionKwh(): number {
    const s = this.session;
    if (!s || this.energy === null) return 0;
    return Math.max(0, Math.round((this.energy - s.startKwh) * 1000) / 1000);
  }

  private endSession(reason: StopReason, now: number): void {
    const s = this.session;
    if (!s) return;
    const record = { start: s.start, end: now, kwh: this.sessionKwh(), reason };
    this.session = null;
    this.lastEnd = reason;
    this.offOwed = true;
    this.log.info(record, "session ended");
    this.pendingEvents.push({ point: `${this.name}/session`, ts: now, value: JSON.stringify(record), quality: "good" });
    void this.enforceOff();
  }

  /**
   * Switches off; while the relay does not confirm, keeps trying every tick (state off-pending).
   * One write at a time: a call while one is on the line shares it, so a dead relay is not sent
   * a new write every second on top of the ones still queued on its line.
   */
  private enforceOff(): Promise<void> {
    this.offWrite ??= this.writeOff().finally(() => {
      this.offWrite = null;
    });
    return this.offWrite;
  }

  private async writeOff(opts: { evenIfOffline?: boolean } = {}): Promise<void> {
    try {
      await this.opts.relay.set(false, opts);
      this.relayOn = false;
      this.offOwed = false;
      this.fault = null;
    } catch (err) {
      this.offOwed = true;
      const message = `could not switch off ${this.opts.relay.describe}: ${(err as Error).message}`;
      if (this.fault !== message) this.log.error(message);
      this.fault = message;
    }
  }

  private figures(now: number): Reading[] {
    const out: Reading[] = [{ point: `${this.name}/charging`, ts: now, value: this.session !== null, quality: "good" }];
    if (this.session) out.push({ point: `${this.name}/session_kwh`, ts: now, value: this.sessionKwh(), quality: "good" });
    return out;
  }

  private drain(readings: Reading[]): ProcessorOutput {
    const events = this.pendingEvents;
    this.pendingEvents = [];
    return { readings, events };
  }
}
