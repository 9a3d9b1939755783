/**
 * A `type: gpio` source: one digital input, e.g. a PIR presence sensor. Every debounced edge
 * becomes a reading with the time it happened; the current value is reported at each poll as
 * well. Edges between two polls are kept and handed over at the next one. A pin that cannot be opened (no sysfs GPIO, no permission) gives
 * readings of quality bad and is tried again at every poll.
 */
import type { GpioBackend, GpioInput } from "../../buses/gpio/gpio.js";
import { OnoffGpioBackend } from "../../buses/gpio/onoff-backend.js";
import { SimGpioBackend } from "../../buses/gpio/sim-backend.js";
import { SimPresence } from "../../simulators/gpio/presence.js";
import type { GpioSourceConfig } from "./type.js";
import type { Reading } from "../../model/reading.js";
import type { Logger } from "../../model/logger.js";
import type { Source, SourceDetail } from "../source.js";
import { gpioDetail } from "./status.js";
import type { SourceDeps } from "../type.js";

/** Edges kept between two polls at most; a chattering contact cannot fill the memory. */
const MAX_PENDING = 1000;

export interface GpioSourceHealth {
  open: boolean;
  edges: number;
  dropped: number;
  lastError: string | null;
}

export class GpioSource implements Source {
  readonly name: string;
  readonly interval: number;
  readonly point: string;
  private input: GpioInput | null = null;
  private readonly pending: Reading[] = [];
  private readonly counters = { edges: 0, dropped: 0 };
  private lastError: string | null = null;

  constructor(
    private readonly cfg: GpioSourceConfig,
    private readonly backend: GpioBackend,
    private readonly deps: { log: Logger; presence?: { start(): void; stop(): void } },
  ) {
    this.name = cfg.name;
    this.interval = cfg.interval;
    this.point = `${cfg.name}/${cfg.point}`;
  }

  async start(): Promise<void> {
    this.deps.presence?.start();
    await this.open();
  }

  private async open(): Promise<boolean> {
    if (this.input) return true;
    try {
      const input = await this.backend.input(this.cfg.pin, { edge: this.cfg.edge, debounceMs: this.cfg.debounce, activeLow: this.cfg.active_low });
      input.watch((value, ts) => this.edge(value === 1, ts));
      this.input = input;
      if (this.lastError) this.deps.log.info({ source: this.name }, `${this.name}: GPIO ${this.cfg.pin} open`);
      this.lastError = null;
      return true;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (message !== this.lastError) this.deps.log.warn({ source: this.name }, message);
      this.lastError = message;
      return false;
    }
  }

  private edge(active: boolean, ts: number): void {
    this.counters.edges++;
    const reading: Reading = { point: this.point, ts, value: active, quality: "good" };
    if (this.pending.length >= MAX_PENDING) {
      this.pending.shift();
      this.counters.dropped++;
    }
    this.pending.push(reading);
  }

  async poll(tickTs: number): Promise<Reading[]> {
    if (!(await this.open())) return [{ point: this.point, ts: tickTs, value: null, quality: "bad" }];
    const readings = this.pending.splice(0);
    try {
      readings.push({ point: this.point, ts: tickTs, value: (await this.input!.read()) === 1, quality: "good" });
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      readings.push({ point: this.point, ts: tickTs, value: null, quality: "bad" });
    }
    return readings;
  }

  async stop(): Promise<void> {
    this.deps.presence?.stop();
    await this.input?.release();
    this.input = null;
  }

  health(): GpioSourceHealth {
    return { open: this.input !== null, ...this.counters, lastError: this.lastError };
  }

  /** The input as a device: up while its pin is open. */
  status(): SourceDetail {
    return gpioDetail(this.name, this.health());
  }
}

/** The source of a config entry: on sysfs GPIO, or on a simulated pin with `simulated: true`. */
export function createGpioSource(cfg: GpioSourceConfig, deps: { log: Logger }): GpioSource {
  if (!cfg.simulated) return new GpioSource(cfg, new OnoffGpioBackend(), deps);
  const backend = new SimGpioBackend();
  return new GpioSource(cfg, backend, { ...deps, presence: new SimPresence(backend, cfg.pin, Math.random, cfg.active_low) });
}

/** The agent's factory for `type: gpio` (SourceModule). */
export function create(cfg: GpioSourceConfig, deps: SourceDeps): Source[] {
  return [createGpioSource(cfg, { log: deps.log })];
}
