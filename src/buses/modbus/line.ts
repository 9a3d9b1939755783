/**
 * A Modbus line: one physical bus (an RS-485 segment, a TCP connection) with one request queue.
 * RS-485 is half duplex, so requests never overlap; devices take turns round-robin, so a device
 * with many requests (or a slow one) cannot starve the others. Between RTU frames the line keeps
 * the 3.5-character silence of the spec. The link is opened on demand and reopened after it
 * drops, at most once per `reopenMs`, so an unplugged adapter costs nothing while it is away.
 *
 * Urgent jobs (an actuator's write and its read-back: a charger switched off at its power limit)
 * go ahead of the round-robin, so they wait for the request in progress only, not for a turn of
 * every device. It stays fair: an urgent job never follows another urgent one while ordinary
 * work waits, so polls keep at least every other slot, and the callers bound what they queue
 * (a device has one write in progress at a time).
 */
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

export interface RunOptions {
  /** Ahead of the round-robin turns (see the class comment); for actuator writes. */
  urgent?: boolean;
}

interface Job {
  run: (link: ModbusLink) => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export interface LineOptions {
  /** Silence to keep after each transaction (RTU t3.5), ms. */
  interFrameMs: number;
  /** Least time between two attempts to (re)open the link, ms. */
  reopenMs?: number;
  now?: () => number;
}

export class ModbusLine {
  private readonly queues = new Map<string, Job[]>();
  /** Round-robin order of the devices that have work. */
  private readonly turn: string[] = [];
  private readonly urgent: Job[] = [];
  /** The job just run was urgent: the next one comes from the turns if any waits. */
  private lastUrgent = false;
  private busy = false;
  private closed = false;
  private lastOpenAttempt = Number.NEGATIVE_INFINITY;
  private lastOpenError: string | null = null;
  private users = 0;
  private readonly now: () => number;
  private readonly counters = { opens: 0, openFailures: 0, requests: 0 };
  private lastError: string | null = null;

  constructor(
    readonly name: string,
    private readonly link: ModbusLink,
    private readonly opts: LineOptions,
  ) {
    this.now = opts.now ?? (() => performance.now());
    link.onDisconnect = (reason) => {
      this.lastError = reason;
    };
  }

  /** Devices acquire the line when they start and release it when they stop; the last one closes it. */
  acquire(): void {
    this.users++;
    this.closed = false;
  }

  async release(): Promise<void> {
    this.users = Math.max(0, this.users - 1);
    if (this.users === 0) await this.close();
  }

  /** Runs `job` when it is `device`'s turn on the line (urgent: at the next slot, see above). */
  run<T>(device: string, job: (link: ModbusLink) => Promise<T>, opts: RunOptions = {}): Promise<T> {
    if (this.closed) return Promise.reject(new ModbusError("disconnected", `line ${this.name} is closed`));
    return new Promise<T>((resolve, reject) => {
      const entry: Job = { run: job, resolve: resolve as (v: unknown) => void, reject };
      if (opts.urgent) {
        this.urgent.push(entry);
      } else {
        let q = this.queues.get(device);
        if (!q) {
          q = [];
          this.queues.set(device, q);
        }
        q.push(entry);
        if (!this.turn.includes(device)) this.turn.push(device);
      }
      void this.drain();
    });
  }

  stats(): LineStats {
    let queued = this.urgent.length;
    for (const q of this.queues.values()) queued += q.length;
    return { open: this.link.isOpen, ...this.counters, queued, lastError: this.lastError };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const q of [this.urgent, ...this.queues.values()]) {
      for (const job of q.splice(0)) job.reject(new ModbusError("disconnected", `line ${this.name} is closed`));
    }
    this.turn.length = 0;
    await this.link.close();
  }

  private next(): Job | undefined {
    if (this.urgent.length > 0 && !this.lastUrgent) return this.takeUrgent();
    this.lastUrgent = false;
    while (this.turn.length > 0) {
      const device = this.turn.shift()!;
      const q = this.queues.get(device);
      const job = q?.shift();
      if (q && q.length > 0) this.turn.push(device);
      if (job) return job;
    }
    return this.takeUrgent();
  }

  private takeUrgent(): Job | undefined {
    const job = this.urgent.shift();
    this.lastUrgent = job !== undefined;
    return job;
  }

  private async drain(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (let job = this.next(); job; job = this.next()) {
        try {
          await this.ensureOpen();
          this.counters.requests++;
          job.resolve(await job.run(this.link));
        } catch (err) {
          if (err instanceof ModbusError && err.kind === "disconnected") {
            this.lastError = err.message;
            await this.link.close().catch(() => {});
          }
          job.reject(err);
        }
        if (this.opts.interFrameMs > 0) await sleep(this.opts.interFrameMs);
      }
    } finally {
      this.busy = false;
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

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
