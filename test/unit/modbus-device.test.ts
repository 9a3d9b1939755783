import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { getProfile } from "../../drivers/modbus/registry.js";
import type { ModbusPoint } from "../../drivers/modbus/types.js";
import { ModbusLine } from "../../src/buses/modbus/line.js";
import { SimDevice } from "../../src/simulators/modbus/device.js";
import { SimLink } from "../../src/buses/modbus/sim-link.js";
import { createLogger, type Logger, silentLogger } from "../../src/ops/logger.js";
import { DEFAULT_REPROBE_INTERVAL_MS, ModbusDevice, type ModbusDeviceOptions } from "../../src/sources/modbus/device.js";
import { naiveRequestCount, PROTOCOL_LIMITS } from "../../src/sources/modbus/planner.js";
import { readLimits } from "../../src/sources/modbus/source.js";
import { wireModel } from "../../src/sources/modbus/wire-cost.js";

const sdm630 = getProfile("sdm630")!;
const epever = getProfile("epever")!;

/** A logger that keeps its lines (debug and up), to check what a technician would read. */
function recordingLogger(): { log: Logger; lines: () => string[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split("\n").filter(Boolean).map((l) => (JSON.parse(l) as { msg: string }).msg));
      done();
    },
  });
  return { log: createLogger({ level: "debug", pretty: false, destination }), lines: () => lines };
}

function rig(devices: Record<number, SimDevice>, lineOpts: { reopenMs?: number; log?: Logger } = {}) {
  const link = new SimLink(new Map(Object.entries(devices).map(([k, v]) => [Number(k), v])));
  const line = new ModbusLine("test-line", link, { interFrameMs: 0, reopenMs: lineOpts.reopenMs ?? 0 });
  const device = (over: Partial<ModbusDeviceOptions> & { unit: number; points: ModbusPoint[] }) => {
    const d = new ModbusDevice(
      {
        name: `dev-${over.unit}`,
        interval: 1000,
        timeout: 20,
        retries: 1,
        limits: { maxRegisters: 125, maxBits: 2000, maxGap: 10 },
        offlineAfter: 3,
        probeInterval: 5000,
        ...over,
      },
      line,
      lineOpts.log ?? silentLogger(),
    );
    line.acquire();
    return d;
  };
  return { link, line, device };
}

const values = (readings: { point: string; value: unknown; quality: string }[]) =>
  Object.fromEntries(readings.map((r) => [r.point.split("/")[1], r.quality === "good" ? r.value : `(${r.quality})`]));

describe("ModbusDevice", () => {
  it("reads a whole SDM630 in 3 requests from the first poll (its profile's facts), decodes every point, and is refused nothing", async () => {
    const sim = new SimDevice(sdm630, { freeze: true });
    const { log, lines } = recordingLogger();
    const { link, device } = rig({ 1: sim }, { log });
    const dev = device({ unit: 1, points: sdm630.points, limits: readLimits("sdm630", {}) });
    const first = await dev.poll(1000);
    const v = values(first);
    for (const name of sim.pointNames().filter((n) => !n.startsWith("identify:"))) {
      const expected = sim.get(name);
      if (typeof expected === "number") expect(v[name], name).toBeCloseTo(expected, 3);
      else expect(v[name], name).toBe(expected);
    }
    expect(v.online).toBe(true);
    // 0x0000–0x004F over the unused registers (they read as zero), 0x0156, the holding meter id.
    expect(link.log.map((r) => [r.fc, r.address, r.count])).toEqual([
      [4, 0x0000, 80],
      [4, 0x0156, 2],
      [3, 0x0014, 2],
    ]);
    expect(dev.health()).toMatchObject({ requestsPerPoll: 3, unsupported: [], excluded: [] });
    expect(dev.health().counters.exception).toBe(0);
    expect(lines().filter((l) => /refused/.test(l))).toEqual([]);
    expect(3).toBeLessThan(naiveRequestCount(sdm630.points) / 2);
  });

  it("learns a device's smaller limit from 'illegal data value' and splits there", async () => {
    // A meter that answers 80 registers at most, polled with the protocol's 125 (no profile facts).
    const points: ModbusPoint[] = [0x0000, 0x0060].map((address, i) => ({ name: `f${i}`, table: "input", address, type: "float32", sim: { wave: "constant", min: i, max: i } }));
    const sim = new SimDevice({ ...sdm630, points });
    const { link, device } = rig({ 1: sim });
    const dev = device({ unit: 1, points, limits: { ...PROTOCOL_LIMITS } });
    expect(values(await dev.poll(1))).toEqual({ f0: 0, f1: 1, online: true });
    expect(link.log.map((r) => r.count)).toEqual([98, 2, 2]);
    link.log.length = 0;
    await dev.poll(2);
    expect(link.log.map((r) => r.count)).toEqual([2, 2]);
  });

  it("marks a point the device cannot read as bad, says so once, and stops asking for it", async () => {
    const points: ModbusPoint[] = [
      { name: "a", table: "holding", address: 10, type: "uint16", sim: { wave: "constant", min: 7, max: 7 } },
      { name: "b", table: "holding", address: 12, type: "uint16", sim: { wave: "constant", min: 9, max: 9 } },
    ];
    const sim = new SimDevice([points[0]!]); // b is not implemented by this device
    const { link, device } = rig({ 4: sim });
    const dev = device({ unit: 4, points });
    expect(values(await dev.poll(1))).toEqual({ a: 7, b: "(bad)", online: true });
    expect(dev.health().unsupported).toEqual(["b"]);
    const retryAt = 1 + DEFAULT_REPROBE_INTERVAL_MS;
    expect(dev.health().excluded).toEqual([
      { what: "reads across holding 0x000c", since: 1, retryAt },
      { what: "point b (holding 0x000c)", since: 1, retryAt },
    ]);
    link.log.length = 0;
    expect(values(await dev.poll(2))).toEqual({ a: 7, online: true });
    expect(link.log).toEqual([{ unit: 4, fc: 3, address: 10, count: 1 }]);
  });

  it("never turns a damaged reply into a number: CRC errors give quality bad, counted and retried", async () => {
    const sim = new SimDevice(epever, { freeze: true });
    const { link, device } = rig({ 1: sim });
    const dev = device({ unit: 1, points: epever.points.filter((p) => p.name === "battery_voltage") });
    link.setFault(1, { kind: "bad-crc" });
    const r = await dev.poll(1);
    expect(r.find((x) => x.point === "dev-1/battery_voltage")).toMatchObject({ value: null, quality: "bad" });
    expect(dev.health().counters).toMatchObject({ crc: 2, retries: 1 });
    expect(dev.health().lastError).toMatch(/CRC error in the reply reading 1 at input 0x3104/);
    link.setFault(1, { kind: "none" });
    expect(values(await dev.poll(2)).battery_voltage).toBeCloseTo(sim.get("battery_voltage") as number, 2);
  });

  it("backs off a device that stopped answering, probes it now and then, and sees it come back", async () => {
    const sim = new SimDevice(epever, { freeze: true });
    const { link, device } = rig({ 1: sim });
    const dev = device({ unit: 1, points: epever.points, offlineAfter: 2, probeInterval: 10_000, retries: 0 });
    link.setFault(1, { kind: "no-answer" });
    await dev.poll(1000);
    expect(dev.health().online).toBe(true);
    await dev.poll(2000);
    expect(dev.health().online).toBe(false);
    link.log.length = 0;
    const backedOff = await dev.poll(3000);
    expect(link.log).toHaveLength(0); // the line is left to the healthy devices
    expect(values(backedOff)).toEqual({ online: false });
    await dev.poll(12_000); // probe time: one request only
    expect(link.log).toHaveLength(1);
    link.setFault(1, { kind: "none" });
    await dev.poll(22_000);
    expect(dev.health().online).toBe(true);
    const back = values(await dev.poll(23_000));
    expect(back.online).toBe(true);
    expect(back.battery_voltage).toBeCloseTo(sim.get("battery_voltage") as number, 2);
  });

  it("gives each device its turn on a shared line", async () => {
    const { link, device } = rig({ 1: new SimDevice(sdm630), 2: new SimDevice(epever) });
    const meter = device({ unit: 1, points: sdm630.points, limits: { maxRegisters: 2, maxBits: 2000, maxGap: 0 } });
    const solar = device({ unit: 2, points: epever.points.filter((p) => p.type === "uint16").slice(0, 3), limits: { maxRegisters: 1, maxBits: 2000, maxGap: 0 } });
    await Promise.all([meter.poll(1), solar.poll(1)]);
    const order = link.log.map((r) => r.unit);
    // The meter has many more requests, yet the solar controller's come early, interleaved.
    const solarPositions = order.flatMap((u, i) => (u === 2 ? [i] : []));
    expect(Math.max(...solarPositions)).toBeLessThan(order.length / 2);
  });

  it("recovers when the adapter is unplugged and plugged back", async () => {
    const sim = new SimDevice(epever, { freeze: true });
    const { link, device, line } = rig({ 1: sim });
    const dev = device({ unit: 1, points: epever.points.slice(0, 2) });
    expect(values(await dev.poll(1)).online).toBe(true);
    link.unplug();
    const r = await dev.poll(2);
    expect(r.filter((x) => x.quality === "bad")).toHaveLength(2);
    expect(dev.health().counters.disconnected).toBeGreaterThan(0);
    expect(dev.health().lastError).toMatch(/no such device/);
    link.plug();
    const back = await dev.poll(3);
    expect(back.every((x) => x.quality === "good")).toBe(true);
    expect(line.stats().opens).toBe(2);
  });

  it("writes with read-back: the EPEVER load output", async () => {
    const sim = new SimDevice(epever);
    const { device } = rig({ 1: sim });
    const dev = device({ unit: 1, points: epever.points });
    const load = epever.points.find((p) => p.table === "coil" && p.address === 0x0002)!;
    expect(await dev.writePoint(load.name, true)).toEqual({ point: load.name, written: true, readBack: true });
    expect(sim.get(load.name)).toBe(true);
    await expect(dev.writePoint("battery_voltage", 1)).rejects.toThrow(/input table, which cannot be written/);
    await expect(dev.writePoint("nope", 1)).rejects.toThrow(/has no point 'nope'/);
  });
});

describe("ModbusDevice: what a device refused is tried again", () => {
  const rtu115200 = wireModel({ kind: "rtu", baud: 115200, parity: "none", dataBits: 8, stopBits: 1 });
  const MIN = 60_000;

  it("EPEVER without its profile's facts: a read past its table is refused, split, remembered, and tried again after reprobe_interval", async () => {
    const sim = new SimDevice(epever, { freeze: true });
    const { log, lines } = recordingLogger();
    const { link, device } = rig({ 1: sim }, { log });
    const inputs = epever.points.filter((p) => p.table === "input" && p.address < 0x3200);
    // As a generic device (no profile, so no facts): the planner merges over what the controller refuses.
    const dev = device({ unit: 1, points: inputs, limits: { ...PROTOCOL_LIMITS }, wire: rtu115200, reprobeInterval: 10 * MIN });
    const first = values(await dev.poll(1000));
    for (const p of inputs) expect(first[p.name], p.name).toBeCloseTo(sim.get(p.name) as number, 2);
    expect(dev.health().counters.exception).toBeGreaterThan(0);
    const refusedLines = lines().filter((l) => /refused a read/.test(l));
    expect(refusedLines.length).toBeGreaterThan(0);
    const excluded = dev.health().excluded;
    expect(excluded.length).toBeGreaterThan(0);
    for (const e of excluded) expect(e).toMatchObject({ what: expect.stringMatching(/^reads across input 0x31/), since: 1000, retryAt: 1000 + 10 * MIN });
    // Remembered: the next polls are not refused.
    const exceptions = dev.health().counters.exception;
    link.log.length = 0;
    await dev.poll(2000);
    await dev.poll(1000 + 10 * MIN - 1);
    expect(dev.health().counters.exception).toBe(exceptions);
    expect(link.log.every((r) => r.address + r.count <= 0x3112 || r.address >= 0x311a)).toBe(true);
    // After the interval the merged read goes out again: still refused, so excluded again,
    // since the first refusal, until the next interval; said once at debug level, not again at info.
    link.log.length = 0;
    await dev.poll(1000 + 10 * MIN);
    expect(link.log[0]).toMatchObject({ address: 0x3100 });
    expect(link.log[0]!.count).toBeGreaterThan(18);
    expect(dev.health().counters.exception).toBeGreaterThan(exceptions);
    for (const e of dev.health().excluded) expect(e).toMatchObject({ since: 1000, retryAt: 1000 + 20 * MIN });
    expect(lines().filter((l) => /refused a read/.test(l) && !/still refused/.test(l))).toEqual(refusedLines);
  });

  it("a device answering 'illegal data address' to everything for a while gets every point back after the interval", async () => {
    const sim = new SimDevice(sdm630, { freeze: true });
    const { log, lines } = recordingLogger();
    const { link, device } = rig({ 1: sim }, { log });
    const points = sdm630.points.filter((p) => p.table === "input").slice(0, 6);
    const dev = device({ unit: 1, points, limits: readLimits("sdm630", {}), reprobeInterval: 5 * MIN });
    link.setFault(1, { kind: "exception", code: 2 });
    const confused = values(await dev.poll(0));
    expect(Object.values(confused).filter((v) => v === "(bad)")).toHaveLength(6);
    expect(dev.health().unsupported).toHaveLength(6);
    expect(dev.health().requestsPerPoll).toBe(0);
    expect(dev.health().excluded).toContainEqual({ what: "point voltage_l1 (input 0x0000)", since: 0, retryAt: 5 * MIN });
    link.setFault(1, { kind: "none" });
    link.log.length = 0;
    await dev.poll(5 * MIN - 1);
    expect(link.log).toHaveLength(0); // nothing is read until the interval is over
    const back = values(await dev.poll(5 * MIN));
    for (const p of points) expect(back[p.name], p.name).toBeCloseTo(sim.get(p.name) as number, 3);
    expect(link.log.map((r) => [r.address, r.count])).toEqual([[0, 12]]);
    expect(dev.health()).toMatchObject({ unsupported: [], excluded: [], requestsPerPoll: 1 });
    expect(lines()).toContain("dev-1: point voltage_l1 (input 0x0000) readable again");
  });

  it("tries again at once when the device answers again after being offline", async () => {
    const points: ModbusPoint[] = [
      { name: "a", table: "holding", address: 10, type: "uint16", sim: { wave: "constant", min: 7, max: 7 } },
      { name: "b", table: "holding", address: 11, type: "uint16", sim: { wave: "constant", min: 9, max: 9 } },
    ];
    // Until its restart the device does not implement b.
    const units = new Map([[1, new SimDevice([points[0]!])]]);
    const link = new SimLink(units);
    const line = new ModbusLine("test-line", link, { interFrameMs: 0, reopenMs: 0 });
    line.acquire();
    const opts = { name: "dev", unit: 1, points, interval: 1000, timeout: 20, retries: 0, limits: { ...PROTOCOL_LIMITS }, offlineAfter: 1, probeInterval: 10_000, reprobeInterval: 60 * MIN };
    const dev = new ModbusDevice(opts, line, silentLogger());
    expect(values(await dev.poll(0))).toEqual({ a: 7, b: "(bad)", online: true });
    expect(dev.health().unsupported).toEqual(["b"]);
    link.setFault(1, { kind: "no-answer" });
    await dev.poll(1000);
    expect(dev.health().online).toBe(false);
    units.set(1, new SimDevice(points));
    link.setFault(1, { kind: "none" });
    await dev.poll(20_000); // the probe: answered, online again
    expect(dev.health().online).toBe(true);
    expect(dev.health().excluded.map((e) => e.retryAt)).toEqual([20_000, 20_000]);
    link.log.length = 0;
    expect(values(await dev.poll(21_000))).toEqual({ a: 7, b: 9, online: true });
    expect(link.log).toEqual([{ unit: 1, fc: 3, address: 10, count: 2 }]);
    expect(dev.health().excluded).toEqual([]);
  });
});
