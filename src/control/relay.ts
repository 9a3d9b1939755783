/**
 * A switched output: a Modbus coil (EPEVER load output, a relay module) or a GPIO pin. Setting
 * it resolves only once the new state was read back, so a controller never believes a charger
 * is off when the relay did not move.
 */
import type { GpioBackend, GpioOutput } from "../buses/gpio/gpio.js";
import type { PointWriter } from "../model/writer.js";

export interface Relay {
  /** What it drives, for messages: `charger-relays coil relay_1`, `GPIO 22`. */
  readonly describe: string;
  /**
   * Switches and verifies; throws when the device refused or the read-back differs.
   * `evenIfOffline`: try even a device its circuit breaker has backed off (the last off at stop).
   */
  set(on: boolean, opts?: { evenIfOffline?: boolean }): Promise<void>;
}

export class ModbusCoilRelay implements Relay {
  readonly describe: string;

  constructor(
    private readonly device: PointWriter,
    private readonly point: string,
  ) {
    this.describe = `${device.name} ${point}`;
  }

  async set(on: boolean, opts: { evenIfOffline?: boolean } = {}): Promise<void> {
    const r = await this.device.writePoint(this.point, on, opts);
    if (r.readBack !== on) throw new Error(`${this.describe}: read back ${String(r.readBack)} after writing ${String(on)}`);
  }
}

/** A relay in memory, for tests and the demo; it can be told to fail like a dead bus. */
export class SimRelay implements Relay {
  on = false;
  broken = false;
  writes = 0;
  constructor(readonly describe = "simulated relay") {}

  async set(on: boolean): Promise<void> {
    this.writes++;
    if (this.broken) throw new Error(`${this.describe}: no answer (timeout)`);
    this.on = on;
  }
}

/** A relay on a GPIO output; opened on first use with the pin already at its safe level (off). */
export class GpioRelay implements Relay {
  readonly describe: string;
  private output: Promise<GpioOutput> | null = null;

  constructor(
    private readonly backend: GpioBackend,
    private readonly pin: number,
    private readonly activeLow: boolean,
  ) {
    this.describe = `GPIO ${pin}`;
  }

  async set(on: boolean): Promise<void> {
    this.output ??= this.backend.output(this.pin, { initial: 0, activeLow: this.activeLow });
    let out: GpioOutput;
    try {
      out = await this.output;
    } catch (err) {
      this.output = null;
      throw err;
    }
    await out.write(on ? 1 : 0);
    const back = await out.read();
    if (back !== (on ? 1 : 0)) throw new Error(`${this.describe}: reads ${back} after writing ${on ? 1 : 0}`);
  }
}
