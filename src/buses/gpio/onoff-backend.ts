/**
 * GPIO through sysfs with onoff 6 (the only backend today; unmaintained, sysfs is deprecated
 * upstream: pitfalls.md). BCM numbers are translated to the kernel's sysfs numbers first; the
 * debounce is ours (EdgeFilter), so onoff reports every edge of both kinds.
 */
import type { Gpio as OnoffGpio } from "onoff";
import { EdgeFilter } from "./debounce.js";
import type { GpioBackend, GpioInput, GpioOutput, InputOptions, Level, OutputOptions, PinInfo } from "./gpio.js";
import { checkExportAccess, gpioError, inspectPin, resolvePin, type SysfsOptions, type SysfsPin } from "./sysfs.js";

type OnoffModule = { Gpio: typeof OnoffGpio };

export class OnoffGpioBackend implements GpioBackend {
  readonly name = "sysfs (onoff)";

  constructor(private readonly opts: SysfsOptions & { load?: () => Promise<OnoffModule> } = {}) {}

  private async prepare(pin: number): Promise<{ p: SysfsPin; Gpio: typeof OnoffGpio }> {
    const p = await resolvePin(pin, this.opts);
    await checkExportAccess(p, this.opts);
    const mod = this.opts.load ? await this.opts.load() : await import("onoff");
    return { p, Gpio: mod.Gpio };
  }

  async input(pin: number, opts: InputOptions): Promise<GpioInput> {
    const { p, Gpio } = await this.prepare(pin);
    let gpio: OnoffGpio;
    try {
      gpio = new Gpio(p.sysfs, "in", "both", { activeLow: opts.activeLow });
    } catch (err) {
      throw gpioError(p, err);
    }
    const watchers: Array<(value: Level, ts: number) => void> = [];
    const filter = new EdgeFilter({
      edge: opts.edge,
      debounceMs: opts.debounceMs,
      initial: gpio.readSync(),
      onEdge: (v, ts) => watchers.forEach((w) => w(v, ts)),
    });
    gpio.watch((err, value) => {
      // A failed read of the value file is reported by the next read(); the edge is dropped.
      if (!err) filter.input(value);
    });
    return {
      pin,
      read: async () => {
        try {
          return await gpio.read();
        } catch (err) {
          throw gpioError(p, err);
        }
      },
      watch: (cb) => void watchers.push(cb),
      release: async () => {
        filter.stop();
        gpio.unwatchAll();
        gpio.unexport();
      },
    };
  }

  async output(pin: number, opts: OutputOptions): Promise<GpioOutput> {
    const { p, Gpio } = await this.prepare(pin);
    // "high"/"low" make the pin an output at that level in one step, with no glitch through
    // the other value. They set the raw level (active_low does not apply), hence the inversion.
    const raw = opts.activeLow ? 1 - opts.initial : opts.initial;
    let gpio: OnoffGpio;
    try {
      gpio = new Gpio(p.sysfs, raw ? "high" : "low", "none", { activeLow: opts.activeLow });
    } catch (err) {
      throw gpioError(p, err);
    }
    return {
      pin,
      write: async (value) => {
        try {
          await gpio.write(value);
        } catch (err) {
          throw gpioError(p, err);
        }
      },
      read: async () => {
        try {
          return await gpio.read();
        } catch (err) {
          throw gpioError(p, err);
        }
      },
      // The pin keeps its last level after unexport: callers write the safe state first.
      release: async () => gpio.unexport(),
    };
  }

  async inspect(pin: number): Promise<PinInfo> {
    const r = await inspectPin(pin, this.opts);
    const p = r.sysfsPin;
    return { pin, sysfs: p.sysfs, chip: `${p.chip.name} (${p.chip.label})`, base: p.chip.base, value: r.value, direction: r.direction, activeLow: r.activeLow };
  }
}
