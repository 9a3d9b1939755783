/**
 * A Modbus line: one physical bus (an RS-485 segment, a TCP connection) and its PortQueue, so
 * requests never overlap and devices take turns (RS-485 is half duplex; modbus-serial keeps one
 * pending transaction per port). Between RTU frames the line keeps the 3.5-character silence
 * of the spec. The link is opened on demand and reopened after it drops, at most once per
 * `reopenMs`, so an unplugged adapter costs nothing while it is away.
 *
 * Actuator writes use the queue's urgent slot: they wait for the request in progress only, not
 * for a turn of every device (see PortQueue).
 */
import { type PortJobOptions, PortQueue } from "../port-queue.js";
import type { ModbusLink } from "./link.js";
import { ModbusError } from "./link.js";

export interface LineStats {
  open: boolean;
  opens: number;
  openFailures: number;
  requests: number;
  queued: number;
  lastError: string | null;
}

export type RunOptions = PortJobOptions;

export interface LineOptions {
  /** Silence to keep after each transaction (RTU t3.5), ms. */
  interFrameMs: number;
  /** Least time between two attempts to (re)open the link, ms. */
  reopenMs?: number;
  now?: () => number;
}

export class ModbusLine {
  private readonly queue: PortQueue;
  private lastOpenAttempt = Number.NEGATIVE_INFINITY;
  private lastOpenError: string | null = null;
  private readonly now: () => number;
  private readonly counters = { opens: 0, openFailures: 0, requests: 0 };
  private lastError: string | null = null;

  constructor(
    readonly name: string,
    private readonly link: ModbusLink,
    private readonly opts: LineOptions,
  ) {
    this.now = opts.now ?? (() => performance.now());
    this.queue = new PortQueue(name, {
      closedError: (n) => new ModbusError("disconnected", `line ${n} is closed`),
      onClose: () => this.link.close(),
      gapMs: opts.interFrameMs,
    });
    link.onDisconnect = (reason) => {
      this.lastError = reason;
    };
  }

  /** Devices acquire the line when they start and release it when they stop; the last one closes it. */
  acquire(): void {
    this.queue.acquire();
  }

  release(): Promise<void> {
    return this.queue.release();
  }

  /** Runs `job` when it is `device`'s turn on the line (urgent: at the next slot). */
  run<T>(device: string, job: (link: ModbusLink) => Promise<T>, opts: RunOptions = {}): Promise<T> {
    return this.queue.run(device, () => this.transact(job), opts);
  }

  stats(): LineStats {
    return { open: this.link.isOpen, ...this.counters, queued: this.queue.stats().queued, lastError: this.lastError };
  }

  close(): Promise<void> {
    return this.queue.close();
  }

  private async transact<T>(job: (link: ModbusLink) => Promise<T>): Promise<T> {
    try {
      await this.ensureOpen();
      this.counters.requests++;
      return await job(this.link);
    } catch (err) {
      if (err instanceof ModbusError && err.kind === "disconnected") {
        this.lastError = err.message;
        await this.link.close().catch(() => {});
      }
      throw err;
    }
  }

  private async ensureOpen(): Promise<void> {
    if (this.link.isOpen) return;
    const since = this.now() - this.lastOpenAttempt;
    if (since < (this.opts.reopenMs ?? 1000) && this.lastOpenError) {
      throw new ModbusError("disconnected", this.lastOpenError);
    }
    this.lastOpenAttempt = this.now();
    try {
      await this.link.open();
      this.counters.opens++;
      this.lastOpenError = null;
    } catch (err) {
      this.counters.openFailures++;
      this.lastOpenError = err instanceof Error ? err.message : String(err);
      throw err instanceof ModbusError ? err : new ModbusError("disconnected", this.lastOpenError);
    }
  }
}
