import { describe, expect, it } from "vitest";
import { getProfile } from "../../drivers/modbus/registry.js";
import type { ModbusPoint } from "../../drivers/modbus/types.js";
import { ModbusLine } from "../../src/buses/modbus/line.js";
import { SimDevice } from "../../src/simulators/modbus/device.js";
import { SimLink } from "../../src/buses/modbus/sim-link.js";
import { silentLogger } from "../../src/ops/logger.js";
import { ModbusDevice, type ModbusDeviceOptions } from "../../src/sources/modbus/device.js";
import { naiveRequestCount, planReads } from "../../src/sources/modbus/planner.js";

const sdm630 = getProfile("sdm630")!;
const epever = getProfile("epever")!;

function rig(devices: Record<number, SimDevice>, lineOpts: { reopenMs?: number } = {}) {
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
      silentLogger(),
    );
    line.acquire();
    return d;
  };
  return { link, line, device };
}

const values = (readings: { point: string; value: unknown; quality: string }[]) =>
  Object.fromEntries(readings.map((r) => [r.point.split("/")[1], r.quality === "good" ? r.value : `(${r.quality})`]));

describe("ModbusDevice", () => {
  it("reads a whole SDM630 in a handful of requests and decodes every point", async () => {
    const sim = new SimDevice(sdm630, { freeze: true });
    const { link, device } = rig({ 1: sim });
    const dev = device({ unit: 1, points: sdm630.points });
    const first = await dev.poll(1000);
    const v = values(first);
    for (const name of sim.pointNames().filter((n) => !n.startsWith("identify:"))) {
      const expected = sim.get(name);
      if (typeof expected === "number") expect(v[name], name).toBeCloseTo(expected, 3);
      else expect(v[name], name).toBe(expected);
    }
    expect(v.online).toBe(true);
    // The simulator refuses reads over unmapped registers: the device learns where to split.
    link.log.length = 0;
    await dev.poll(2000);
    const perPoll = link.log.length;
    expect(perPoll).toBe(dev.health().requestsPerPoll);
    // It learned exactly the device's holes: as few reads as reading over no hole at all allows.
    expect(perPoll).toBe(planReads(sdm630.points, { maxRegisters: 125, maxBits: 2000, maxGap: 0 }).length);
    expect(perPoll).toBeLessThan(naiveRequestCount(sdm630.points) / 2);
    expect(dev.health().counters.exception).toBeGreaterThan(0); // only from the first poll
    const exceptionsAfterLearning = dev.health().counters.exception;
    await dev.poll(3000);
    expect(dev.health().counters.exception).toBe(exceptionsAfterLearning);
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
