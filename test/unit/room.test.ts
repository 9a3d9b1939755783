/**
 * Room metrics: occupancy with a hold time, CO₂ bands with hysteresis, dew point (Magnus,
 * Sonntag constants), events on change. Time is what the test passes in: no clock at all.
 */
import { describe, expect, it } from "vitest";
import type { RoomConfig } from "../../src/config/schema.js";
import type { Reading } from "../../src/model/reading.js";
import { createProcessors } from "../../src/processors/create.js";
import { co2Band, dewPoint, RoomProcessor } from "../../src/processors/room.js";
import { testConfig } from "../helpers/config.js";

const T0 = 1_700_000_000_000;
const MIN = 60_000;

function room(extra: Record<string, unknown> = {}): RoomConfig {
  const cfg = testConfig({
    uplink: { url: "mqtt://127.0.0.1:1883" },
    sources: [
      { type: "i2c", name: "room-101", sensors: [{ driver: "sht4x" }, { driver: "scd4x", only: ["co2"] }] },
      { type: "gpio", name: "room-101-pir", pin: 17 },
    ],
    rooms: [{ name: "room-101", presence: "room-101-pir/presence", co2: "room-101/co2", temperature: "room-101/temperature", humidity: "room-101/humidity", hold: "10m", ...extra }],
  });
  return cfg.rooms[0]!;
}

const pir = (ts: number, value: boolean | null): Reading => ({ point: "room-101-pir/presence", ts, value, quality: value === null ? "bad" : "good" });
const co2 = (ts: number, value: number): Reading => ({ point: "room-101/co2", ts, value, quality: "good" });
const events = (out: { events: Reading[] }) => out.events.map((e) => [e.point.split("/")[1], e.value, e.ts - T0]);

describe("occupancy", () => {
  it("occupied on presence, free once no presence for the hold time (from the end of presence)", () => {
    const p = new RoomProcessor(room());
    expect(events(p.process([pir(T0, false)], T0))).toEqual([["occupied", false, 0]]); // the first state is an event
    expect(events(p.process([pir(T0 + MIN, true)], T0 + MIN))).toEqual([["occupied", true, MIN]]);
    expect(events(p.process([pir(T0 + 2 * MIN, true)], T0 + 2 * MIN))).toEqual([]); // still there: no event
    expect(events(p.process([pir(T0 + 3 * MIN, false)], T0 + 3 * MIN))).toEqual([]);
    expect(events(p.tick(T0 + 12 * MIN))).toEqual([]); // 9 min after the last presence
    const free = p.tick(T0 + 13 * MIN);
    expect(events(free)).toEqual([["occupied", false, 13 * MIN]]);
    expect(free.readings).toEqual([{ point: "room-101/occupied", ts: T0 + 13 * MIN, value: false, quality: "good" }]);
    expect(events(p.tick(T0 + 20 * MIN))).toEqual([]);
  });

  it("a presence that stays active keeps the room occupied however long", () => {
    const p = new RoomProcessor(room({ hold: "5m" }));
    p.process([pir(T0, true)], T0);
    expect(events(p.tick(T0 + 60 * MIN))).toEqual([]);
    p.process([pir(T0 + 61 * MIN, false)], T0 + 61 * MIN);
    expect(events(p.tick(T0 + 66 * MIN))).toEqual([["occupied", false, 66 * MIN]]);
  });

  it("each motion restarts the hold; the free time is stamped when the hold ran out, even if noticed later", () => {
    const p = new RoomProcessor(room({ hold: "10m" }));
    p.process([pir(T0, true), pir(T0 + 3000, false)], T0 + 3000);
    p.process([pir(T0 + 8 * MIN, true), pir(T0 + 8 * MIN + 3000, false)], T0 + 8 * MIN + 3000);
    expect(events(p.tick(T0 + 15 * MIN))).toEqual([]);
    // Edges delivered late (with the next poll) still count from when they happened.
    const out = p.process([pir(T0 + 30 * MIN, false)], T0 + 30 * MIN);
    expect(events(out)).toEqual([["occupied", false, 18 * MIN + 3000]]);
  });

  it("a failing presence sensor gives a bad occupied reading and changes nothing", () => {
    const p = new RoomProcessor(room());
    p.process([pir(T0, true)], T0);
    const out = p.process([pir(T0 + 1000, null)], T0 + 1000);
    expect(out.events).toEqual([]);
    expect(out.readings).toEqual([{ point: "room-101/occupied", ts: T0 + 1000, value: null, quality: "bad" }]);
  });
});

describe("CO₂ bands", () => {
  it("good < 800 ≤ fair < 1200 ≤ poor by default, an event on each change", () => {
    const p = new RoomProcessor(room());
    const run = (ppm: number, i: number) => events(p.process([co2(T0 + i * 5000, ppm)], T0 + i * 5000));
    expect(run(650, 0)).toEqual([["co2_band", "good", 0]]);
    expect(run(799, 1)).toEqual([]);
    expect(run(800, 2)).toEqual([["co2_band", "fair", 10_000]]);
    expect(run(1250, 3)).toEqual([["co2_band", "poor", 15_000]]);
    expect(run(1190, 4)).toEqual([]); // hysteresis: not yet clearly below 1200
    expect(run(1170, 5)).toEqual([["co2_band", "fair", 25_000]]);
    expect(run(700, 6)).toEqual([["co2_band", "good", 30_000]]);
  });

  it("no flapping around a threshold", () => {
    const p = new RoomProcessor(room());
    const all = [790, 805, 795, 810, 790, 801, 798].flatMap((ppm, i) => p.process([co2(T0 + i, ppm)], T0 + i).events.map((e) => e.value));
    expect(all).toEqual(["good", "fair"]);
  });

  it("configurable thresholds and hysteresis", () => {
    const bands = { good: 600, fair: 1000, hysteresis: 0 };
    expect([599, 600, 999, 1000].map((v) => co2Band(v, bands))).toEqual(["good", "fair", "fair", "poor"]);
    expect(co2Band(999, bands, "poor")).toBe("fair");
    const p = new RoomProcessor(room({ co2_bands: { good: 600, fair: 1000 } }));
    expect(p.process([co2(T0, 700)], T0).readings).toEqual([{ point: "room-101/co2_band", ts: T0, value: "fair", quality: "good" }]);
  });
});

describe("dew point", () => {
  it("Magnus formula with Sonntag's constants (a = 17.62, b = 243.12 °C)", () => {
    expect(dewPoint(25, 50)).toBeCloseTo(13.85, 2);
    expect(dewPoint(20, 100)).toBeCloseTo(20, 6);
    expect(dewPoint(-10, 80)).toBeCloseTo(-12.8, 1); // over water, as tables give it
    expect(dewPoint(22, 0)).toBeNull();
  });

  it("a derived reading from the latest temperature and humidity; bad when an input is bad", () => {
    const p = new RoomProcessor(room());
    const t = (ts: number, value: number | null): Reading => ({ point: "room-101/temperature", ts, value, quality: value === null ? "bad" : "good" });
    const h = (ts: number, value: number): Reading => ({ point: "room-101/humidity", ts, value, quality: "good" });
    expect(p.process([t(T0, 25)], T0).readings).toEqual([]); // no humidity yet
    expect(p.process([t(T0 + 10_000, 25), h(T0 + 10_000, 50)], T0 + 10_000).readings).toEqual([
      { point: "room-101/dew_point", ts: T0 + 10_000, value: 13.85, quality: "good" },
    ]);
    expect(p.process([t(T0 + 20_000, null), h(T0 + 20_000, 50)], T0 + 20_000).readings).toEqual([
      { point: "room-101/dew_point", ts: T0 + 20_000, value: null, quality: "bad" },
    ]);
    expect(p.process([t(T0 + 30_000, 25), h(T0 + 30_000, 50)], T0 + 30_000).events).toEqual([]); // not an event
  });
});

it("createProcessors makes one room processor per rooms: entry", () => {
  const cfg = testConfig({
    uplink: { url: "mqtt://127.0.0.1:1883" },
    sources: [{ type: "i2c", name: "r1", sensors: [{ driver: "scd4x" }] }],
    rooms: [
      { name: "r1", co2: "r1/co2" },
      { name: "r2", co2: "r1/co2" },
    ],
  });
  expect(createProcessors(cfg).map((p) => p.name)).toEqual(["r1", "r2"]);
});
