/**
 * One queue per physical I²C bus (like ModbusLine for a serial line): jobs run one at a time,
 * in the order they were queued, so a driver's command–wait–read sequence is never split by
 * another driver's transfer. Several sources on the same bus number share one queue.
 */
import { type I2cBus, type I2cDevice, I2cError, transferFor } from "./bus.js";

export interface I2cQueueStats {
  jobs: number;
  failed: number;
  queued: number;
  lastError: string | null;
}

export class I2cQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private users = 0;
  private closed = false;
  private readonly stats_ = { jobs: 0, failed: 0, queued: 0, lastError: null as string | null };

  constructor(readonly bus: I2cBus) {}

  get name(): string {
    return this.bus.name;
  }

  /** Sources acquire the bus when they start and release it when they stop; the last one closes it. */
  acquire(): void {
    this.users++;
    this.closed = false;
  }

  async release(): Promise<void> {
    this.users = Math.max(0, this.users - 1);
    if (this.users === 0) await this.close();
  }

  run<T>(job: (bus: I2cBus) => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new I2cError("io", `bus ${this.bus.name} is closed`, this.bus.name));
    this.stats_.queued++;
    const result = this.tail.then(async () => {
      this.stats_.queued--;
      this.stats_.jobs++;
      try {
        return await job(this.bus);
      } catch (err) {
        this.stats_.failed++;
        this.stats_.lastError = err instanceof Error ? err.message : String(err);
        throw err;
      }
    });
    this.tail = result.catch(() => {});
    return result;
  }

  device(address: number): I2cDevice {
    const io = transferFor(this.bus, address); // one per device, not one per job
    return {
      bus: this.bus.name,
      address,
      run: (job) => this.run(() => job(io)),
      delay: (ms) => this.bus.delay(ms),
    };
  }

  stats(): I2cQueueStats {
    return { ...this.stats_ };
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.tail;
    await this.bus.close();
  }
}

/**
 * The queues of one agent, by key: `i2c-1` for a real bus, anything else for simulated ones.
 * createSources makes one pool, so two sources on bus 1 share a queue.
 */
export class I2cBusPool {
  private readonly queues = new Map<string, I2cQueue>();

  get(key: string, open: () => I2cBus): I2cQueue {
    let q = this.queues.get(key);
    if (!q) {
      q = new I2cQueue(open());
      this.queues.set(key, q);
    }
    return q;
  }
}
