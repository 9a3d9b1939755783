/**
 * Writes to a Modbus device go through its circuit breaker and a bounded queue, and take the
 * line's urgent slot: a relay that stopped answering must not take the line from the meters
 * that share it (issue 11, item 7).
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { getProfile } from "../../drivers/modbus/registry.js";
import type { ModbusPoint } from "../../drivers/modbus/types.js";
import { ModbusLine } from "../../src/buses/modbus/line.js";
import { SimDevice } from "../../src/simulators/modbus/device.js";
import { SimLink } from "../../src/buses/modbus/sim-link.js";
import { Scheduler } from "../../src/agent/scheduler.js";
import { ModbusCoilRelay } from "../../src/control/relay.js";
import { silentLogger } from "../../src/ops/logger.js";
import { DeviceOfflineError, ModbusDevice, type ModbusDeviceOptions } from "../../src/sources/modbus/device.js";

const sdm120 = getProfile("sdm120")!;
const meterPoints = sdm120.points.filter((p) => p.name === "active_power" || p.name === "import_active_energy");
const relayPoints: ModbusPoint[] = [0, 1, 2, 3].map((i) => ({ name: `relay_${i + 1}`, table: "coil", address: i, type: "bool", writable: true }));

afterEach(() => {
  vi.useRealTimers();
});

/** A line with in-process devices; `clock` is the wall clock the devices' writes see. */
function rig(devices: Record<number, SimDevice>) {
  const link = new SimLink(new Map(Object.entries(devices).map(([k, v]) => [Number(k), v])));
  const line = new ModbusLine("cabinet", link, { interFrameMs: 0, reopenMs: 0 });
  const clock = { now: 0 };
  const device = (over: Partial<ModbusDeviceOptions> & { unit: number; points: ModbusPoint[] }) => {
    const d = new ModbusDevice(
      {
        name: `dev-${over.unit}`,
        interval: 1000,
        timeout: 20,
        retries: 0,
        limits: { maxRegisters: 125, maxBits: 2000, maxGap: 10 },
        offlineAfter: 2,
        probeInterval: 10_000,
        now: () => clock.now,
        ...over,
      },
      line,
      silentLogger(),
    );
    line.acquire();
    return d;
  };
  const framesTo = (unit: number) => link.log.filter((r) => r.unit === unit).length;
  return { link, line, clock, device, framesTo };
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

describe("ModbusDevice writes and the circuit breaker", () => {
  it("refuses a write to an offline device at once, naming it and when it is tried again, without touching the line", async () => {
    const { link, clock, device, framesTo } = rig({ 20: new SimDevice(relayPoints) });
    const relay = device({ unit: 20, points: relayPoints });
    link.setFault(20, { kind: "no-answer" });
    await relay.poll(1000);
    await relay.poll(2000);
    expect(relay.health().online).toBe(false);
    link.log.length = 0;
    clock.now = 3000;
    const err = await rejection(relay.writePoint("relay_1", false));
    expect(err).toBeInstanceOf(DeviceOfflineError);
    expect(err.message).toBe("dev-20 is offline since 1970-01-01T00:00:02Z (no answer (timeout) reading 4 at coil 0x0000); next attempt within 10s");
    expect((err as DeviceOfflineError).retryAt).toBe(12_000);
    // The message stays the same until the next attempt: callers that log a fault on change log it once.
    clock.now = 9000;
    expect((await rejection(relay.writePoint("relay_1", false))).message).toBe(err.message);
    expect(framesTo(20)).toBe(0);
    expect(relay.health().writes).toEqual({ sent: 0, ok: 0, failed: 0, refusedOffline: 2, refusedFull: 0, pending: 0 });
    expect(relay.health().offlineSince).toBe(2000);
  });

  it("lets a write through as the probe when one is due; it brings the device back online", async () => {
    const sim = new SimDevice(relayPoints);
    const { link, clock, device, framesTo } = rig({ 20: sim });
    const relay = device({ unit: 20, points: relayPoints });
    link.setFault(20, { kind: "no-answer" });
    await relay.poll(1000);
    await relay.poll(2000); // offline; next probe at 12 000

    // A probe-time write to a device still dead: one frame, then refused again until the next probe.
    link.log.length = 0;
    clock.now = 12_000;
    const failed = await rejection(relay.writePoint("relay_1", false));
    expect(failed.message).toMatch(/^dev-20 is offline since .*; next attempt within 10s$/);
    expect(framesTo(20)).toBe(1);
    clock.now = 12_500;
    await expect(relay.writePoint("relay_1", false)).rejects.toThrow(/offline/);
    await relay.poll(13_000); // the poll does not probe either: the write was the probe
    expect(framesTo(20)).toBe(1);

    // It answers again: the next write due as a probe goes through and the device is online.
    link.setFault(20, { kind: "none" });
    sim.set("relay_1", true);
    clock.now = 22_000;
    expect(await relay.writePoint("relay_1", false)).toEqual({ point: "relay_1", written: false, readBack: false });
    expect(sim.get("relay_1")).toBe(false);
    const h = relay.health();
    expect(h.online).toBe(true);
    expect(h.offlineSince).toBeNull();
    expect(h.writes).toEqual({ sent: 2, ok: 1, failed: 1, refusedOffline: 1, refusedFull: 0, pending: 0 });
    // Write frames are requests of the device like any other: the write, its read-back, one timeout.
    expect(h.counters).toMatchObject({ requests: 2 + 1 + 2, ok: 2, timeout: 3 });
    const polled = await relay.poll(23_000);
    expect(polled.find((r) => r.point === "dev-20/online")?.value).toBe(true);
  });

  it("counts writes nobody answers like failed polls: the device goes offline and writes stop reaching the line", async () => {
    const { link, clock, device, framesTo } = rig({ 20: new SimDevice(relayPoints) });
    const relay = device({ unit: 20, points: relayPoints, offlineAfter: 3 });
    link.setFault(20, { kind: "no-answer" });
    clock.now = 1000;
    for (let i = 0; i < 3; i++) await expect(relay.writePoint("relay_1", false)).rejects.toThrow(/no answer \(timeout\)/);
    expect(relay.health().online).toBe(false);
    expect(relay.health().lastError).toBe("no answer (timeout) writing relay_1");
    for (let i = 0; i < 20; i++) await expect(relay.writePoint("relay_1", false)).rejects.toBeInstanceOf(DeviceOfflineError);
    await relay.poll(2000); // backed off: the poll stays off the line too
    expect(framesTo(20)).toBe(3);
    expect(relay.health().writes).toMatchObject({ sent: 3, failed: 3, refusedOffline: 20 });
    expect(relay.health().counters).toMatchObject({ requests: 3, timeout: 3 });
  });

  it("counts a refused write (an exception) as an answer: the device stays online", async () => {
    const { link, device } = rig({ 20: new SimDevice(relayPoints) });
    const relay = device({ unit: 20, points: relayPoints, offlineAfter: 1 });
    link.setFault(20, { kind: "exception", code: 4 });
    await expect(relay.writePoint("relay_1", true)).rejects.toThrow(/exception 4/);
    expect(relay.health().online).toBe(true);
    expect(relay.health().writes).toMatchObject({ sent: 1, failed: 1 });
  });

  it("runs a device's writes one at a time and refuses more than one waiting write per writable point (at least 2)", async () => {
    const sim = new SimDevice(relayPoints);
    const solarPoints = getProfile("epever")!.points.filter((p) => p.name === "load_output");
    const { link, device, line } = rig({ 20: sim, 1: new SimDevice(solarPoints) });
    const relays = device({ unit: 20, points: relayPoints, timeout: 200 });
    link.setFault(20, { kind: "slow", ms: 10 });
    let deepest = 0;
    const watch = setInterval(() => (deepest = Math.max(deepest, line.stats().queued)), 1);
    // Four writable coils: one write in progress and four waiting; the sixth is refused.
    const writes = relayPoints.map((p) => relays.writePoint(p.name, true));
    writes.push(relays.writePoint("relay_1", false));
    const refused = await rejection(relays.writePoint("relay_2", false));
    expect(refused.message).toBe("dev-20: 4 writes are already waiting for the device; refused (is it answering? last error: none)");
    expect(relays.health().writes).toMatchObject({ pending: 5, refusedFull: 1 });
    await Promise.all(writes);
    clearInterval(watch);
    // One frame at a time reached the line, each write followed by its own read-back.
    expect(deepest).toBeLessThanOrEqual(1);
    expect(link.log.map((r) => r.fc)).toEqual([5, 1, 5, 1, 5, 1, 5, 1, 5, 1]);
    expect(sim.get("relay_1")).toBe(false);
    expect(relays.health().writes).toEqual({ sent: 5, ok: 5, failed: 0, refusedOffline: 0, refusedFull: 1, pending: 0 });

    // A device with one writable point still lets two wait.
    const solar = device({ unit: 1, points: solarPoints });
    const three = [0, 1, 2].map(() => solar.writePoint("load_output", true));
    await expect(solar.writePoint("load_output", true)).rejects.toThrow(/dev-1: 2 writes are already waiting/);
    await Promise.all(three);
  });

  it("a write that waited while the writes before it took the device offline is refused when its turn comes", async () => {
    const { link, clock, device, framesTo } = rig({ 20: new SimDevice(relayPoints) });
    const relay = device({ unit: 20, points: relayPoints, offlineAfter: 2 });
    link.setFault(20, { kind: "no-answer" });
    clock.now = 1000;
    const results = await Promise.allSettled(relayPoints.map((p) => relay.writePoint(p.name, false)));
    expect(results.map((r) => (r.status === "rejected" ? (r.reason as Error).constructor.name : "ok"))).toEqual(["ModbusError", "ModbusError", "DeviceOfflineError", "DeviceOfflineError"]);
    expect(framesTo(20)).toBe(2);
  });
});

describe("the last off at stop", () => {
  it("reaches the line even while the relay's device is backed off, and the charger stops with its relay off", async () => {
    const sim = new SimDevice(relayPoints);
    const { link, clock, device, framesTo } = rig({ 20: sim });
    const relayDevice = device({ unit: 20, points: relayPoints });
    const { Charger } = await import("../../src/control/charger.js");
    const charger = new Charger(
      { name: "bike-1", relay: new ModbusCoilRelay(relayDevice, "relay_1"), powerPoint: "m/p", energyPoint: "m/e", onlinePoint: "m/online", maxPowerW: 3000, maxKwh: 5, maxMinutes: 60, meterTimeoutMs: 30_000 },
      silentLogger(),
    );
    link.setFault(20, { kind: "no-answer" });
    await relayDevice.poll(1000);
    await relayDevice.poll(2000); // offline until 12 000
    sim.set("relay_1", true); // the relay is on, as a session left it
    // The device answers again, but the breaker does not know it yet.
    link.setFault(20, { kind: "none" });
    clock.now = 3000;
    link.log.length = 0;
    await expect(relayDevice.writePoint("relay_1", false)).rejects.toThrow(/offline/);
    expect(framesTo(20)).toBe(0);
    await charger.stop(3000);
    // The ordinary off was refused at once; the last one went to the line anyway, and held.
    expect(framesTo(20)).toBeGreaterThan(0);
    expect(sim.get("relay_1")).toBe(false);
    expect(charger.state()).toMatchObject({ relay: "off" });
  });
});

describe("a relay that never answers, on a line shared with healthy meters", () => {
  it("does not take the line from them: their polls keep their interval while the relay is written every second", async () => {
    vi.useFakeTimers({ now: 0 });
    const meters = { 1: new SimDevice(meterPoints), 2: new SimDevice(meterPoints) };
    const { link, device, framesTo } = rig({ ...meters, 20: new SimDevice(relayPoints) });
    link.setFault(20, { kind: "no-answer" });
    const opts = { timeout: 1000, offlineAfter: 3, probeInterval: 10_000, now: () => Date.now() };
    const meterA = device({ unit: 1, points: meterPoints, interval: 500, ...opts });
    const meterB = device({ unit: 2, points: meterPoints, interval: 500, ...opts });
    const relays = device({ unit: 20, points: relayPoints, interval: 10_000, ...opts });
    const scheduler = new Scheduler();
    for (const d of [meterA, meterB, relays]) scheduler.add(d.name, d.interval, async (tick) => void (await d.poll(tick)));
    scheduler.start();
    // What Charger.enforceOff does while the off is not confirmed: try again every second,
    // whether or not the previous attempt has finished.
    const relay = new ModbusCoilRelay(relays, "relay_1");
    let attempts = 0;
    let failures = 0;
    const enforceOff = setInterval(() => {
      attempts++;
      relay.set(false).catch(() => failures++);
    }, 1000);

    await vi.advanceTimersByTimeAsync(120_000);
    clearInterval(enforceOff);
    const stopped = scheduler.stop();
    await vi.advanceTimersByTimeAsync(5000);
    await stopped;

    // Every meter tick ran, apart from a few behind a probe of the relay (one timeout per 10 s).
    const stats = scheduler.stats();
    for (const name of [meterA.name, meterB.name]) {
      const s = stats[name]!;
      expect(s.runs + s.overruns).toBeGreaterThanOrEqual(235);
      expect(s.overruns, name).toBeLessThanOrEqual(40);
      expect(s.runs, name).toBeGreaterThanOrEqual(200);
    }
    // The relay costs the line its first few timeouts, then one probe per probe interval.
    expect(framesTo(20)).toBeLessThanOrEqual(3 + 12 + 3);
    expect(attempts).toBe(120);
    expect(failures).toBe(120);
    const w = relays.health().writes;
    expect(w.refusedOffline).toBeGreaterThanOrEqual(100);
    expect(w.sent + w.refusedOffline + w.refusedFull).toBe(120);
    expect(relays.health().online).toBe(false);
    expect(meterA.health().online && meterB.health().online).toBe(true);
  });
});
