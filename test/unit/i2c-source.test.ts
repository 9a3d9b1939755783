/**
 * The `type: i2c` source on a simulated bus: a room's sensors polled together, and the faults a
 * real room has — a NACK, a bad CRC, data that never gets ready, a sensor unplugged and plugged
 * back — each reported as bad readings and counters without stopping the other sensors.
 * Also the bus queue and the real bus's error messages (without a kernel bus).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { hex, I2cError } from "../../src/buses/i2c/bus.js";
import { NodeI2cBus } from "../../src/buses/i2c/node-bus.js";
import { I2cBusPool, I2cQueue } from "../../src/buses/i2c/queue.js";
import { SimBh1750 } from "../../src/simulators/i2c/bh1750.js";
import { REFERENCE_CALIBRATION, SimBme280 } from "../../src/simulators/i2c/bme280.js";
import { SimI2cBus } from "../../src/buses/i2c/sim-bus.js";
import { ManualClock } from "../../src/buses/i2c/clock.js";
import { SimScd4x } from "../../src/simulators/i2c/scd4x.js";
import { SimSht4x } from "../../src/simulators/i2c/sht4x.js";
import type { I2cSourceConfig } from "../../src/sources/i2c/type.js";
import type { Reading } from "../../src/model/reading.js";
import { silentLogger } from "../../src/ops/logger.js";
import { createI2cSource, I2cSource } from "../../src/sources/i2c/source.js";
import { testConfig } from "../helpers/config.js";
import { tempDir } from "../helpers/tmp.js";

const sensors = [
  { driver: "sht4x", address: "0x44" },
  { driver: "scd4x", only: ["co2"] },
  { driver: "bme280", address: 0x76, only: ["pressure"] },
  { driver: "bh1750", mtreg: 138 },
];

function sourceConfig(extra: Record<string, unknown> = {}): I2cSourceConfig {
  const cfg = testConfig({ uplink: { url: "mqtt://127.0.0.1:1883" }, sources: [{ type: "i2c", name: "room-101", bus: 1, interval: "10s", sensors, ...extra }] });
  return cfg.sources[0] as I2cSourceConfig;
}

/** The Sala Smart room on a simulated bus; `poll(ms)` lets `ms` pass on the chips' clock and the scheduler's. */
async function room(opts: { start?: boolean } = {}) {
  const clock = new ManualClock(0);
  const bus = new SimI2cBus(1, clock);
  const sht = new SimSht4x(0x44, clock);
  const scd = new SimScd4x(0x62, clock);
  const bme = new SimBme280(0x76, clock);
  const bh = new SimBh1750(0x23, clock);
  bus.attach(sht, scd, bme, bh);
  sht.set({ temperature: 21.5, humidity: 40 });
  scd.set({ co2: 950 });
  bme.set({ pressure: 1009.3 });
  bh.set({ illuminance: 420 });
  let ts = 1_700_000_000_000;
  const source = new I2cSource(sourceConfig(), new I2cQueue(bus), { log: silentLogger(), now: () => ts });
  if (opts.start !== false) await source.start();
  const poll = async (ms: number) => {
    clock.advance(ms);
    ts += ms;
    return values(await source.poll(ts));
  };
  const health = (driver: string) => source.health().find((h) => h.driver === driver)!;
  return { clock, bus, sht, scd, bme, bh, source, poll, health };
}

function values(readings: Reading[]): Record<string, unknown> {
  return Object.fromEntries(readings.map((r) => [r.point.slice(r.point.indexOf("/") + 1), r.quality === "good" ? r.value : `(${r.quality})`]));
}

const healthy = { temperature: 21.5, humidity: 40, co2: 950, pressure: 1009.3, illuminance: 420 };

function expectValues(v: Record<string, unknown>, expected: Record<string, unknown>) {
  expect(Object.keys(v).sort()).toEqual(Object.keys(expected).sort());
  for (const [k, want] of Object.entries(expected)) {
    if (typeof want === "number") expect(v[k], k).toBeCloseTo(want, 1);
    else expect(v[k], k).toBe(want);
  }
}

describe("i2c source", () => {
  it("polls a room's sensors into point ids <source>/<quantity>", async () => {
    const r = await room();
    expectValues(await r.poll(10_000), healthy);
    expect(r.source.health().map((h) => [h.driver, h.address, h.online])).toEqual([
      ["sht4x", "0x44", true],
      ["scd4x", "0x62", true],
      ["bme280", "0x76", true],
      ["bh1750", "0x23", true],
    ]);
    r.sht.set({ temperature: 23.25 });
    r.bh.set({ illuminance: 90 });
    const next = await r.poll(10_000);
    expect(next.temperature).toBeCloseTo(23.25, 2);
    expect(next.illuminance).toBeCloseTo(90, 0);
  });

  it("a sensor that does not acknowledge gives bad readings and a counter; the others carry on; it is initialised again when it answers", async () => {
    const r = await room();
    r.sht.fault = "absent";
    expectValues(await r.poll(10_000), { ...healthy, temperature: "(bad)", humidity: "(bad)" });
    expect(r.health("sht4x")).toMatchObject({ online: false, initialised: false, lastError: "i2c-1 0x44: no acknowledge (sensor absent or busy?)" });
    expect(r.health("sht4x").counters.nack).toBe(1);
    r.sht.fault = "none";
    expectValues(await r.poll(10_000), healthy);
    expect(r.health("sht4x")).toMatchObject({ online: true, initialised: true });
    expect(r.health("sht4x").counters.inits).toBe(2);
  });

  it("a bad CRC never becomes a number: the word's reading is bad and counted, the rest of the reply is used", async () => {
    const r = await room();
    r.sht.fault = "bad-crc";
    r.sht.badCrcWord = 1; // humidity
    expectValues(await r.poll(10_000), { ...healthy, humidity: "(bad)" });
    expect(r.health("sht4x").counters.crc).toBe(1);
    r.scd.fault = "bad-crc";
    r.scd.badCrcWord = 0; // the data-ready status: the reply cannot be trusted at all
    expectValues(await r.poll(10_000), { ...healthy, humidity: "(bad)", co2: "(bad)" });
    expect(r.health("scd4x").counters.crc).toBe(1);
    expect(r.health("scd4x").lastError).toBe("i2c-1 0x62: CRC mismatch in the data-ready status");
    r.sht.fault = "none";
    r.scd.fault = "none";
    expectValues(await r.poll(10_000), healthy);
  });

  it("SCD4x data that never gets ready: no reading while a result may still come, then bad readings, a counter and a fresh start", async () => {
    const r = await room();
    r.scd.fault = "never-ready";
    expectValues(await r.poll(5000), withoutCo2());
    expectValues(await r.poll(5000), withoutCo2());
    expectValues(await r.poll(5000), { ...healthy, co2: "(bad)" });
    expect(r.health("scd4x").counters["not-ready"]).toBe(1);
    expect(r.health("scd4x").initialised).toBe(false);
    r.scd.fault = "none";
    expectValues(await r.poll(5000), withoutCo2()); // started again: the first result takes 5 s
    expectValues(await r.poll(5000), healthy);
    const starts = r.bus.log.filter((l) => l.address === 0x62 && l.op === "write" && l.bytes.join() === "33,177");
    expect(starts).toHaveLength(2);
  });

  it("BME280 stuck measuring: bad readings at once, the others carry on", async () => {
    const r = await room();
    r.bme.fault = "never-ready";
    expectValues(await r.poll(10_000), { ...healthy, pressure: "(bad)" });
    expect(r.health("bme280").lastError).toBe("i2c-1 0x76: still measuring");
    r.bme.fault = "none";
    expectValues(await r.poll(10_000), healthy);
  });

  it("SCD4x unplugged and plugged back: bad while away, periodic measurement started again (the part forgot it)", async () => {
    const r = await room();
    expectValues(await r.poll(10_000), healthy);
    r.scd.unplug();
    expectValues(await r.poll(10_000), { ...healthy, co2: "(bad)" });
    expect(r.health("scd4x").counters.nack).toBe(1);
    r.scd.plug();
    expect(r.scd.isMeasuring).toBe(false);
    expectValues(await r.poll(10_000), withoutCo2());
    expect(r.scd.isMeasuring).toBe(true);
    expectValues(await r.poll(10_000), healthy);
  });

  it("SCD4x replugged between two polls (never seen failing): found out by the missing data, started again", async () => {
    const r = await room();
    expectValues(await r.poll(10_000), healthy);
    r.scd.unplug();
    r.scd.plug();
    expectValues(await r.poll(10_000), withoutCo2());
    expectValues(await r.poll(10_000), { ...healthy, co2: "(bad)" }); // 20 s without a result
    expectValues(await r.poll(10_000), withoutCo2()); // initialised again
    expectValues(await r.poll(10_000), healthy);
  });

  it("BME280 replaced by a part with other calibration: the calibration is read again, whether the swap was seen or not", async () => {
    const other = { ...REFERENCE_CALIBRATION, T1: 27504, T2: 26435, P1: 36477, P2: -10685, H2: 361, H4: 319 };
    const r = await room();
    expectValues(await r.poll(10_000), healthy);
    // Seen: unplugged during a poll.
    r.bme.unplug();
    expectValues(await r.poll(10_000), { ...healthy, pressure: "(bad)" });
    r.bme.swapCalibration(other);
    r.bme.plug();
    expectValues(await r.poll(10_000), healthy);
    // Not seen: swapped between two polls; the lost settings give it away.
    r.bme.swapCalibration(REFERENCE_CALIBRATION);
    r.bme.unplug();
    r.bme.plug();
    expectValues(await r.poll(10_000), healthy);
    expect(r.health("bme280").counters.reset).toBe(1);
    const calibrationReads = r.bus.log.filter((l) => l.address === 0x76 && l.op === "write" && l.bytes.join() === String(0x88));
    expect(calibrationReads).toHaveLength(3);
  });

  it("BH1750 replugged between two polls keeps its MTreg right (written before every measurement)", async () => {
    const r = await room();
    r.bh.unplug();
    r.bh.plug();
    expect(r.bh.measurementTime).toBe(69);
    expect((await r.poll(10_000)).illuminance).toBeCloseTo(420, 0);
    expect(r.bh.measurementTime).toBe(138);
  });

  it("a missing bus gives bad readings for every sensor and counts it, without throwing", async () => {
    const clock = new ManualClock();
    const bus = new SimI2cBus(3, clock, { missing: true });
    const source = new I2cSource(sourceConfig({ bus: 3 }), new I2cQueue(bus), { log: silentLogger() });
    await source.start();
    const v = values(await source.poll(1000));
    expect(v).toEqual({ temperature: "(bad)", humidity: "(bad)", co2: "(bad)", pressure: "(bad)", illuminance: "(bad)" });
    expect(source.health()[0]!.lastError).toBe("bus i2c-3 does not exist (enable I²C: raspi-config, dtparam=i2c_arm=on)");
    expect(source.health().every((h) => h.counters["bus-missing"] === 2)).toBe(true); // start and poll
    await source.stop();
  });

  it("stops the SCD4x's periodic measurement on stop", async () => {
    const r = await room();
    expect(r.scd.isMeasuring).toBe(true);
    await r.source.stop();
    expect(r.scd.isMeasuring).toBe(false);
  });

  it("a simulated source runs on its own simulated bus with moving, plausible values", async () => {
    const src = createI2cSource(sourceConfig({ simulated: true, sensors: [{ driver: "sht3x" }, { driver: "bh1750" }] }), {
      log: silentLogger(),
      buses: new I2cBusPool(),
    });
    await src.start();
    const v = values(await src.poll(Date.now()));
    await src.stop();
    expect(v.temperature).toBeGreaterThan(18);
    expect(v.temperature).toBeLessThan(26);
    expect(v.humidity).toBeGreaterThan(30);
    expect(v.illuminance).toBeGreaterThanOrEqual(0);
  });
});

function withoutCo2() {
  const { co2: _, ...rest } = healthy;
  return rest;
}

describe("I²C bus queue", () => {
  it("runs one job at a time: a command–wait–read is never split by another driver", async () => {
    const clock = new ManualClock();
    const bus = new SimI2cBus(1, clock);
    bus.attach(new SimSht4x(0x44, clock), new SimSht4x(0x45, clock));
    const q = new I2cQueue(bus);
    const a = q.device(0x44);
    const b = q.device(0x45);
    const job = (d: typeof a) =>
      d.run(async (io) => {
        await io.write([0xfd]);
        await new Promise((r) => setImmediate(r)); // give the other job every chance to slip in
        await io.delay(10);
        return io.read(6);
      });
    await Promise.all([job(a), job(b), job(a)]);
    expect(bus.log.map((l) => `${l.op} ${hex(l.address)}`)).toEqual(["write 0x44", "read 0x44", "write 0x45", "read 0x45", "write 0x44", "read 0x44"]);
  });

  it("a failing job does not block the next; sources on the same bus share one queue", async () => {
    const clock = new ManualClock();
    const bus = new SimI2cBus(1, clock);
    const q = new I2cQueue(bus);
    await expect(q.device(0x10).run((io) => io.write([1]))).rejects.toBeInstanceOf(I2cError);
    await expect(q.run(async () => 7)).resolves.toBe(7);
    expect(q.stats()).toMatchObject({ jobs: 2, failed: 1 });
    const pool = new I2cBusPool();
    const first = pool.get("i2c-1", () => bus);
    expect(pool.get("i2c-1", () => new SimI2cBus(1, clock))).toBe(first);
  });
});

describe("real I²C bus (no kernel bus here)", () => {
  it("names a bus that does not exist, and how to enable it", async () => {
    const bus = new NodeI2cBus(7, { devDir: tempDir() });
    await expect(bus.read(0x44, 6)).rejects.toMatchObject({ kind: "bus-missing", message: "bus i2c-7 does not exist (enable I²C: raspi-config, dtparam=i2c_arm=on)" });
    await expect(bus.scan()).rejects.toMatchObject({ kind: "bus-missing" });
  });

  it("names the device file and the group when access is denied", async () => {
    const dir = tempDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "i2c-1"), "");
    // Tests run as root, where file modes do not deny anything: the access check is injected.
    const denied = Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" });
    const bus = new NodeI2cBus(1, { devDir: dir, access: () => Promise.reject(denied) });
    await expect(bus.write(0x44, Uint8Array.from([0x24, 0x00]))).rejects.toMatchObject({ kind: "permission", message: `no permission on ${dir}/i2c-1 (add the user to the i2c group)` });
  });

  it("maps the kernel's errno of a transfer to an error naming bus and address", async () => {
    const errno = (code: string) => Object.assign(new Error(code), { code });
    let next: Error = errno("EREMOTEIO");
    const fake = {
      i2cWrite: () => Promise.reject(next),
      i2cRead: () => Promise.resolve({ bytesRead: 2, buffer: Buffer.alloc(6) }),
      writeQuick: () => Promise.reject(next),
      receiveByte: () => Promise.reject(next),
      close: () => Promise.resolve(),
    };
    const bus = new NodeI2cBus(1, { access: () => Promise.resolve(), load: async () => ({ openPromisified: async () => fake }) });
    await expect(bus.write(0x44, Uint8Array.of(0xfd))).rejects.toThrow("i2c-1 0x44: no acknowledge (sensor absent or busy?)");
    next = errno("ENXIO");
    await expect(bus.write(0x62, Uint8Array.of(0xfd))).rejects.toMatchObject({ kind: "nack" });
    next = errno("ETIMEDOUT");
    await expect(bus.write(0x62, Uint8Array.of(0xfd))).rejects.toThrow("i2c-1 0x62: bus timeout (SDA or SCL held low? check wiring and pull-ups)");
    next = errno("EBUSY");
    await expect(bus.write(0x76, Uint8Array.of(0xd0))).rejects.toThrow("i2c-1 0x76: address in use by a kernel driver (i2cdetect shows UU)");
    await expect(bus.read(0x44, 6)).rejects.toThrow("i2c-1 0x44: short read (2 of 6 bytes)");
    next = errno("EREMOTEIO");
    expect(await bus.scan()).toEqual([]);
  });

  it("i2c-bus, the real backend, loads on this machine", async () => {
    const mod = await import("i2c-bus");
    expect(typeof mod.openPromisified).toBe("function");
  });
});
