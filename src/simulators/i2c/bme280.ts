/**
 * A simulated Bosch BME280 (datasheet BST-BME280-DS002): the register map (chip id, soft
 * reset, ctrl_hum/status/ctrl_meas/config, calibration at 0x88… and 0xE1…, data at 0xF7…),
 * register writes as address/value pairs, burst reads with auto-increment, forced and normal
 * mode with the datasheet's measurement time, the status bits `measuring` and `im_update`.
 *
 * The ADC values in the data registers are found from the physical values by searching the
 * datasheet's floating-point compensation (section 8.1), which is independent of the integer
 * compensation the driver uses: a driver bug cannot cancel out against the simulator.
 */
import { type Environment, SimChip } from "./chip.js";

export interface Bme280Calibration {
  T1: number; T2: number; T3: number;
  P1: number; P2: number; P3: number; P4: number; P5: number; P6: number; P7: number; P8: number; P9: number;
  H1: number; H2: number; H3: number; H4: number; H5: number; H6: number;
}

/** The calibration of the reference vector (pimoroni/bme280-python tests, devices.md). */
export const REFERENCE_CALIBRATION: Bme280Calibration = {
  T1: 28009, T2: 25654, T3: 50,
  P1: 39145, P2: -10750, P3: 3024, P4: 5667, P5: -120, P6: -7, P7: 15500, P8: -14600, P9: 6000,
  H1: 75, H2: 376, H3: 0, H4: 286, H5: 50, H6: 30,
};

const REG = { calib1: 0x88, id: 0xd0, reset: 0xe0, calib2: 0xe1, ctrlHum: 0xf2, status: 0xf3, ctrlMeas: 0xf4, config: 0xf5, data: 0xf7 } as const;
const CHIP_ID = 0x60;
const RESET_WORD = 0xb6;
/** Time to copy the calibration from NVM after power-on or reset (datasheet: start-up time 2 ms). */
const NVM_COPY_MS = 2;
const STATUS_MEASURING = 0x08;
const STATUS_IM_UPDATE = 0x01;
/** Oversampling setting → number of samples (0 = skipped). */
const SAMPLES = [0, 1, 2, 4, 8, 16, 16, 16];
/** Normal mode standby time per t_sb setting, ms (BME280 table 27). */
const STANDBY_MS = [0.5, 62.5, 125, 250, 500, 1000, 10, 20];

/** Datasheet appendix B: maximum measurement time, ms. */
export function measurementMs(osT: number, osP: number, osH: number): number {
  const t = SAMPLES[osT]!;
  const p = SAMPLES[osP]!;
  const h = SAMPLES[osH]!;
  return 1.25 + 2.3 * t + (p ? 2.3 * p + 0.575 : 0) + (h ? 2.3 * h + 0.575 : 0);
}

/** Floating-point compensation, datasheet section 8.1. */
export function floatTemperature(adcT: number, c: Bme280Calibration): { celsius: number; tFine: number } {
  const var1 = (adcT / 16384 - c.T1 / 1024) * c.T2;
  const var2 = (adcT / 131072 - c.T1 / 8192) ** 2 * c.T3;
  const tFine = var1 + var2;
  return { celsius: tFine / 5120, tFine };
}

export function floatPressure(adcP: number, tFine: number, c: Bme280Calibration): number {
  let var1 = tFine / 2 - 64000;
  let var2 = (var1 * var1 * c.P6) / 32768;
  var2 = var2 + var1 * c.P5 * 2;
  var2 = var2 / 4 + c.P4 * 65536;
  var1 = ((c.P3 * var1 * var1) / 524288 + c.P2 * var1) / 524288;
  var1 = (1 + var1 / 32768) * c.P1;
  if (var1 === 0) return 0;
  let p = 1048576 - adcP;
  p = ((p - var2 / 4096) * 6250) / var1;
  var1 = (c.P9 * p * p) / 2147483648;
  var2 = (p * c.P8) / 32768;
  return p + (var1 + var2 + c.P7) / 16; // Pa
}

export function floatHumidity(adcH: number, tFine: number, c: Bme280Calibration): number {
  let h = tFine - 76800;
  h = (adcH - (c.H4 * 64 + (c.H5 / 16384) * h)) * ((c.H2 / 65536) * (1 + (c.H6 / 67108864) * h * (1 + (c.H3 / 67108864) * h)));
  h = h * (1 - (c.H1 * h) / 524288);
  return Math.min(100, Math.max(0, h));
}

/** The integer in [lo, hi] whose f is closest to target, f monotonic (rising or falling). */
function search(lo: number, hi: number, target: number, f: (x: number) => number): number {
  const rising = f(hi) >= f(lo);
  let a = lo;
  let b = hi;
  while (b - a > 1) {
    const m = Math.floor((a + b) / 2);
    if (f(m) < target === rising) a = m;
    else b = m;
  }
  return Math.abs(f(a) - target) <= Math.abs(f(b) - target) ? a : b;
}

/** Raw ADC values that read back as the given physical values under calibration `c`. */
export function rawFromPhysical(values: { temperature: number; pressure: number; humidity: number }, c: Bme280Calibration) {
  const adcT = search(0, 0xfffff, values.temperature, (x) => floatTemperature(x, c).celsius);
  const { tFine } = floatTemperature(adcT, c);
  const adcP = search(0, 0xfffff, values.pressure * 100, (x) => floatPressure(x, tFine, c));
  const adcH = search(0, 0xffff, values.humidity, (x) => floatHumidity(x, tFine, c));
  return { adcT, adcP, adcH };
}

export class SimBme280 extends SimChip {
  readonly model = "BME280";
  temperature = 22;
  /** hPa */
  pressure = 1013.25;
  humidity = 45;
  private readonly regs = new Uint8Array(256);
  private pointer = 0;
  private nvmReadyAt = 0;
  private measuringUntil: number | null = null;
  private normalNextEnd = 0;
  /** ctrl_hum is latched by the next write to ctrl_meas (datasheet 5.4.3). */
  private humLatched = 0;

  constructor(
    address: number,
    clock: ConstructorParameters<typeof SimChip>[1],
    private calibration: Bme280Calibration = REFERENCE_CALIBRATION,
    /** Chip id: 0x60; a BMP280 answers 0x58 (to test identification). */
    private readonly chipId = CHIP_ID,
  ) {
    super(address, clock);
    this.powerOn();
    this.nvmReadyAt = 0;
  }

  set(values: Partial<Environment>): void {
    if (values.temperature !== undefined) this.temperature = values.temperature;
    if (values.pressure !== undefined) this.pressure = values.pressure;
    if (values.humidity !== undefined) this.humidity = values.humidity;
  }

  /** Another part (with other trimming) is plugged in at the next plug(). */
  swapCalibration(c: Bme280Calibration): void {
    this.calibration = c;
  }

  protected powerOn(): void {
    this.regs.fill(0);
    this.regs[REG.id] = this.chipId;
    // Data registers' reset values: 0x80000 (T, P) and 0x8000 (H), "no measurement".
    this.regs.set([0x80, 0, 0, 0x80, 0, 0, 0x80, 0], REG.data);
    writeCalibration(this.regs, this.calibration);
    this.measuringUntil = null;
    this.humLatched = 0;
    this.pointer = 0;
    this.nvmReadyAt = this.now() + NVM_COPY_MS;
  }

  private osT(): number {
    return (this.regs[REG.ctrlMeas]! >> 5) & 7;
  }

  private osP(): number {
    return (this.regs[REG.ctrlMeas]! >> 2) & 7;
  }

  private mode(): number {
    return this.regs[REG.ctrlMeas]! & 3;
  }

  private duration(): number {
    return measurementMs(this.osT(), this.osP(), this.humLatched & 7);
  }

  /** Completes whatever conversion finished by now. */
  private settle(): void {
    const now = this.now();
    if (this.fault === "never-ready") return;
    if (this.measuringUntil !== null && now >= this.measuringUntil) {
      this.measuringUntil = null;
      this.storeResult();
      if (this.mode() === 1 || this.mode() === 2) this.regs[REG.ctrlMeas] = this.regs[REG.ctrlMeas]! & ~3; // forced → sleep
    }
    if (this.mode() === 3 && this.measuringUntil === null && now >= this.normalNextEnd) {
      // Normal mode: a conversion, then t_standby, over and over. The results of the last
      // complete cycle are what the data registers hold.
      this.storeResult();
      const cycle = this.duration() + STANDBY_MS[(this.regs[REG.config]! >> 5) & 7]!;
      this.normalNextEnd = now + cycle;
    }
  }

  private storeResult(): void {
    const raw = rawFromPhysical({ temperature: this.temperature, pressure: this.pressure, humidity: this.humidity }, this.calibration);
    const t = this.osT() ? raw.adcT : 0x80000;
    const p = this.osP() ? raw.adcP : 0x80000;
    const h = this.humLatched & 7 ? raw.adcH : 0x8000;
    this.regs.set([p >> 12, (p >> 4) & 0xff, (p & 0xf) << 4, t >> 12, (t >> 4) & 0xff, (t & 0xf) << 4, h >> 8, h & 0xff], REG.data);
  }

  private status(): number {
    let s = 0;
    if (this.measuringUntil !== null) s |= STATUS_MEASURING;
    if (this.now() < this.nvmReadyAt) s |= STATUS_IM_UPDATE;
    return s;
  }

  protected onWrite(bytes: number[]): boolean {
    this.settle();
    if (bytes.length === 0) return true;
    this.pointer = bytes[0]!;
    // Register writes are address/value pairs (datasheet 6.2.1); a lone address sets the pointer.
    for (let i = 0; i + 1 < bytes.length; i += 2) this.writeRegister(bytes[i]!, bytes[i + 1]!);
    if (bytes.length % 2 === 1 && bytes.length > 1) this.pointer = bytes[bytes.length - 1]!;
    return true;
  }

  private writeRegister(reg: number, value: number): void {
    switch (reg) {
      case REG.reset:
        if (value === RESET_WORD) this.powerOn();
        return;
      case REG.ctrlHum:
        this.regs[reg] = value & 7;
        return;
      case REG.config:
        this.regs[reg] = value & 0xfd;
        return;
      case REG.ctrlMeas: {
        this.regs[reg] = value;
        this.humLatched = this.regs[REG.ctrlHum]!;
        const mode = value & 3;
        if (mode === 1 || mode === 2) this.measuringUntil = this.fault === "never-ready" ? Number.POSITIVE_INFINITY : this.now() + this.duration();
        else if (mode === 3) this.normalNextEnd = this.now() + this.duration();
        else this.measuringUntil = null;
        return;
      }
      default:
        // Everything else is read-only.
        return;
    }
  }

  protected onRead(length: number): Buffer | null {
    this.settle();
    const out = Buffer.alloc(length);
    const copying = this.now() < this.nvmReadyAt;
    for (let i = 0; i < length; i++) {
      const reg = (this.pointer + i) & 0xff;
      const isCalibration = (reg >= 0x88 && reg <= 0xa1) || (reg >= 0xe1 && reg <= 0xf0);
      out[i] = reg === REG.status ? this.status() : copying && isCalibration ? 0 : this.regs[reg]!;
    }
    this.pointer = (this.pointer + length) & 0xff;
    return out;
  }
}

/** Calibration values → the bytes at 0x88…0xA1 and 0xE1…0xE7 (datasheet table 16). */
export function writeCalibration(regs: Uint8Array, c: Bme280Calibration): void {
  const a = Buffer.alloc(26);
  a.writeUInt16LE(c.T1, 0);
  a.writeInt16LE(c.T2, 2);
  a.writeInt16LE(c.T3, 4);
  a.writeUInt16LE(c.P1, 6);
  [c.P2, c.P3, c.P4, c.P5, c.P6, c.P7, c.P8, c.P9].forEach((v, i) => a.writeInt16LE(v, 8 + 2 * i));
  a.writeUInt8(c.H1, 25);
  regs.set(a, 0x88);
  const b = Buffer.alloc(7);
  b.writeInt16LE(c.H2, 0);
  b.writeUInt8(c.H3, 2);
  b.writeInt8(c.H4 >> 4, 3); // E4: H4[11:4]
  b.writeUInt8((c.H4 & 0x0f) | ((c.H5 & 0x0f) << 4), 4); // E5: H4[3:0], H5[3:0]
  b.writeInt8(c.H5 >> 4, 5); // E6: H5[11:4]
  b.writeInt8(c.H6, 6);
  regs.set(b, 0xe1);
}
