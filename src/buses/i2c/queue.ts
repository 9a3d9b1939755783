/**
 * One queue per physical I²C bus: the bus and its PortQueue. Jobs run one at a time, so a
 * driver's command–wait–read sequence is never split by another driver's transfer; sensors
 * (by address) take turns. Several sources on the same bus number share one queue through the
 * agent's PortRegistry (I2cBusPool).
 */
import { PortQueue } from "../port-queue.js";
import { i2cPortId, PortRegistry } from "../ports.js";
import { hex, type I2cBus, type I2cDevice, I2cError, transferFor } from "./bus.js";

export interface I2cQueueStats {
  jobs: number;
  failed: number;
  queued: number;
  lastError: string | null;
}

/** The user name of jobs not run for one device (a scan). */
const WHOLE_BUS = "bus";

export class I2cQueue {
  private readonly queue: PortQueue;

  constructor(readonly bus: I2cBus) {
    this.queue = new PortQueue(bus.name, {
      closedError: (name) => new I2cError("io", `bus ${name} is closed`, name),
      onClose: () => bus.close(),
    });
  }

  get name(): string {
    return this.bus.name;
  }

  /** Sources acquire the bus when they start and release it when they stop; the last one closes it. */
  acquire(): void {
    this.queue.acquire();
  }

  release(): Promise<void> {
    return this.queue.release();
  }

  run<T>(job: (bus: I2cBus) => Promise<T>, user = WHOLE_BUS): Promise<T> {
    return this.queue.run(user, () => job(this.bus));
  }

  device(address: number): I2cDevice {
    const io = transferFor(this.bus, address); // one per device, not one per job
    const user = hex(address);
    return {
      bus: this.bus.name,
      address,
      run: (job) => this.run(() => job(io), user),
      delay: (ms) => this.bus.delay(ms),
    };
  }

  stats(): I2cQueueStats {
    const { jobs, failed, queued, lastError } = this.queue.stats();
    return { jobs, failed, queued, lastError };
  }

  close(): Promise<void> {
    return this.queue.close();
  }
}

/**
 * The I²C buses of one agent, by key (`i2c-1` for a real bus), on the agent's PortRegistry:
 * createSources makes one pool, so two sources on bus 1 share a queue.
 */
export class I2cBusPool {
  constructor(private readonly ports = new PortRegistry()) {}

  get(key: string, open: () => I2cBus): I2cQueue {
    const bus = /^i2c-(\d+)$/.exec(key);
    const id = bus ? i2cPortId(Number(bus[1])) : `i2c:${key}`; // a simulated bus has a name of its own
    return this.ports.claim(id, { kind: "i2c", owner: "the i2c sources" }, () => new I2cQueue(open()));
  }
}
