/**
 * One writer per physical port: the queue every transport on a shared wire goes through (an
 * RS-485 line, an I²C bus, and next a serial link to custom boards). Jobs run one at a time,
 * so a request and its reply (or an I²C command, its wait and its read) are never split by
 * another user's transfer.
 *
 * Fair: each user (a device, a sensor, a board) has its own queue and users take turns
 * round-robin, so one with many jobs, or a slow one, cannot starve the others.
 *
 * Urgent jobs (an actuator's write and its read-back: a charger switched off at its power
 * limit) go ahead of the turns, so they wait for the job in progress only. It stays fair: an
 * urgent job never follows another urgent one while ordinary work waits, so ordinary jobs keep
 * at least every other slot; callers bound what they queue as urgent.
 *
 * Users acquire the port when they start and release it when they stop; the last release
 * closes the port (waiting jobs are refused, the running one is let finish first). A job that
 * fails is its caller's business: the queue goes on with the next.
 */

export interface PortJobOptions {
  /** Ahead of the round-robin turns (see above); for actuator writes. */
  urgent?: boolean;
}

export interface PortQueueStats {
  /** Users holding the port (acquired and not released). */
  users: number;
  /** Jobs started. */
  jobs: number;
  /** Jobs that threw. */
  failed: number;
  /** Jobs waiting for their turn. */
  queued: number;
  /** The message of the last job that threw. */
  lastError: string | null;
}

export interface PortQueueOptions {
  /** The error a job gets when the port is closed (a transport's own error type). */
  closedError: (name: string) => Error;
  /** Closes what the port holds (a serial port, a socket, a device file); after the last release. */
  onClose?: () => Promise<void>;
  /** Silence to keep after each job before the next one starts (RTU t3.5), ms. */
  gapMs?: number;
}

interface Job {
  run: () => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export class PortQueue {
  private readonly queues = new Map<string, Job[]>();
  /** Round-robin order of the users that have work. */
  private readonly turn: string[] = [];
  private readonly urgent: Job[] = [];
  /** The job just run was urgent: the next one comes from the turns if any waits. */
  private lastUrgent = false;
  /** A job is running (or the gap after it). */
  private busy = false;
  private readonly idleWaiters: Array<() => void> = [];
  private closed = false;
  private users = 0;
  private readonly counters = { jobs: 0, failed: 0 };
  private lastError: string | null = null;

  constructor(
    /** The port's name in messages: `/dev/ttyUSB0 9600 8N1`, `i2c-1`. */
    readonly name: string,
    private readonly opts: PortQueueOptions,
  ) {}

  get isClosed(): boolean {
    return this.closed;
  }

  acquire(): void {
    this.users++;
    this.closed = false;
  }

  /** The last user's release closes the port. */
  async release(): Promise<void> {
    this.users = Math.max(0, this.users - 1);
    if (this.users === 0) await this.close();
  }

  /** Runs `job` at `user`'s turn (urgent: at the next slot, see the file comment). */
  run<T>(user: string, job: () => Promise<T>, opts: PortJobOptions = {}): Promise<T> {
    if (this.closed) return Promise.reject(this.opts.closedError(this.name));
    return new Promise<T>((resolve, reject) => {
      const entry: Job = { run: job, resolve: resolve as (v: unknown) => void, reject };
      if (opts.urgent) {
        this.urgent.push(entry);
      } else {
        let q = this.queues.get(user);
        if (!q) {
          q = [];
          this.queues.set(user, q);
        }
        q.push(entry);
        if (!this.turn.includes(user)) this.turn.push(user);
      }
      void this.drain();
    });
  }

  stats(): PortQueueStats {
    let queued = this.urgent.length;
    for (const q of this.queues.values()) queued += q.length;
    return { users: this.users, ...this.counters, queued, lastError: this.lastError };
  }

  /** Refuses waiting jobs, lets the running one finish, then closes the port. */
  async close(): Promise<void> {
    this.closed = true;
    for (const q of [this.urgent, ...this.queues.values()]) {
      for (const job of q.splice(0)) job.reject(this.opts.closedError(this.name));
    }
    this.queues.clear();
    this.turn.length = 0;
    if (this.busy) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await this.opts.onClose?.();
  }

  private next(): Job | undefined {
    if (this.urgent.length > 0 && !this.lastUrgent) return this.takeUrgent();
    this.lastUrgent = false;
    while (this.turn.length > 0) {
      const user = this.turn.shift()!;
      const q = this.queues.get(user);
      const job = q?.shift();
      if (q && q.length > 0) this.turn.push(user);
      else this.queues.delete(user); // users come and go (a CLI scan): keep no empty queues
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
        this.counters.jobs++;
        try {
          job.resolve(await job.run());
        } catch (err) {
          this.counters.failed++;
          this.lastError = err instanceof Error ? err.message : String(err);
          job.reject(err);
        }
        if (this.opts.gapMs) await sleep(this.opts.gapMs);
      }
    } finally {
      this.busy = false;
      for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
