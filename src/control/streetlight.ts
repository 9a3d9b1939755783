/**
 * A solar streetlight: dusk to dawn from the astronomical clock, part-night windows, a presence
 * boost from a PIR, and manual overrides that expire. The lamp is a relay (the EPEVER load output
 * or a GPIO relay); dimming is a capability only some lamps have. Every second the wanted state
 * is computed and, when it differs from what the lamp was last confirmed to be, applied and
 * verified. Runs entirely on the gateway: weeks without an uplink change nothing.
 */
import { z } from "zod";
import type { Reading } from "../model/reading.js";
import type { Logger } from "../model/logger.js";
import { NOTHING, type Processor, type ProcessorOutput } from "../model/processor.js";
import type { Actuator } from "./commands.js";
import type { Relay } from "./relay.js";
import { boostUntil, desiredState, type LightState, type StreetlightScheduleConfig } from "./streetlight-schedule.js";

/** The lamp's figures are published when they change, and at least this often. */
const FIGURES_EVERY_MS = 60_000;

export interface StreetlightOptions {
  name: string;
  relay: Relay;
  schedule: StreetlightScheduleConfig;
  /** A presence reading (true = someone there) that boosts the lamp during part-night. */
  presencePoint?: string;
  /** Longest override a command may ask for, in seconds. */
  maxOverrideS: number;
  /** Re-assert the wanted state this often even when nothing changed (a controller may have been reset). */
  reassertMs: number;
}

export class Streetlight implements Actuator, Processor {
  readonly kind = "streetlight";
  readonly name: string;
  readonly actions: ReadonlyMap<string, z.ZodType>;
  /** Stopped: the ticks no longer switch the lamp. */
  private stopped = false;
  private override: { on: boolean; level?: number; until: number } | undefined;
  private presenceUntil: number | undefined;
  /** What the lamp was last confirmed to be; null when unknown (start, or after a failed write). */
  private applied: boolean | null = null;
  private appliedAt = 0;
  /** The write on the line, if any: one at a time, so two writes cannot land in either order. */
  private writing: Promise<void> | null = null;
  private wanted: LightState | null = null;
  private fault: string | null = null;
  private lastFigures = "";
  private lastFiguresAt = 0;

  constructor(
    private readonly opts: StreetlightOptions,
    private readonly log: Logger,
  ) {
    this.name = opts.name;
    this.actions = new Map<string, z.ZodType>([
      [
        "set",
        z.strictObject({
          on: z.boolean(),
          level: z.int().min(0).max(100).optional(),
          duration_s: z.int().min(60).max(opts.maxOverrideS).default(Math.min(3600, opts.maxOverrideS)),
        }),
      ],
      ["auto", z.strictObject({})],
    ]);
  }

  /** At start the lamp takes its automatic state at once (at night: on). */
  async start(now = Date.now()): Promise<void> {
    this.stopped = false;
    await this.apply(now);
  }

  /**
   * Safe state at stop: automatic mode (an override ends), set once more while the bus is still
   * open, so a gateway that stops leaves the lamp doing what the schedule wants — not dark at
   * night because of a manual "off" that nobody will end. Nothing is switched after this.
   */
  async stop(now = Date.now()): Promise<void> {
    this.override = undefined;
    this.stopped = true;
    // The last write goes to the line even while the device is backed off (no probe comes after the stop).
    await this.apply(now, { evenIfOffline: true });
  }

  state(): Record<string, unknown> {
    const w = this.wanted;
    return {
      mode: this.override ? "override" : "auto",
      on: this.applied,
      ...(w ? { level: w.level, reason: w.reason, next_change: new Date(w.nextChange).toISOString() } : {}),
      ...(this.override ? { override_until: new Date(this.override.until).toISOString() } : {}),
      ...(this.fault ? { fault: this.fault } : {}),
    };
  }

  async execute(action: string, args: unknown, now: number): Promise<Record<string, unknown>> {
    if (this.stopped) throw new Error(`${this.name} is stopped (the gateway is stopping); it follows its schedule`);
    if (action === "auto") {
      this.override = undefined;
    } else {
      const a = args as { on: boolean; level?: number; duration_s: number };
      this.override = { on: a.on, ...(a.level !== undefined ? { level: a.level } : {}), until: now + a.duration_s * 1000 };
    }
    await this.apply(now);
    if (this.fault) throw new Error(this.fault);
    return this.state();
  }

  /** Sees every tick's readings: a presence detection may switch the lamp at once. */
  process(readings: readonly Reading[], now: number): ProcessorOutput {
    const p = this.opts.presencePoint;
    if (p) {
      for (const r of readings) {
        if (r.point === p && r.value === true && r.quality === "good") this.presenceUntil = boostUntil(this.opts.schedule, r.ts);
      }
    }
    this.reconcile(now);
    return NOTHING;
  }

  /** Every second: expiry and schedule; the lamp's figures when they change, and once a minute. */
  tick(now: number): ProcessorOutput {
    const w = this.reconcile(now);
    const mode = this.override ? "override" : "auto";
    const key = `${String(this.applied)}|${w.level}|${mode}`;
    if (key === this.lastFigures && now - this.lastFiguresAt < FIGURES_EVERY_MS) return NOTHING;
    this.lastFigures = key;
    this.lastFiguresAt = now;
    return {
      readings: [
        { point: `${this.name}/on`, ts: now, value: this.applied, quality: this.applied === null ? "bad" : "good" },
        { point: `${this.name}/level`, ts: now, value: w.level, quality: "good" },
        { point: `${this.name}/mode`, ts: now, value: mode, quality: "good" },
      ],
      events: [],
    };
  }

  /** Ends an expired override and switches the lamp when it is not what the schedule wants. */
  private reconcile(now: number): LightState {
    if (this.override && now >= this.override.until) {
      this.log.info("override expired: automatic mode");
      this.override = undefined;
    }
    const w = this.compute(now);
    const stale = now - this.appliedAt >= this.opts.reassertMs;
    // A write on the line already: the next tick looks again once it is done.
    if ((this.applied !== w.on || stale) && !this.writing && !this.stopped) void this.apply(now);
    return w;
  }

  private compute(now: number): LightState {
    this.wanted = desiredState(this.opts.schedule, now, {
      ...(this.presenceUntil !== undefined ? { presenceUntil: this.presenceUntil } : {}),
      ...(this.override ? { override: this.override } : {}),
    });
    return this.wanted;
  }

  /** Applies the wanted state after the write on the line, if any (a command must not overtake it). */
  private apply(now: number, opts: { evenIfOffline?: boolean } = {}): Promise<void> {
    const run = this.writing ? this.writing.then(() => this.write(now, opts)) : this.write(now, opts);
    this.writing = run;
    void run.finally(() => {
      if (this.writing === run) this.writing = null;
    });
    return run;
  }

  /** Never rejects: a failed write is a fault (state on: null) that the next tick retries. */
  private async write(now: number, opts: { evenIfOffline?: boolean } = {}): Promise<void> {
    const w = this.compute(now);
    try {
      await this.opts.relay.set(w.on, opts);
      if (this.applied !== w.on) this.log.info({ on: w.on, reason: w.reason }, `lamp ${w.on ? "on" : "off"} (${w.reason})`);
      this.applied = w.on;
      this.appliedAt = now;
      this.fault = null;
    } catch (err) {
      this.applied = null;
      const message = `${this.name}: could not switch ${w.on ? "on" : "off"} ${this.opts.relay.describe}: ${(err as Error).message}`;
      if (message !== this.fault) this.log.error(message);
      this.fault = message;
    }
  }
}
