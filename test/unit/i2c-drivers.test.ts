/**
 * I²C drivers: the reference vectors (../shared/reference/vectors.json, copied to
 * test/fixtures), and every driver against its simulated chip on a simulated bus with a manual
 * clock (a driver's wait advances it; nothing sleeps).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { BH1750, bh1750, bh1750Lux } from "../../drivers/i2c/bh1750.js";
import { BME280, bme280, compensate, compensateHumidity, compensatePressure, compensateTemperature, parseCalibration } from "../../drivers/i2c/bme280.js";
import { candidates, checkAddress, checkDriver, describeAddress, driverIds, getDriver, listDrivers } from "../../drivers/i2c/registry.js";
import { decodeScd4x, scd4x, scd4xReady } from "../../drivers/i2c/scd4x.js";
import { crc8, decodeWords, encodeWords } from "../../drivers/i2c/sensirion-crc.js";
import { decodeSht3x, sht3x } from "../../drivers/i2c/sht3x.js";
import { decodeSht4x, sht4x, sht4xHumidityRaw, sht4xTemperature } from "../../drivers/i2c/sht4x.js";
import { SensorError, type SensorValue } from "../../drivers/i2c/types.js";
import { I2cError } from "../../src/buses/i2c/bus.js";
import { I2cQueue } from "../../src/buses/i2c/queue.js";
import { SimBh1750 } from "../../src/simulators/i2c/bh1750.js";
import { REFERENCE_CALIBRATION, SimBme280, writeCalibration } from "../../src/simulators/i2c/bme280.js";
import { SimI2cBus } from "../../src/buses/i2c/sim-bus.js";
import { ManualClock } from "../../src/buses/i2c/clock.js";
import { SimScd4x } from "../../src/simulators/i2c/scd4x.js";
import { SimSht3x } from "../../src/simulators/i2c/sht3x.js";
import { SimSht4x } from "../../src/simulators/i2c/sht4x.js";

interface Vectors {
  sensirion_crc8_check: { bytes: string; crc: string };
  sensors: Array<{ chip: string; reply?: string; raw?: number; mtreg?: number; temperature_c?: number; humidity_pct?: number; co2_ppm?: number; lux?: number }>;
  bme280: { calibration: typeof REFERENCE_CALIBRATION; raw: { temperature: number; pressure: number; humidity: number }; expected_float: { temperature_c: number; pressure_hpa: number; humidity_pct: number } };
}
const vectors = JSON.parse(readFileSync("test/fixtures/vectors.json", "utf8")) as Vectors;
const bytes = (hexText: string) => Buffer.from(hexText.replace(/\s+/g, ""), "hex");
const by = (values: SensorValue[]) => Object.fromEntries(values.map((v) => [v.quantity, v.value]));

function rig() {
  const clock = new ManualClock(1000);
  const bus = new SimI2cBus(1, clock);
  const queue = new I2cQueue(bus);
  return { clock, bus, queue };
}

describe("reference vectors", () => {
  it("Sensirion CRC-8 of 0xBE 0xEF is 0x92", () => {
    const v = vectors.sensirion_crc8_check;
    expect(crc8(bytes(v.bytes))).toBe(Number.parseInt(v.crc, 16));
    expect(crc8([0xbe, 0xef])).toBe(0x92);
    expect(decodeWords(encodeWords([0xbeef, 0x1234]))).toEqual([0xbeef, 0x1234]);
  });

  it("the SHT3x, SHT4x and SCD4x replies decode to their values, every CRC matching", () => {
    const sensirion = vectors.sensors.filter((s) => s.reply);
    expect(sensirion.length).toBe(5);
    for (const v of sensirion) {
      const reply = bytes(v.reply!);
      expect(decodeWords(reply).every((w) => w !== null), `${v.chip} ${v.reply} CRCs`).toBe(true);
      if (v.chip === "SHT3x") {
        const r = by(decodeSht3x(reply));
        expect(r.temperature, v.reply).toBeCloseTo(v.temperature_c!, 2);
        expect(r.humidity, v.reply).toBeCloseTo(v.humidity_pct!, 2);
      } else if (v.chip === "SHT4x") {
        // The exact formula, before the driver rounds to 0.01.
        const [t, rh] = decodeWords(reply) as number[];
        expect(sht4xTemperature(t!)).toBeCloseTo(v.temperature_c!, 3);
        expect(sht4xHumidityRaw(rh!)).toBeCloseTo(v.humidity_pct!, 3);
        expect(by(decodeSht4x(reply)).humidity).toBeCloseTo(v.humidity_pct!, 2);
      } else {
        const r = by(decodeScd4x(reply));
        expect(r.co2).toBe(v.co2_ppm);
        expect(r.temperature).toBeCloseTo(v.temperature_c!, 2);
        expect(r.humidity).toBeCloseTo(v.humidity_pct!, 2);
      }
    }
  });

  it("a flipped CRC byte gives a null value for that word only", () => {
    const reply = bytes("01 F4 33 66 67 A2 5E B9 3C");
    reply[5] ^= 0x01;
    expect(decodeScd4x(reply)).toEqual([
      { quantity: "co2", unit: "ppm", value: 500, crc: "ok" },
      { quantity: "temperature", unit: "°C", value: null, crc: "bad", note: "CRC mismatch" },
      { quantity: "humidity", unit: "%", value: 37, crc: "ok" },
    ]);
  });

  it("BME280: the calibration vector through its register bytes, and raw T/P/H within an integer implementation's tolerance", () => {
    const v = vectors.bme280;
    const regs = new Uint8Array(256);
    writeCalibration(regs, v.calibration);
    const c = parseCalibration(Buffer.from(regs.subarray(0x88, 0x88 + 26)), Buffer.from(regs.subarray(0xe1, 0xe1 + 7)));
    expect(c).toEqual(v.calibration);
    const t = compensateTemperature(v.raw.temperature, c);
    expect(t.centiCelsius).toBe(2479);
    const pressureHpa = compensatePressure(v.raw.pressure, t.tFine, c) / 256 / 100;
    const humidity = compensateHumidity(v.raw.humidity, t.tFine, c) / 1024;
    // devices.md: "an integer implementation lands within a few hundredths" of the float values.
    expect(Math.abs(t.centiCelsius / 100 - v.expected_float.temperature_c)).toBeLessThan(0.03);
    expect(Math.abs(pressureHpa - v.expected_float.pressure_hpa)).toBeLessThan(0.03);
    expect(Math.abs(humidity - v.expected_float.humidity_pct)).toBeLessThan(0.03);
    const values = by(compensate({ adcT: v.raw.temperature, adcP: v.raw.pressure, adcH: v.raw.humidity }, c));
    expect(values).toEqual({ temperature: 24.79, pressure: 1006.61, humidity: 68.67 });
  });

  it("BME280: negative H4/H5 survive the nibble packing", () => {
    const c = { ...REFERENCE_CALIBRATION, H4: -123, H5: -77 };
    const regs = new Uint8Array(256);
    writeCalibration(regs, c);
    expect(parseCalibration(Buffer.from(regs.subarray(0x88, 0x88 + 26)), Buffer.from(regs.subarray(0xe1, 0xe1 + 7)))).toEqual(c);
  });

  it("BH1750: 1200 counts at MTreg 69 in H-resolution are 1000 lx", () => {
    const v = vectors.sensors.find((s) => s.chip === "BH1750")!;
    expect(bh1750Lux(v.raw!, v.mtreg!, "high")).toBeCloseTo(v.lux!, 6);
    expect(bh1750Lux(1200, 138, "high")).toBeCloseTo(500, 6);
    expect(bh1750Lux(1200, 69, "high2")).toBeCloseTo(500, 6);
  });

  it("SCD4x data ready means any of bits 0–10, not the high bits", () => {
    expect(scd4xReady(0x8000)).toBe(false);
    expect(scd4xReady(0x8006)).toBe(true);
    expect(scd4xReady(0x0001)).toBe(true);
    expect(scd4xReady(0xf800)).toBe(false);
  });
});

describe("driver registry", () => {
  it("every driver is registered under its own id, with addresses, quantities and a source", () => {
    expect(driverIds()).toEqual(["sht3x", "sht4x", "scd4x", "bme280", "bh1750"]);
    for (const d of listDrivers()) {
      expect(getDriver(d.id)).toBe(d);
      expect(d.addresses.length).toBeGreaterThan(0);
      expect(d.quantities.length).toBeGreaterThan(0);
      expect(d.source).toMatch(/datasheet/i);
    }
    expect(getDriver("toString")).toBeUndefined();
  });

  it("says what a scan can tell from an address", () => {
    expect(describeAddress(0x44)).toBe("SHT3x or SHT4x");
    expect(describeAddress(0x62)).toBe("SCD4x");
    expect(describeAddress(0x76)).toBe("BME280");
    expect(describeAddress(0x5c)).toBe("BH1750");
    expect(describeAddress(0x50)).toBeNull();
    expect(candidates(0x77).map((d) => d.id)).toEqual(["bme280"]);
  });

  it("names the known drivers and the allowed addresses", () => {
    expect(checkDriver("scd41")).toBe("unknown driver 'scd41'; known: sht3x, sht4x, scd4x (SCD40, SCD41), bme280, bh1750");
    expect(checkAddress(sht3x, 0x45)).toBeNull();
    expect(checkAddress(sht3x, 0x62)).toBe("0x62 is not an address of sht3x (allowed: 0x44, 0x45)");
  });
});

describe("Sensirion serial numbers", () => {
  it("print as four hex digits per word, also when the top bit is set", async () => {
    for (const [Chip, driver] of [
      [SimSht3x, sht3x],
      [SimSht4x, sht4x],
    ] as const) {
      const { bus, queue } = rig();
      const chip = new Chip(0x44, bus.clock);
      chip.serial = 0x8a123456;
      bus.attach(chip);
      const sensor = driver.create(queue.device(0x44));
      await sensor.init();
      expect(sensor.info(), driver.id).toEqual({ serial: "0x8a123456" });
    }
  });
});

describe("SHT3x against its simulated chip", () => {
  it("reads the values set on the chip", async () => {
    const { bus, queue } = rig();
    const chip = new SimSht3x(0x44, bus.clock);
    bus.attach(chip);
    chip.set({ temperature: 21.37, humidity: 48.2 });
    const sensor = sht3x.create(queue.device(0x44));
    await sensor.init();
    expect(sensor.info()).toEqual({ serial: "0x1a2b3c4d" });
    const v = by(await sensor.read());
    expect(v.temperature).toBeCloseTo(21.37, 2);
    expect(v.humidity).toBeCloseTo(48.2, 2);
  });

  it("the chip refuses a read before the measurement time is over; the driver waits it out per repeatability", async () => {
    const { bus, clock, queue } = rig();
    const chip = new SimSht3x(0x44, bus.clock);
    bus.attach(chip);
    await bus.write(0x44, Uint8Array.from([0x24, 0x00]));
    clock.advance(14);
    await expect(bus.read(0x44, 6)).rejects.toThrow("i2c-1 0x44: no acknowledge (sensor absent or busy?)");
    clock.advance(1);
    expect((await bus.read(0x44, 6)).length).toBe(6);
    await expect(bus.read(0x44, 6)).rejects.toBeInstanceOf(I2cError); // consumed

    for (const [precision, command, wait] of [["medium", [0x24, 0x0b], 6], ["low", [0x24, 0x16], 4]] as const) {
      bus.log.length = 0;
      const t0 = clock.now();
      await sht3x.create(queue.device(0x44), { precision }).read();
      expect(bus.log[0]!.bytes).toEqual(command);
      expect(bus.log[1]!.at - t0).toBe(wait);
    }
  });

  it("reports status and serial with their CRCs", async () => {
    const { bus } = rig();
    bus.attach(new SimSht3x(0x45, bus.clock));
    await bus.write(0x45, Uint8Array.from([0xf3, 0x2d]));
    expect(decodeWords(await bus.read(0x45, 3))).toEqual([0x8010]); // alert pending, reset detected
    await bus.write(0x45, Uint8Array.from([0x30, 0x41]));
    await bus.write(0x45, Uint8Array.from([0xf3, 0x2d]));
    expect(decodeWords(await bus.read(0x45, 3))).toEqual([0x0000]);
  });
});

describe("SHT4x against its simulated chip", () => {
  it("reads the values set on the chip, humidity clamped to 0–100", async () => {
    const { bus, queue } = rig();
    const chip = new SimSht4x(0x44, bus.clock);
    bus.attach(chip);
    const sensor = sht4x.create(queue.device(0x44));
    await sensor.init();
    expect(bus.log[0]!.bytes).toEqual([0x94]); // soft reset first
    chip.set({ temperature: -12.5, humidity: 97.3 });
    expect(by(await sensor.read())).toEqual({ temperature: expect.closeTo(-12.5, 2), humidity: expect.closeTo(97.3, 2) });
    chip.set({ humidity: 103 }); // the part can report above 100 %
    expect(by(await sensor.read()).humidity).toBe(100);
  });

  it("does not acknowledge while measuring, nor a read with nothing pending", async () => {
    const { bus, clock } = rig();
    bus.attach(new SimSht4x(0x44, bus.clock));
    await expect(bus.read(0x44, 6)).rejects.toThrow(/no acknowledge/);
    await bus.write(0x44, Uint8Array.from([0xfd]));
    await expect(bus.write(0x44, Uint8Array.from([0x89]))).rejects.toThrow(/no acknowledge/);
    clock.advance(8.3);
    expect((await bus.read(0x44, 6)).length).toBe(6);
  });
});

describe("SCD4x against its simulated chip", () => {
  it("starts periodic measurement once, reads only when data is ready, stops on shutdown", async () => {
    const { bus, clock, queue } = rig();
    const chip = new SimScd4x(0x62, bus.clock);
    bus.attach(chip);
    chip.set({ co2: 873, temperature: 23.4, humidity: 41.5 });
    const sensor = scd4x.create(queue.device(0x62));
    await sensor.init();
    expect(chip.isMeasuring).toBe(true);
    expect(sensor.info()).toEqual({ serial: "0x123456789abc" });
    await expect(sensor.read()).rejects.toMatchObject({ kind: "not-ready" });
    clock.advance(5000);
    expect(by(await sensor.read())).toEqual({ co2: 873, temperature: expect.closeTo(23.4, 2), humidity: expect.closeTo(41.5, 2) });
    await expect(sensor.read()).rejects.toBeInstanceOf(SensorError); // the same result is not handed out twice
    clock.advance(5000);
    chip.set({ co2: 1210 });
    expect(by(await sensor.read()).co2).toBe(1210);
    const starts = bus.log.filter((l) => l.op === "write" && l.bytes[0] === 0x21 && l.bytes[1] === 0xb1);
    expect(starts).toHaveLength(1);
    await sensor.shutdown();
    expect(chip.isMeasuring).toBe(false);
  });

  it("the chip: read_measurement with no data is not acknowledged; configuration only when idle; 500 ms of silence after stop", async () => {
    const { bus, clock } = rig();
    bus.attach(new SimScd4x(0x62, bus.clock));
    const cmd = (c: number) => bus.write(0x62, Uint8Array.from([c >> 8, c & 0xff]));
    await cmd(0x21b1);
    await expect(cmd(0xec05)).rejects.toThrow(/no acknowledge/);
    await expect(cmd(0x3682)).rejects.toThrow(/no acknowledge/); // serial number: idle only
    await cmd(0x3f86);
    clock.advance(499);
    await expect(cmd(0x3682)).rejects.toThrow(/no acknowledge/);
    clock.advance(1);
    await cmd(0x3682);
    await expect(bus.read(0x62, 9)).rejects.toThrow(/no acknowledge/); // 1 ms execution time
    clock.advance(1);
    expect(decodeWords(await bus.read(0x62, 9))).toEqual([0x1234, 0x5678, 0x9abc]);
    // An argument with a wrong CRC is refused; with the right one accepted and read back.
    await expect(bus.write(0x62, Uint8Array.from([0x24, 0x27, 0x01, 0x90, 0x00]))).rejects.toThrow(/no acknowledge/);
    await bus.write(0x62, Uint8Array.from([0x24, 0x27, ...encodeWords([400])]));
    clock.advance(1);
    await cmd(0x2322);
    clock.advance(1);
    expect(decodeWords(await bus.read(0x62, 3))).toEqual([400]);
  });
});

describe("BME280 against its simulated chip", () => {
  it("reads the calibration once, then measures in forced mode: values set on the chip come back", async () => {
    const { bus, queue } = rig();
    const chip = new SimBme280(0x76, bus.clock);
    bus.attach(chip);
    const sensor = bme280.create(queue.device(0x76));
    await sensor.init();
    expect(sensor.info()).toEqual({ chip_id: "0x60" });
    for (const env of [
      { temperature: 22.5, pressure: 1013.25, humidity: 45 },
      { temperature: -8.2, pressure: 965.4, humidity: 88.1 },
      { temperature: 35.9, pressure: 1041.7, humidity: 12.3 },
    ]) {
      chip.set(env);
      const v = by(await sensor.read());
      expect(v.temperature, `T ${env.temperature}`).toBeCloseTo(env.temperature, 1);
      expect(Math.abs(v.pressure! - env.pressure), `P ${env.pressure}`).toBeLessThan(0.03);
      expect(Math.abs(v.humidity! - env.humidity), `H ${env.humidity}`).toBeLessThan(0.05);
    }
    const calibrationReads = bus.log.filter((l) => l.op === "write" && l.bytes.length === 1 && l.bytes[0] === BME280.reg.calib1);
    expect(calibrationReads).toHaveLength(1);
  });

  it("the chip shows 'measuring' for the measurement time and sleeps again after a forced measurement", async () => {
    const { bus, clock } = rig();
    bus.attach(new SimBme280(0x76, bus.clock));
    const reg = async (r: number) => {
      await bus.write(0x76, Uint8Array.from([r]));
      return (await bus.read(0x76, 1))[0]!;
    };
    expect(await reg(0xd0)).toBe(0x60);
    await bus.write(0x76, Uint8Array.from([0xf2, 0x01, 0xf4, 0x25]));
    expect((await reg(0xf3)) & 0x08).toBe(0x08);
    clock.advance(9.3);
    expect((await reg(0xf3)) & 0x08).toBe(0);
    expect((await reg(0xf4)) & 0x03).toBe(0); // back to sleep mode
  });

  it("refuses a chip that is not a BME280 (a BMP280 answers 0x58)", async () => {
    const { bus, queue } = rig();
    bus.attach(new SimBme280(0x77, bus.clock, REFERENCE_CALIBRATION, 0x58));
    await expect(bme280.create(queue.device(0x77)).init()).rejects.toThrow("i2c-1 0x77: BMP280 (chip id 0x58), not a BME280");
    expect(await bme280.identify!(queue.device(0x77))).toBe("BMP280 (chip id 0x58), not a BME280");
  });
});

describe("BH1750 against its simulated chip", () => {
  it("reads the illuminance set on the chip at every resolution and MTreg", async () => {
    const { bus, queue } = rig();
    const chip = new SimBh1750(0x23, bus.clock);
    bus.attach(chip);
    chip.set({ illuminance: 437.5 });
    for (const options of [{}, { mtreg: 138 }, { mtreg: 31 }, { resolution: "high2" as const }, { resolution: "low" as const, mtreg: 254 }]) {
      const sensor = bh1750.create(queue.device(0x23), options);
      await sensor.init();
      expect(by(await sensor.read()).illuminance, JSON.stringify(options)).toBeCloseTo(437.5, 0);
    }
  });

  it("the chip hands out its old register until the integration is over: the driver waits the maximum time", async () => {
    const { bus, clock, queue } = rig();
    const chip = new SimBh1750(0x23, bus.clock);
    bus.attach(chip);
    chip.set({ illuminance: 1000 });
    await bus.write(0x23, Uint8Array.from([0x20]));
    clock.advance(100);
    expect((await bus.read(0x23, 2)).readUInt16BE(0)).toBe(0);
    clock.advance(80);
    expect((await bus.read(0x23, 2)).readUInt16BE(0)).toBe(1200);
    const t0 = clock.now();
    await bh1750.create(queue.device(0x23), { mtreg: 138 }).read();
    expect(clock.now() - t0).toBe(Math.ceil(BH1750.oneTime.high.maxMs * 2));
  });
});

describe("chip models beyond what the drivers use", () => {
  it("BH1750: continuous mode refreshes every integration; reset is refused in power down", async () => {
    const { bus, clock } = rig();
    const chip = new SimBh1750(0x5c, bus.clock);
    bus.attach(chip);
    const op = (b: number) => bus.write(0x5c, Uint8Array.of(b));
    const counts = async () => (await bus.read(0x5c, 2)).readUInt16BE(0);
    chip.set({ illuminance: 100 });
    await op(0x10);
    clock.advance(180);
    expect(await counts()).toBe(120);
    chip.set({ illuminance: 200 });
    expect(await counts()).toBe(120);
    clock.advance(180);
    expect(await counts()).toBe(240);
    await op(0x00); // power down: the register keeps its value
    await op(0x07);
    expect(await counts()).toBe(240);
    await op(0x01);
    await op(0x07);
    expect(await counts()).toBe(0);
    await op(0x42); // MTreg high bits 010 → 64 + (69 & 0x1f = 5)
    await op(0x7f); // low bits 11111
    expect(chip.measurementTime).toBe(0b010_11111);
  });

  it("BME280: normal mode keeps converting; a skipped humidity reads 0x8000", async () => {
    const { bus, clock } = rig();
    const chip = new SimBme280(0x76, bus.clock);
    bus.attach(chip);
    const data = async () => {
      await bus.write(0x76, Uint8Array.of(0xf7));
      return bus.read(0x76, 8);
    };
    await bus.write(0x76, Uint8Array.of(0xf5, 0x00, 0xf4, 0x27)); // t_sb 0.5 ms, T ×1, P ×1, normal; ctrl_hum 0
    chip.set({ temperature: 10 });
    clock.advance(20);
    const first = await data();
    expect(first.readUInt16BE(6)).toBe(0x8000);
    chip.set({ temperature: 30 });
    clock.advance(20);
    expect((await data()).subarray(3, 6)).not.toEqual(first.subarray(3, 6));
  });
});
