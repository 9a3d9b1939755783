/**
 * GPIO behind a small interface, so the control logic never sees how pins are reached: sysfs
 * through onoff today (deprecated upstream, pitfalls.md), a libgpiod backend tomorrow, and a
 * simulated backend for tests and the demo. Pins are named by their BCM number everywhere.
 *
 * Values are logical: with activeLow, a low pin reads 1.
 */
export type Level = 0 | 1;
export type Edge = "rising" | "falling" | "both";

export interface InputOptions {
  /** Which changes reach the watchers (after debounce). */
  edge: Edge;
  /** A change counts once the level has held this long, ms (0 = every change). */
  debounceMs: number;
  activeLow: boolean;
}

export interface OutputOptions {
  /** The value the pin takes the moment it becomes an output: the actuator's safe state. */
  initial: Level;
  activeLow: boolean;
}

export interface GpioInput {
  readonly pin: number;
  read(): Promise<Level>;
  /** Called on every debounced edge of the chosen kind, with the time the level changed. */
  watch(callback: (value: Level, ts: number) => void): void;
  release(): Promise<void>;
}

export interface GpioOutput {
  readonly pin: number;
  write(value: Level): Promise<void>;
  /** What the pin holds (read back from the pin, not remembered). */
  read(): Promise<Level>;
  release(): Promise<void>;
}

/** What `edge-agent gpio read` shows. */
export interface PinInfo {
  /** BCM number. */
  pin: number;
  /** The kernel's sysfs number for it (base + BCM). */
  sysfs: number;
  chip: string;
  base: number;
  /** The value file's content (logical when active_low is set). */
  value: Level;
  direction: "in" | "out";
  activeLow: boolean;
}

export interface GpioBackend {
  readonly name: string;
  input(pin: number, opts: InputOptions): Promise<GpioInput>;
  output(pin: number, opts: OutputOptions): Promise<GpioOutput>;
  /** Reads a pin without changing its direction (an output stays an output). */
  inspect(pin: number): Promise<PinInfo>;
}

export type GpioErrorKind = "absent" | "permission" | "no-chip" | "bad-pin" | "busy" | "io";

export class GpioError extends Error {
  constructor(
    readonly kind: GpioErrorKind,
    message: string,
    /** BCM number. */
    readonly pin: number,
  ) {
    super(message);
    this.name = "GpioError";
  }
}
