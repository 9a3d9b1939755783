/**
 * Polls one sensor of an I²C source: initialises it (again after any failure, so a replugged
 * part is brought back into its working state as soon as it answers), reads it, and turns
 * every failure into readings of quality bad plus a counter, never a thrown error and never
 * a wrong number.
 */
import type { I2cDriver, I2cSensor, Quantity } from "../../../drivers/i2c/types.js";
import { hex, SensorError } from "../../../drivers/i2c/types.js";
import { I2cError } from "../../buses/i2c/bus.js";
import type { Reading } from "../../model/reading.js";
import type { Logger } from "../../model/logger.js";

export type SensorFailure = "nack" | "bus-missing" | "permission" | "io" | "crc" | "not-ready" | "identity" | "reset" | "other";

export interface SensorHealth {
  driver: string;
  address: string;
  online: boolean;
  initialised: boolean;
  lastError: string | null;
  lastOkTs: number | null;
  info: Record<string, string>;
  /** reads: read attempts; ok: reads that gave values; crc counts bad words as well as bad replies. */
  counters: Record<SensorFailure | "reads" | "ok" | "inits" | "waits", number>;
}

export interface SensorPollerOptions {
  source: string;
  driver: I2cDriver;
  sensor: I2cSensor;
  address: number;
  bus: string;
  /** quantity → point id (`room-101/temperature`). */
  points: ReadonlyArray<{ quantity: Quantity; point: string }>;
  log: Logger;
}

export class SensorPoller {
  private initialised = false;
  private online = true;
  /** Since when a "not ready" counts as normal: the last value or the last init. */
  private readySince: number | null = null;
  private lastError: string | null = null;
  private lastOkTs: number | null = null;
  private readonly counters: SensorHealth["counters"] = {
    reads: 0,
    ok: 0,
    inits: 0,
    waits: 0,
    nack: 0,
    "bus-missing": 0,
    permission: 0,
    io: 0,
    crc: 0,
    "not-ready": 0,
    identity: 0,
    reset: 0,
    other: 0,
  };

  constructor(private readonly opts: SensorPollerOptions) {}

  get label(): string {
    return `${this.opts.bus} ${hex(this.opts.address)} ${this.opts.driver.id}`;
  }

  /** Initialises the chip; false (and counted, logged) when it failed. */
  async init(ts: number): Promise<boolean> {
    try {
      await this.opts.sensor.init();
      this.counters.inits++;
      this.initialised = true;
      this.readySince = ts;
      return true;
    } catch (err) {
      this.fail(err);
      return false;
    }
  }

  async poll(ts: number): Promise<Reading[]> {
    if (!this.initialised && !(await this.init(ts))) return this.bad(ts);
    this.counters.reads++;
    try {
      return this.good(await this.opts.sensor.read(), ts);
    } catch (err) {
      if (err instanceof SensorError && err.kind === "not-ready") {
        // A periodic sensor between two results: nothing to report this tick, unless it has
        // been too long — then it is a failure, and a fresh init may bring it back.
        if (ts - (this.readySince ?? ts) < this.opts.driver.readyWithinMs) {
          this.counters.waits++;
          return [];
        }
      }
      if (err instanceof SensorError && err.kind === "reset") {
        // The chip lost its settings (replugged between two polls): set it up again, read once more.
        this.counters.reset++;
        this.initialised = false;
        this.opts.log.info({ sensor: this.label }, `${err.message}; initialising again`);
        if (await this.init(ts)) {
          try {
            return this.good(await this.opts.sensor.read(), ts);
          } catch (again) {
            this.fail(again);
            return this.bad(ts);
          }
        }
        return this.bad(ts);
      }
      this.fail(err);
      return this.bad(ts);
    }
  }

  async shutdown(): Promise<void> {
    if (!this.initialised) return;
    try {
      await this.opts.sensor.shutdown();
    } catch (err) {
      this.opts.log.debug({ sensor: this.label }, `shutdown: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.initialised = false;
  }

  health(): SensorHealth {
    return {
      driver: this.opts.driver.id,
      address: hex(this.opts.address),
      online: this.online,
      initialised: this.initialised,
      lastError: this.lastError,
      lastOkTs: this.lastOkTs,
      info: this.opts.sensor.info(),
      counters: { ...this.counters },
    };
  }

  private good(values: Awaited<ReturnType<I2cSensor["read"]>>, ts: number): Reading[] {
    const readings: Reading[] = [];
    let badWords = 0;
    for (const p of this.opts.points) {
      const v = values.find((x) => x.quantity === p.quantity);
      if (v && v.value !== null) readings.push({ point: p.point, ts, value: v.value, quality: "good" });
      else {
        readings.push({ point: p.point, ts, value: null, quality: "bad" });
        if (v?.crc === "bad") badWords++;
      }
    }
    if (badWords > 0) {
      this.counters.crc += badWords;
      this.note(`${this.label}: CRC mismatch in ${badWords} value${badWords === 1 ? "" : "s"}`);
    } else {
      this.counters.ok++;
      this.lastOkTs = ts;
      if (!this.online) this.opts.log.info({ sensor: this.label }, `${this.label}: answering again`);
      this.online = true;
    }
    this.readySince = ts;
    return readings;
  }

  private bad(ts: number): Reading[] {
    return this.opts.points.map((p) => ({ point: p.point, ts, value: null, quality: "bad" as const }));
  }

  private fail(err: unknown): void {
    const kind: SensorFailure = err instanceof I2cError || err instanceof SensorError ? err.kind : "other";
    this.counters[kind]++;
    const message = err instanceof Error ? err.message : String(err);
    // Anything but a damaged reply may mean the chip lost its state: initialise before the next read.
    if (kind !== "crc") this.initialised = false;
    if (this.online) this.opts.log.warn({ sensor: this.label }, `${message}; its readings are bad until it answers again`);
    this.online = false;
    this.note(message);
  }

  private note(message: string): void {
    if (message !== this.lastError) this.opts.log.debug({ sensor: this.label }, message);
    this.lastError = message;
  }
}
