/**
 * The simulated GPIO backend: pins are levels in memory that a test (or a device model from
 * src/simulators/gpio/, such as the demo's PIR) sets; inputs see the changes through the same
 * EdgeFilter as real pins, outputs hold what was written. Numbering is a Raspberry Pi 4 on
 * Bookworm: BCM n is sysfs 512 + n.
 */
import { EdgeFilter } from "./debounce.js";
import { type GpioBackend, GpioError, type GpioInput, type GpioOutput, type InputOptions, type Level, type OutputOptions, type PinInfo } from "./gpio.js";

const PINS = 54;

interface PinState {
  level: Level;
  direction: "in" | "out";
  activeLow: boolean;
  owner: "input" | "output" | null;
  filters: Set<EdgeFilter>;
}

export class SimGpioBackend implements GpioBackend {
  readonly name = "simulated";
  private readonly pins = new Map<number, PinState>();

  constructor(private readonly opts: { base?: number; label?: string; now?: () => number } = {}) {}

  private state(pin: number): PinState {
    if (!Number.isInteger(pin) || pin < 0 || pin >= PINS) throw new GpioError("bad-pin", `GPIO ${pin}: pinctrl-bcm2711 has BCM GPIOs 0–${PINS - 1}`, pin);
    let s = this.pins.get(pin);
    if (!s) {
      // Power-on pulls of the Pi: GPIO 0–8 pulled up, the rest down.
      s = { level: pin <= 8 ? 1 : 0, direction: "in", activeLow: false, owner: null, filters: new Set() };
      this.pins.set(pin, s);
    }
    return s;
  }

  /** Drives an input pin from outside (a PIR output, a contact), raw level. */
  setLevel(pin: number, level: Level): void {
    const s = this.state(pin);
    if (s.direction === "out") return; // an output is driven by us, not from outside
    s.level = level;
    for (const f of s.filters) f.input((level ^ (s.activeLow ? 1 : 0)) as Level);
  }

  /** The raw level on a pin. */
  level(pin: number): Level {
    return this.state(pin).level;
  }

  async input(pin: number, opts: InputOptions): Promise<GpioInput> {
    const s = this.state(pin);
    if (s.owner) throw new GpioError("busy", `GPIO ${pin} (sysfs ${this.sysfs(pin)}): already in use as an ${s.owner}`, pin);
    s.owner = "input";
    s.direction = "in";
    s.activeLow = opts.activeLow;
    const logical = () => (s.level ^ (s.activeLow ? 1 : 0)) as Level;
    const watchers: Array<(value: Level, ts: number) => void> = [];
    const filter = new EdgeFilter({
      edge: opts.edge,
      debounceMs: opts.debounceMs,
      initial: logical(),
      onEdge: (v, ts) => watchers.forEach((w) => w(v, ts)),
      ...(this.opts.now ? { now: this.opts.now } : {}),
    });
    s.filters.add(filter);
    return {
      pin,
      read: async () => logical(),
      watch: (cb) => void watchers.push(cb),
      release: async () => {
        filter.stop();
        s.filters.delete(filter);
        s.owner = null;
      },
    };
  }

  async output(pin: number, opts: OutputOptions): Promise<GpioOutput> {
    const s = this.state(pin);
    if (s.owner) throw new GpioError("busy", `GPIO ${pin} (sysfs ${this.sysfs(pin)}): already in use as an ${s.owner}`, pin);
    s.owner = "output";
    s.direction = "out";
    s.activeLow = opts.activeLow;
    const raw = (v: Level) => (v ^ (opts.activeLow ? 1 : 0)) as Level;
    s.level = raw(opts.initial);
    return {
      pin,
      write: async (v) => {
        s.level = raw(v);
      },
      read: async () => raw(s.level),
      release: async () => {
        s.owner = null;
      },
    };
  }

  private sysfs(pin: number): number {
    return (this.opts.base ?? 512) + pin;
  }

  async inspect(pin: number): Promise<PinInfo> {
    const s = this.state(pin);
    const base = this.opts.base ?? 512;
    return {
      pin,
      sysfs: base + pin,
      chip: `gpiochip${base} (${this.opts.label ?? "pinctrl-bcm2711"})`,
      base,
      value: (s.level ^ (s.activeLow ? 1 : 0)) as Level,
      direction: s.direction,
      activeLow: s.activeLow,
    };
  }
}
