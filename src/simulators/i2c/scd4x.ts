/**
 * A simulated Sensirion SCD40/SCD41 (SCD4x datasheet): 16-bit commands, arguments and replies
 * in CRC-protected words, periodic measurement with a new result every 5 s, the data-ready
 * flag, and the rules the real part enforces: while it executes a command it acknowledges
 * nothing (stop_periodic_measurement: 500 ms), read_measurement with no new data is not
 * acknowledged, and during periodic measurement only a few commands are accepted.
 */
import { crc8 } from "../../../drivers/i2c/sensirion-crc.js";
import { type Environment, SimSensirionChip, clampWord, sensirionTemperatureWord } from "./chip.js";

interface Command {
  name: string;
  /** Execution time, ms: the part acknowledges nothing meanwhile. */
  execMs: number;
  /** Argument words the command takes. */
  args?: number;
  /** Accepted during periodic measurement / when idle. */
  periodic: boolean;
  idle: boolean;
  scd41Only?: boolean;
}

// SCD4x datasheet, "Sensor commands" (codes, execution times, availability during periodic measurement).
const COMMANDS: Record<number, Command> = {
  0x21b1: { name: "start_periodic_measurement", execMs: 0, periodic: false, idle: true },
  0x21ac: { name: "start_low_power_periodic_measurement", execMs: 0, periodic: false, idle: true },
  0xec05: { name: "read_measurement", execMs: 1, periodic: true, idle: true },
  0x3f86: { name: "stop_periodic_measurement", execMs: 500, periodic: true, idle: true },
  0xe4b8: { name: "get_data_ready_status", execMs: 1, periodic: true, idle: true },
  0x241d: { name: "set_temperature_offset", execMs: 1, args: 1, periodic: false, idle: true },
  0x2318: { name: "get_temperature_offset", execMs: 1, periodic: false, idle: true },
  0x2427: { name: "set_sensor_altitude", execMs: 1, args: 1, periodic: false, idle: true },
  0x2322: { name: "get_sensor_altitude", execMs: 1, periodic: false, idle: true },
  // set_ambient_pressure (with an argument) and get_ambient_pressure share the code.
  0xe000: { name: "ambient_pressure", execMs: 1, periodic: true, idle: true },
  0x3615: { name: "persist_settings", execMs: 800, periodic: false, idle: true },
  0x3682: { name: "get_serial_number", execMs: 1, periodic: false, idle: true },
  0x3639: { name: "perform_self_test", execMs: 10_000, periodic: false, idle: true },
  0x3632: { name: "perform_factory_reset", execMs: 1200, periodic: false, idle: true },
  0x3646: { name: "reinit", execMs: 30, periodic: false, idle: true },
  0x219d: { name: "measure_single_shot", execMs: 5000, periodic: false, idle: true, scd41Only: true },
  0x2196: { name: "measure_single_shot_rht_only", execMs: 50, periodic: false, idle: true, scd41Only: true },
  0x36e0: { name: "power_down", execMs: 1, periodic: false, idle: true, scd41Only: true },
  0x36f6: { name: "wake_up", execMs: 30, periodic: false, idle: true, scd41Only: true },
};

const PERIOD_MS = 5000;
const LOW_POWER_PERIOD_MS = 30_000;
const POWER_UP_MS = 30;
/** get_data_ready_status: the part reports 0x8000 with no data and 0x8006 with data; only bits 0–10 count. */
const NOT_READY = 0x8000;
const READY = 0x8006;

type Mode = "idle" | "periodic" | "sleep";

export class SimScd4x extends SimSensirionChip {
  readonly model: string;
  co2 = 600;
  temperature = 23;
  humidity = 45;
  serial = 0x1234_5678_9abc;
  private mode: Mode = "idle";
  private period = PERIOD_MS;
  private periodicSince = 0;
  /** Index of the last periodic result handed out (results are numbered from 1). */
  private consumed = 0;
  /** A single-shot result waiting to be read. */
  private singleShotReadyAt: number | null = null;
  private temperatureOffsetWord = 0x0912; // 4 °C, the factory default
  private altitude = 0;
  private ambientPressure = 1013; // hPa

  constructor(
    address: number,
    clock: ConstructorParameters<typeof SimSensirionChip>[1],
    readonly variant: "scd40" | "scd41" = "scd41",
  ) {
    super(address, clock);
    this.model = variant === "scd41" ? "SCD41" : "SCD40";
  }

  set(values: Partial<Environment>): void {
    if (values.co2 !== undefined) this.co2 = values.co2;
    if (values.temperature !== undefined) this.temperature = values.temperature;
    if (values.humidity !== undefined) this.humidity = values.humidity;
  }

  get isMeasuring(): boolean {
    return this.mode === "periodic";
  }


  protected powerOn(): void {
    // Periodic measurement is forgotten: the part starts idle.
    this.mode = "idle";
    this.consumed = 0;
    this.singleShotReadyAt = null;
    this.pending = null;
    this.busyUntil = this.now() + POWER_UP_MS;
  }

  private dataReady(): boolean {
    if (this.fault === "never-ready") return false;
    const now = this.now();
    if (this.mode === "periodic") return Math.floor((now - this.periodicSince) / this.period) > this.consumed;
    return this.singleShotReadyAt !== null && now >= this.singleShotReadyAt;
  }

  private measurementWords(): number[] {
    return [
      Math.max(0, Math.min(0xffff, Math.round(this.co2))),
      sensirionTemperatureWord(this.temperature),
      clampWord(Math.round((this.humidity / 100) * 65535)),
    ];
  }

  protected onWrite(bytes: number[]): boolean {
    if (this.mode === "sleep") {
      // wake_up is not acknowledged, but it wakes the part.
      if (bytes.length === 2 && ((bytes[0]! << 8) | bytes[1]!) === 0x36f6) {
        this.mode = "idle";
        this.busyUntil = this.now() + COMMANDS[0x36f6]!.execMs;
      }
      return false;
    }
    if (this.busy() || bytes.length < 2) return false;
    const code = (bytes[0]! << 8) | bytes[1]!;
    const cmd = COMMANDS[code];
    if (!cmd) return false;
    if (cmd.scd41Only && this.variant !== "scd41") return false;
    if (this.mode === "periodic" ? !cmd.periodic : !cmd.idle) return false;
    const args = parseArgs(bytes.slice(2));
    if (args === null) return false; // an argument's CRC did not match
    if (args.length !== (cmd.args ?? (code === 0xe000 ? args.length : 0)) || args.length > 1) return false;
    const now = this.now();
    this.pending = null;
    this.busyUntil = now + cmd.execMs;
    switch (cmd.name) {
      case "start_periodic_measurement":
      case "start_low_power_periodic_measurement":
        this.mode = "periodic";
        this.period = cmd.name === "start_periodic_measurement" ? PERIOD_MS : LOW_POWER_PERIOD_MS;
        this.periodicSince = now;
        this.consumed = 0;
        break;
      case "stop_periodic_measurement":
        this.mode = "idle";
        break;
      case "read_measurement":
        if (!this.dataReady()) {
          this.busyUntil = now;
          return false; // no new data: not acknowledged
        }
        if (this.mode === "periodic") this.consumed = Math.floor((now - this.periodicSince) / this.period);
        else this.singleShotReadyAt = null;
        this.pending = this.words(this.measurementWords());
        break;
      case "get_data_ready_status":
        this.pending = this.words([this.dataReady() ? READY : NOT_READY]);
        break;
      case "set_temperature_offset":
        this.temperatureOffsetWord = args[0]!;
        break;
      case "get_temperature_offset":
        this.pending = this.words([this.temperatureOffsetWord]);
        break;
      case "set_sensor_altitude":
        this.altitude = args[0]!;
        break;
      case "get_sensor_altitude":
        this.pending = this.words([this.altitude]);
        break;
      case "ambient_pressure":
        if (args.length === 1) this.ambientPressure = args[0]!;
        else this.pending = this.words([this.ambientPressure]);
        break;
      case "get_serial_number":
        this.pending = this.words([Math.floor(this.serial / 2 ** 32) & 0xffff, Math.floor(this.serial / 65536) & 0xffff, this.serial & 0xffff]);
        break;
      case "perform_self_test":
        this.pending = this.words([0]); // 0: no malfunction
        break;
      case "perform_factory_reset":
      case "reinit":
        this.temperatureOffsetWord = 0x0912;
        this.altitude = 0;
        break;
      case "measure_single_shot":
        this.singleShotReadyAt = now + cmd.execMs;
        break;
      case "measure_single_shot_rht_only":
        this.singleShotReadyAt = now + cmd.execMs;
        break;
      case "power_down":
        this.mode = "sleep";
        break;
    }
    return true;
  }

  protected override onRead(): Buffer | null {
    return this.mode === "sleep" ? null : super.onRead();
  }
}

/** Argument words (MSB, LSB, CRC each); null when a CRC does not match or a word is cut short. */
function parseArgs(bytes: number[]): number[] | null {
  if (bytes.length % 3 !== 0) return null;
  const words: number[] = [];
  for (let i = 0; i < bytes.length; i += 3) {
    if (crc8([bytes[i]!, bytes[i + 1]!]) !== bytes[i + 2]) return null;
    words.push((bytes[i]! << 8) | bytes[i + 1]!);
  }
  return words;
}
