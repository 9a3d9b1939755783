/**
 * The simulated implementation of I2cBus: transfers go to in-process chip models by address;
 * an address with no chip, or a chip that is absent or busy, does not acknowledge — the same
 * I2cError the real bus raises. A bus can also be "missing" or "not permitted", to exercise
 * those paths without a kernel.
 *
 * The bus knows no chip: it talks to I2cTargets, which the chip models in src/simulators/i2c/
 * implement.
 */
import { busMissingError, busName, type I2cBus, nackError, permissionError, SCAN_FIRST, SCAN_LAST } from "./bus.js";
import type { SimClock } from "./clock.js";

/** A device at one address, as the wire sees it: it acknowledges or not, takes bytes, gives bytes. */
export interface I2cTarget {
  readonly address: number;
  /** Does it acknowledge its address right now (a scan's quick write)? */
  acknowledges(): boolean;
  /** A write transaction; false is a NACK. */
  write(bytes: Uint8Array): boolean;
  /** A read transaction of `length` bytes; null is a NACK. */
  read(length: number): Buffer | null;
}

const LOG_LIMIT = 10_000;

export interface SimI2cBusOptions {
  /** Every transfer fails as on a machine without this bus. */
  missing?: string | boolean;
  /** Every transfer fails with "no permission". */
  forbidden?: boolean;
  /** Called with the clock's time before each transfer (moving values for the demo). */
  onAccess?: (now: number) => void;
}

export class SimI2cBus implements I2cBus {
  readonly name: string;
  private readonly chips = new Map<number, I2cTarget>();
  /** The latest transfers as a bus analyser would show them (acknowledged or not), for tests. */
  readonly log: Array<{ op: "write" | "read"; address: number; bytes: number[]; ack: boolean; at: number }> = [];
  closed = false;

  constructor(
    bus: number | string,
    readonly clock: SimClock,
    private readonly opts: SimI2cBusOptions = {},
  ) {
    this.name = typeof bus === "number" ? busName(bus) : bus;
  }

  attach(...chips: I2cTarget[]): this {
    for (const chip of chips) this.chips.set(chip.address, chip);
    return this;
  }

  chip<T extends I2cTarget = I2cTarget>(address: number): T | undefined {
    return this.chips.get(address) as T | undefined;
  }

  private check(): void {
    if (this.opts.missing) {
      throw busMissingError(this.name, typeof this.opts.missing === "string" ? this.opts.missing : undefined);
    }
    if (this.opts.forbidden) {
      throw permissionError(this.name, `/dev/${this.name}`);
    }
    this.opts.onAccess?.(this.clock.now());
  }

  async write(address: number, bytes: Uint8Array): Promise<void> {
    this.check();
    const ack = this.chips.get(address)?.write(bytes) ?? false;
    this.record({ op: "write", address, bytes: [...bytes], ack, at: this.clock.now() });
    if (!ack) throw nackError(this.name, address);
  }

  async read(address: number, length: number): Promise<Buffer> {
    this.check();
    const data = this.chips.get(address)?.read(length) ?? null;
    this.record({ op: "read", address, bytes: data ? [...data] : [], ack: data !== null, at: this.clock.now() });
    if (!data) throw nackError(this.name, address);
    return data;
  }

  /** A demo runs for days: the log keeps the latest transfers only. */
  private record(entry: SimI2cBus["log"][number]): void {
    if (this.log.length >= LOG_LIMIT) this.log.splice(0, this.log.length - LOG_LIMIT + 1);
    this.log.push(entry);
  }

  async scan(): Promise<number[]> {
    this.check();
    const found: number[] = [];
    for (let a = SCAN_FIRST; a <= SCAN_LAST; a++) if (this.chips.get(a)?.acknowledges()) found.push(a);
    return found;
  }

  delay(ms: number): Promise<void> {
    return this.clock.sleep(ms);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
