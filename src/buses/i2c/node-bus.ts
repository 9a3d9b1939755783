/**
 * The real I²C bus: /dev/i2c-N through i2c-bus (promise API). Opened on demand and again after
 * the adapter went away, so a bus that is missing at start (I²C not enabled yet, a USB adapter
 * unplugged) costs nothing until it appears. i2c-bus itself only opens the device file at the
 * first transfer, so the file is checked first: a missing bus or a missing permission is named
 * before any driver sees a confusing error.
 */
import { constants } from "node:fs";
import { access as fsAccess } from "node:fs/promises";
import type { PromisifiedBus } from "i2c-bus";
import {
  busMissingError,
  busName,
  hex,
  type I2cBus,
  I2cError,
  nackError,
  permissionError,
  SCAN_FIRST,
  SCAN_LAST,
  sleepAtLeast,
} from "./bus.js";

export interface NodeI2cBusOptions {
  /** Where the bus device files live; a test points it elsewhere. Default /dev. */
  devDir?: string;
  /** Checks read/write access to a path (injectable: tests run as root, where every check passes). */
  access?: (path: string) => Promise<void>;
  /** Loads i2c-bus (injectable for tests; loaded lazily so simulated buses never need the native module). */
  load?: () => Promise<{ openPromisified: (bus: number) => Promise<PromisifiedBus> }>;
}

type ErrnoLike = Error & { code?: string; errno?: number };

export class NodeI2cBus implements I2cBus {
  readonly name: string;
  readonly devicePath: string;
  private bus: PromisifiedBus | null = null;
  private opening: Promise<PromisifiedBus> | null = null;

  constructor(
    readonly number: number,
    private readonly opts: NodeI2cBusOptions = {},
  ) {
    this.name = busName(number);
    this.devicePath = `${opts.devDir ?? "/dev"}/i2c-${number}`;
  }

  private async load() {
    if (this.opts.load) return this.opts.load();
    return import("i2c-bus");
  }

  /** Checks the device file, then opens the bus (once; concurrent callers share the attempt). */
  async open(): Promise<PromisifiedBus> {
    if (this.bus) return this.bus;
    this.opening ??= (async () => {
      try {
        await this.checkAccess();
        const mod = await this.load();
        this.bus = await mod.openPromisified(this.number);
        return this.bus;
      } finally {
        this.opening = null;
      }
    })();
    return this.opening;
  }

  private async checkAccess(): Promise<void> {
    const check = this.opts.access ?? ((p: string) => fsAccess(p, constants.R_OK | constants.W_OK));
    try {
      await check(this.devicePath);
    } catch (err) {
      throw this.classify(err as ErrnoLike);
    }
  }

  async write(address: number, bytes: Uint8Array): Promise<void> {
    const bus = await this.open();
    try {
      const buf = Buffer.from(bytes);
      await bus.i2cWrite(address, buf.length, buf);
    } catch (err) {
      throw this.classify(err as ErrnoLike, address);
    }
  }

  async read(address: number, length: number): Promise<Buffer> {
    const bus = await this.open();
    let got: { bytesRead: number; buffer: Buffer };
    try {
      got = await bus.i2cRead(address, length, Buffer.alloc(length));
    } catch (err) {
      throw this.classify(err as ErrnoLike, address);
    }
    if (got.bytesRead !== length) {
      throw new I2cError("io", `${this.name} ${hex(address)}: short read (${got.bytesRead} of ${length} bytes)`, this.name, address);
    }
    return got.buffer;
  }

  /**
   * Like i2cdetect's default mode: an SMBus quick write, except a one-byte read at 0x30–0x37
   * and 0x50–0x5F, where a quick write can flip an EEPROM's write protection. A read alone
   * would miss Sensirion sensors, which do not acknowledge a read with no measurement pending.
   * A separate handle is used and closed, so the scan leaves no device file open per address.
   */
  async scan(): Promise<number[]> {
    await this.checkAccess();
    const mod = await this.load();
    const scanBus = await mod.openPromisified(this.number);
    const found: number[] = [];
    try {
      for (let a = SCAN_FIRST; a <= SCAN_LAST; a++) {
        const readInstead = (a >= 0x30 && a <= 0x37) || (a >= 0x50 && a <= 0x5f);
        try {
          if (readInstead) await scanBus.receiveByte(a);
          else await scanBus.writeQuick(a, 0);
          found.push(a);
        } catch (err) {
          const e = this.classify(err as ErrnoLike, a);
          if (e.kind === "bus-missing" || e.kind === "permission") throw e;
        }
      }
    } finally {
      await scanBus.close().catch(() => {});
    }
    return found;
  }

  delay(ms: number): Promise<void> {
    return sleepAtLeast(ms);
  }

  async close(): Promise<void> {
    const bus = this.bus;
    this.bus = null;
    await bus?.close().catch(() => {});
  }

  /** errno → an I2cError a technician can act on. */
  classify(err: ErrnoLike, address?: number): I2cError {
    if (err instanceof I2cError) return err;
    const code = err.code ?? "";
    const at = address === undefined ? this.name : `${this.name} ${hex(address)}`;
    switch (code) {
      case "ENOENT":
      case "ENODEV":
        // The adapter went away (or never was): check the file again before the next transfer.
        void this.close();
        return busMissingError(this.name);
      case "EACCES":
      case "EPERM":
        void this.close();
        return permissionError(this.name, this.devicePath);
      // bcm2835 reports a NACK as EREMOTEIO; bit-banged and other adapters as ENXIO.
      case "EREMOTEIO":
      case "ENXIO":
        return address === undefined ? new I2cError("nack", `${at}: no acknowledge`, this.name) : nackError(this.name, address);
      case "EBUSY":
        return new I2cError("io", `${at}: address in use by a kernel driver (i2cdetect shows UU)`, this.name, address);
      case "ETIMEDOUT":
        return new I2cError("io", `${at}: bus timeout (SDA or SCL held low? check wiring and pull-ups)`, this.name, address);
      case "EIO":
        return new I2cError("io", `${at}: i/o error (EIO; some adapters report a missing acknowledge this way)`, this.name, address);
      default:
        return new I2cError("io", `${at}: ${err.message}`, this.name, address);
    }
  }
}
