/**
 * The config of the Sala Smart work: i2c and gpio sources and rooms, with every mistake reported
 * with its path (unknown driver, address not allowed, two sensors publishing the same point,
 * a room reading a point nobody produces…).
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkConfigFile, parseConfigText } from "../../src/agent/config.js";

const minimal = `
site: s1
gateway: gw1
uplink: { url: "mqtt://127.0.0.1:1883" }
`;

function errorsOf(text: string): string[] {
  const r = parseConfigText(minimal + text, "/etc/edge-agent");
  if (r.ok) throw new Error("expected errors");
  return r.errors;
}

describe("config: i2c, gpio and rooms", () => {
  it("accepts configs/sala-smart.yaml and fills the defaults", () => {
    const r = checkConfigFile(join("configs", "sala-smart.yaml"));
    expect(r.ok ? [] : r.errors).toEqual([]);
    if (!r.ok) return;
    const [i2c, gpio] = r.config.sources;
    expect(i2c).toMatchObject({ type: "i2c", name: "room-101", bus: 1, interval: 10_000, simulated: false });
    expect(i2c!.type === "i2c" && i2c!.sensors.map((s) => s.address)).toEqual([0x44, 0x62, 0x76, 0x23]);
    expect(gpio).toMatchObject({ type: "gpio", pin: 17, edge: "both", debounce: 50, active_low: false, point: "presence", interval: 30_000 });
    expect(r.config.rooms[0]).toMatchObject({ name: "room-101", hold: 600_000, co2_bands: { good: 800, fair: 1200, hysteresis: 25 } });
  });

  it("takes an address as a number (YAML 0x44) or a \"0x44\" string", () => {
    const r = parseConfigText(`${minimal}sources:
  - type: i2c
    name: r
    sensors: [{ driver: sht3x, address: 0x45 }, { driver: bme280, address: "0x77", only: [pressure] }, { driver: bh1750, address: 92 }]
`);
    expect(r.ok && r.config.sources[0]!.type === "i2c" && r.config.sources[0]!.sensors.map((s) => s.address)).toEqual([0x45, 0x77, 0x5c]);
  });

  it("reports bad shapes with their paths", () => {
    expect(
      errorsOf(`sources:
  - type: i2c
    name: r
    bus: -1
    sensors: [{ driver: sht3x, address: "0x4G" }, { driver: sht3x, address: 0x80 }, { driver: bh1750, mtreg: 300 }, { driver: sht4x, only: [co3] }]
  - { type: gpio, name: p, pin: 60, edge: up }
  - { type: gpio, name: q }
  - { type: i2c, name: s, sensors: [] }
`),
    ).toEqual([
      "sources[0].bus: Too small: expected number to be >=0",
      'sources[0].sensors[0].address: expected a 7-bit I²C address 0x03–0x77, like 0x44 or "0x44"',
      'sources[0].sensors[1].address: expected a 7-bit I²C address 0x03–0x77, like 0x44 or "0x44"',
      "sources[0].sensors[2].mtreg: Too big: expected number to be <=254",
      "sources[0].sensors[3].only[0]: expected one of: temperature, humidity, co2, pressure, illuminance",
      "sources[1].pin: expected a BCM GPIO number 0–53",
      "sources[1].edge: expected one of: rising, falling, both",
      "sources[2].pin: required",
      "sources[3].sensors: needs at least one sensor",
    ]);
  });

  it("checks drivers, addresses, options and point ids across sensors, naming the place", () => {
    expect(
      errorsOf(`sources:
  - type: i2c
    name: room-1
    sensors:
      - { driver: sht99 }
      - { driver: sht4x, address: 0x62 }
      - { driver: scd4x, precision: high }
      - { driver: bme280, only: [co2, pressure] }
      - { driver: sht3x, address: 0x45 }
      - { driver: bh1750, address: 0x45 }
      - { driver: bh1750, address: 0x5c, prefix: desk }
`),
    ).toEqual([
      "sources[0].sensors[0].driver: unknown driver 'sht99'; known: sht3x, sht4x, scd4x (SCD40, SCD41), bme280, bh1750",
      "sources[0].sensors[1].address: 0x62 is not an address of sht4x (allowed: 0x44, 0x45)",
      "sources[0].sensors[2].precision: not an option of scd4x",
      "sources[0].sensors[2].address: address 0x62 is also sensors[1] (sht4x) on this bus",
      "sources[0].sensors[2]: point 'room-1/temperature' is also produced by sensors[1] (sht4x); give one of them a prefix (or an only: list)",
      "sources[0].sensors[2]: point 'room-1/humidity' is also produced by sensors[1] (sht4x); give one of them a prefix (or an only: list)",
      "sources[0].sensors[3].only: bme280 does not measure co2 (it measures temperature, pressure, humidity)",
      "sources[0].sensors[4]: point 'room-1/temperature' is also produced by sensors[1] (sht4x); give one of them a prefix (or an only: list)",
      "sources[0].sensors[4]: point 'room-1/humidity' is also produced by sensors[1] (sht4x); give one of them a prefix (or an only: list)",
      "sources[0].sensors[5].address: 0x45 is not an address of bh1750 (allowed: 0x23, 0x5c)",
      "sources[0].sensors[5].address: address 0x45 is also sensors[4] (sht3x) on this bus",
    ]);
  });

  it("a prefix or an only: list resolves duplicate points", () => {
    const r = parseConfigText(`${minimal}sources:
  - type: i2c
    name: room-1
    sensors: [{ driver: sht4x }, { driver: scd4x, prefix: scd41 }, { driver: bme280, only: [pressure] }]
`);
    expect(r.ok ? [] : r.errors).toEqual([]);
  });

  it("one sensor address per physical bus across sources; one source per GPIO pin; simulated ones are on their own", () => {
    expect(
      errorsOf(`sources:
  - { type: i2c, name: a, bus: 1, sensors: [{ driver: sht4x }] }
  - { type: i2c, name: b, bus: 1, sensors: [{ driver: sht3x }] }
  - { type: i2c, name: c, bus: 0, sensors: [{ driver: sht3x }] }
  - { type: i2c, name: d, bus: 1, simulated: true, sensors: [{ driver: sht3x }] }
  - { type: gpio, name: pir-1, pin: 17 }
  - { type: gpio, name: pir-2, pin: 17 }
  - { type: gpio, name: pir-3, pin: 17, simulated: true }
  - { type: gpio, name: a, pin: 18 }
`),
    ).toEqual([
      "sources[1].sensors[0].address: address 0x44 on bus 1 is also sources[0].sensors[0].address",
      "sources[5].pin: GPIO 17 is also sources[4].pin",
      "sources[7].name: duplicate name 'a' (also sources[0].name)",
    ]);
  });

  it("checks rooms: inputs some source produces, bands in order, derived points not taken", () => {
    expect(
      errorsOf(`sources:
  - { type: i2c, name: room-1, sensors: [{ driver: scd4x }] }
  - { type: simulated, name: room-2, interval: 1s, points: [{ name: occupied }] }
  - { type: gpio, name: pir, pin: 4 }
rooms:
  - { name: room-1, co2: room-1/co2, humidity: room-1/humidity, temperature: room-1/temprature, co2_bands: { good: 1000, fair: 900 } }
  - { name: room-2, presence: pir/presence }
  - { name: room-3 }
  - { name: room-1, co2: room-1/co2 }
  - { name: room-4, co2: "room 4" }
`),
    ).toEqual([
      "rooms[4].co2: expected a point id like room-101/co2",
      "rooms[0].temperature: no source produces 'room-1/temprature'",
      "rooms[0].co2_bands.fair: must be above good (1000)",
      "rooms[1].name: 'room-2/occupied' is already a point of a source",
      "rooms[2]: a room needs at least one of: presence, co2, temperature, humidity",
      "rooms[3].name: duplicate room 'room-1' (also rooms[0])",
      "rooms[4].co2: no source produces 'room 4'",
    ]);
  });
});
