// Bosch BME280 datasheet BST-BME280-DS002 (devices.md): registers, calibration layout and the
// integer compensation of section 8.2 (32-bit temperature with t_fine, 64-bit pressure, 32-bit
// humidity). Forced mode with ×1 oversampling and no filter: the datasheet's "weather
// monitoring" setting (3.5.1).
import type { I2cDevice } from "../../src/buses/i2c/bus.js";
import { badValue, hex, type I2cDriver, type I2cSensor, SensorError, type SensorValue, value } from "./types.js";

export const BME280 = {
  addresses: [0x76, 0x77],
  chipId: 0x60,
  reg: { calib1: 0x88, id: 0xd0, reset: 0xe0, calib2: 0xe1, ctrlHum: 0xf2, status: 0xf3, ctrlMeas: 0xf4, config: 0xf5, data: 0xf7 },
  resetWord: 0xb6,
  /** Start-up time after power-on or soft reset, ms; im_update (status bit 0) is set meanwhile. */
  startupMs: 2,
  /** osrs_h = ×1. */
  ctrlHum: 0x01,
  /** osrs_t = ×1, osrs_p = ×1, mode = forced. */
  ctrlMeasForced: 0x25,
  /**
   * t_sb = 1000 ms, filter off. Standby time does not matter in forced mode; it is set so that
   * a power-on reset (which zeroes the register) shows on the next read: the chip was replugged
   * or browned out, and must be initialised again (another part may have other calibration).
   */
  config: 0xa0,
  /** Measurement time at ×1/×1/×1: 9.3 ms maximum (appendix B). */
  measureMs: 10,
  statusMeasuring: 0x08,
  statusImUpdate: 0x01,
  skipped20: 0x80000,
  skipped16: 0x8000,
} as const;

/** Chip ids of the relatives a scan may find at 0x76/0x77. */
const OTHER_CHIPS: Record<number, string> = { 0x56: "BMP280", 0x57: "BMP280", 0x58: "BMP280", 0x61: "BME680" };

export interface Bme280Calibration {
  T1: number; T2: number; T3: number;
  P1: number; P2: number; P3: number; P4: number; P5: number; P6: number; P7: number; P8: number; P9: number;
  H1: number; H2: number; H3: number; H4: number; H5: number; H6: number;
}

/** 26 bytes from 0x88 and 7 bytes from 0xE1 (datasheet table 16). */
export function parseCalibration(a: Buffer, b: Buffer): Bme280Calibration {
  const e4 = b.readInt8(3);
  const e5 = b.readUInt8(4);
  const e6 = b.readInt8(5);
  return {
    T1: a.readUInt16LE(0),
    T2: a.readInt16LE(2),
    T3: a.readInt16LE(4),
    P1: a.readUInt16LE(6),
    P2: a.readInt16LE(8),
    P3: a.readInt16LE(10),
    P4: a.readInt16LE(12),
    P5: a.readInt16LE(14),
    P6: a.readInt16LE(16),
    P7: a.readInt16LE(18),
    P8: a.readInt16LE(20),
    P9: a.readInt16LE(22),
    H1: a.readUInt8(25),
    H2: b.readInt16LE(0),
    H3: b.readUInt8(2),
    H4: (e4 * 16) | (e5 & 0x0f),
    H5: (e6 * 16) | (e5 >> 4),
    H6: b.readInt8(6),
  };
}

/** Arithmetic shift right of an integer held in a double (exact, no 32-bit wrap). */
const shr = (x: number, n: number) => Math.floor(x / 2 ** n);

/** Datasheet 8.2 BME280_compensate_T_int32: 0.01 °C, and t_fine for the others. */
export function compensateTemperature(adcT: number, c: Bme280Calibration): { centiCelsius: number; tFine: number } {
  const var1 = shr((shr(adcT, 3) - c.T1 * 2) * c.T2, 11);
  const var2 = shr(shr((shr(adcT, 4) - c.T1) * (shr(adcT, 4) - c.T1), 12) * c.T3, 14);
  const tFine = var1 + var2;
  return { centiCelsius: shr(tFine * 5 + 128, 8), tFine };
}

/** Datasheet 8.2 BME280_compensate_P_int64: Pa in Q24.8 (divide by 256); 0 when P1 is 0. */
export function compensatePressure(adcP: number, tFine: number, c: Bme280Calibration): number {
  let var1 = BigInt(tFine) - 128000n;
  let var2 = var1 * var1 * BigInt(c.P6);
  var2 = var2 + ((var1 * BigInt(c.P5)) << 17n);
  var2 = var2 + (BigInt(c.P4) << 35n);
  var1 = ((var1 * var1 * BigInt(c.P3)) >> 8n) + ((var1 * BigInt(c.P2)) << 12n);
  var1 = (((1n << 47n) + var1) * BigInt(c.P1)) >> 33n;
  if (var1 === 0n) return 0; // avoid a division by zero
  let p = 1048576n - BigInt(adcP);
  p = (((p << 31n) - var2) * 3125n) / var1;
  var1 = (BigInt(c.P9) * (p >> 13n) * (p >> 13n)) >> 25n;
  var2 = (BigInt(c.P8) * p) >> 19n;
  p = ((p + var1 + var2) >> 8n) + (BigInt(c.P7) << 4n);
  return Number(p);
}

/** Datasheet 8.2 bme280_compensate_H_int32: %RH in Q22.10 (divide by 1024). */
export function compensateHumidity(adcH: number, tFine: number, c: Bme280Calibration): number {
  let v = tFine - 76800;
  v =
    shr(adcH * 16384 - c.H4 * 1048576 - c.H5 * v + 16384, 15) *
    shr((shr(shr(v * c.H6, 10) * (shr(v * c.H3, 11) + 32768), 10) + 2097152) * c.H2 + 8192, 14);
  v = v - shr(shr(shr(v, 15) * shr(v, 15), 7) * c.H1, 4);
  v = Math.min(419430400, Math.max(0, v));
  return shr(v, 12);
}

/** The raw ADC values of the 8 data bytes at 0xF7 (press, temp, hum). */
export function rawFromData(d: Buffer): { adcP: number; adcT: number; adcH: number } {
  return {
    adcP: (d[0]! << 12) | (d[1]! << 4) | (d[2]! >> 4),
    adcT: (d[3]! << 12) | (d[4]! << 4) | (d[5]! >> 4),
    adcH: (d[6]! << 8) | d[7]!,
  };
}

/** Raw values → temperature (°C), pressure (hPa), humidity (%RH); a skipped conversion gives null. */
export function compensate(raw: { adcT: number; adcP: number; adcH: number }, c: Bme280Calibration): SensorValue[] {
  if (raw.adcT === BME280.skipped20) {
    const note = "no conversion (sensor not configured)";
    return [badValue("temperature", "none", note), badValue("pressure", "none", note), badValue("humidity", "none", note)];
  }
  const t = compensateTemperature(raw.adcT, c);
  const p = raw.adcP === BME280.skipped20 ? 0 : compensatePressure(raw.adcP, t.tFine, c);
  return [
    value("temperature", t.centiCelsius / 100, "none"),
    p === 0 ? badValue("pressure", "none", "no pressure conversion") : value("pressure", p / 256 / 100, "none"),
    raw.adcH === BME280.skipped16
      ? badValue("humidity", "none", "humidity conversion skipped")
      : value("humidity", compensateHumidity(raw.adcH, t.tFine, c) / 1024, "none"),
  ];
}

async function chipId(device: I2cDevice): Promise<number> {
  const reply = await device.run((io) => io.writeRead([BME280.reg.id], 1));
  return reply[0]!;
}

function describeChipId(id: number): string {
  return OTHER_CHIPS[id] ? `${OTHER_CHIPS[id]} (chip id ${hex(id)}), not a BME280` : `chip id ${hex(id)}, not a BME280 (0x60)`;
}

class Bme280 implements I2cSensor {
  private calibration: Bme280Calibration | null = null;
  private id: number | null = null;

  constructor(private readonly device: I2cDevice) {}

  private where(): string {
    return `${this.device.bus} ${hex(this.device.address)}`;
  }

  async init(): Promise<void> {
    this.calibration = null;
    const id = await chipId(this.device);
    if (id !== BME280.chipId) throw new SensorError("identity", `${this.where()}: ${describeChipId(id)}`);
    this.id = id;
    await this.device.run(async (io) => {
      await io.write([BME280.reg.reset, BME280.resetWord]);
      await io.delay(BME280.startupMs);
      for (let i = 0; ; i++) {
        const [status] = await io.writeRead([BME280.reg.status], 1);
        if ((status! & BME280.statusImUpdate) === 0) break;
        if (i >= 5) throw new SensorError("not-ready", `${this.where()}: calibration copy (im_update) does not finish`);
        await io.delay(1);
      }
    });
    const [a, b] = await this.device.run(async (io) => [await io.writeRead([BME280.reg.calib1], 26), await io.writeRead([BME280.reg.calib2], 7)]);
    const c = parseCalibration(a, b);
    if (c.T1 === 0 || c.P1 === 0) throw new SensorError("identity", `${this.where()}: calibration reads as zeros`);
    await this.device.run((io) => io.write([BME280.reg.config, BME280.config]));
    this.calibration = c;
  }

  async read(): Promise<SensorValue[]> {
    const c = this.calibration;
    if (!c) throw new SensorError("reset", `${this.where()}: not initialised`);
    return this.device.run(async (io) => {
      // ctrl_hum takes effect with the following ctrl_meas write (datasheet 5.4.3): one transfer.
      await io.write([BME280.reg.ctrlHum, BME280.ctrlHum, BME280.reg.ctrlMeas, BME280.ctrlMeasForced]);
      await io.delay(BME280.measureMs);
      for (let attempt = 0; ; attempt++) {
        // 0xF2…0xFE in one burst: ctrl_hum, status, ctrl_meas, config, (0xF6), then the data.
        const regs = await io.writeRead([BME280.reg.ctrlHum], 13);
        if (regs[3] !== BME280.config) {
          this.calibration = null;
          throw new SensorError("reset", `${this.where()}: settings lost since init (power loss or replug?)`);
        }
        if ((regs[1]! & BME280.statusMeasuring) === 0) return compensate(rawFromData(regs.subarray(5)), c);
        if (attempt >= 3) throw new SensorError("not-ready", `${this.where()}: still measuring`);
        await io.delay(2);
      }
    });
  }

  async shutdown(): Promise<void> {}

  info(): Record<string, string> {
    return this.id === null ? {} : { chip_id: hex(this.id) };
  }
}

export const bme280: I2cDriver = {
  id: "bme280",
  vendor: "Bosch",
  model: "BME280",
  description: "Pressure, temperature and relative humidity",
  source: "Bosch BME280 datasheet BST-BME280-DS002",
  addresses: BME280.addresses,
  quantities: ["temperature", "pressure", "humidity"],
  options: [],
  readyWithinMs: 0,
  identify: async (device) => {
    const id = await chipId(device);
    return id === BME280.chipId ? `chip id ${hex(id)} confirms` : describeChipId(id);
  },
  create: (device) => new Bme280(device),
};
