/**
 * The I²C bus as drivers see it: raw transfers to a 7-bit address, a scan, and a clock to wait
 * on. A bus never knows a device; a driver is handed an I2cDevice (one address on one queued
 * bus) and never opens anything itself.
 *
 * Failures are I2cErrors of a kind a technician can act on. Checking a reply's CRC is not the
 * bus's job: a Sensirion CRC mismatch is the driver's finding.
 */

export type I2cErrorKind = "nack" | "bus-missing" | "permission" | "io";

export class I2cError extends Error {
  constructor(
    readonly kind: I2cErrorKind,
    message: string,
    /** `i2c-1` */
    readonly bus: string,
    readonly address?: number,
  ) {
    super(message);
    this.name = "I2cError";
  }
}

/** `0x44` */
export function hex(address: number): string {
  return `0x${address.toString(16).padStart(2, "0")}`;
}

/** `i2c-1` */
export function busName(bus: number): string {
  return `i2c-${bus}`;
}

export function nackError(bus: string, address: number): I2cError {
  return new I2cError("nack", `${bus} ${hex(address)}: no acknowledge (sensor absent or busy?)`, bus, address);
}

export function busMissingError(bus: string, hint = "enable I²C: raspi-config, dtparam=i2c_arm=on"): I2cError {
  return new I2cError("bus-missing", `bus ${bus} does not exist (${hint})`, bus);
}

export function permissionError(bus: string, device: string): I2cError {
  return new I2cError("permission", `no permission on ${device} (add the user to the i2c group)`, bus);
}

/**
 * Waits at least `ms` of real time. A bare setTimeout can fire a fraction of a millisecond
 * early (libuv measures from the start of the loop iteration), and a chip read that early does
 * not acknowledge: measured here, 12 of 2000 one-millisecond timeouts were short.
 */
export async function sleepAtLeast(ms: number): Promise<void> {
  const end = performance.now() + ms;
  for (let left = ms; left > 0; left = end - performance.now()) {
    await new Promise((resolve) => setTimeout(resolve, Math.ceil(left)));
  }
}

/** First and last address a scan tries, as i2cdetect does (the rest are reserved). */
export const SCAN_FIRST = 0x03;
export const SCAN_LAST = 0x77;

/** One physical bus. Implementations: NodeI2cBus (i2c-bus, /dev/i2c-N) and SimI2cBus. */
export interface I2cBus {
  /** `i2c-1` */
  readonly name: string;
  /** One write transaction: START, address+W, the bytes, STOP. */
  write(address: number, bytes: Uint8Array): Promise<void>;
  /** One read transaction of `length` bytes. */
  read(address: number, length: number): Promise<Buffer>;
  /** The addresses in 0x03–0x77 that acknowledge their address. */
  scan(): Promise<number[]>;
  /** Waits on the bus's clock: real time on a real bus, the simulated clock on a simulated one. */
  delay(ms: number): Promise<void>;
  close(): Promise<void>;
}

/** What a driver's job sees: the bus, bound to its device's address. */
export interface I2cTransfer {
  write(bytes: readonly number[] | Uint8Array): Promise<void>;
  read(length: number): Promise<Buffer>;
  /** A write (a command or a register pointer) followed by a read, e.g. a register read. */
  writeRead(bytes: readonly number[] | Uint8Array, length: number, waitMs?: number): Promise<Buffer>;
  delay(ms: number): Promise<void>;
}

/**
 * One device on a queued bus. `run` is one job on the bus's queue: a command, its wait and the
 * read of its result happen with no other driver's transfer in between.
 */
export interface I2cDevice {
  readonly bus: string;
  readonly address: number;
  run<T>(job: (io: I2cTransfer) => Promise<T>): Promise<T>;
  /** Waits without holding the bus (a long command execution time, e.g. SCD4x stop: 500 ms). */
  delay(ms: number): Promise<void>;
}

export function transferFor(bus: I2cBus, address: number): I2cTransfer {
  return {
    write: (bytes) => bus.write(address, Uint8Array.from(bytes)),
    read: (length) => bus.read(address, length),
    writeRead: async (bytes, length, waitMs = 0) => {
      await bus.write(address, Uint8Array.from(bytes));
      if (waitMs > 0) await bus.delay(waitMs);
      return bus.read(address, length);
    },
    delay: (ms) => bus.delay(ms),
  };
}
