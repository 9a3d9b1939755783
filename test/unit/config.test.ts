import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { configJsonSchema } from "../../src/cli/config.js";
import { checkConfigFile, parseConfigText } from "../../src/agent/config.js";
import { tempDir } from "../helpers/tmp.js";

const minimal = `
site: s1
gateway: gw1
uplink: { url: "mqtt://127.0.0.1:1883" }
`;

function errorsOf(text: string): string[] {
  const r = parseConfigText(text, "/etc/edge-agent");
  if (r.ok) throw new Error("expected errors");
  return r.errors;
}

describe("config", () => {
  it("fills defaults and resolves paths against the config's directory", () => {
    const r = parseConfigText(minimal, "/etc/edge-agent");
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.store).toMatchObject({ path: "/etc/edge-agent/data/outbox.db", when_full: "drop-oldest", quota: 268_435_456, sync: "full" });
    expect(r.config.uplink).toMatchObject({ root: "edge", protocol: "auto", keepalive: 30_000 });
    expect(r.config.uplink.batch).toEqual({ max_readings: 1000, max_bytes: 65_536, linger: 200 });
    expect(r.config.sources).toEqual([]);
  });

  it("parses durations and sizes with units", () => {
    const r = parseConfigText(
      `${minimal}store: { quota: 10MB, max_age: 7d }\nsources:\n  - { type: simulated, name: m, interval: 250ms, points: [{ name: p, period: 1m }] }\n`,
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.store.quota).toBe(10 * 1024 * 1024);
    expect(r.config.store.max_age).toBe(7 * 86_400_000);
    expect(r.config.sources[0]!.interval).toBe(250);
    const src = r.config.sources[0]!;
    expect(src.type === "simulated" && src.points[0]!.period).toBe(60_000);
  });

  it("reports every error at once, each with its path", () => {
    const errors = errorsOf(`
site: s1
gateway: "gw/1"
uplink: { url: "http://x", colour: blue }
store: { quota: lots, when_full: drop-random }
sources:
  - { type: simulated, name: a, interval: 1s, points: [{ name: p }] }
  - { type: simulated, name: a, interval: 1s, points: [{ name: p }, { name: p }] }
  - { type: simulated, name: c, interval: fast, points: [{ name: p }] }
  - { type: modbus-magic, name: d }
`);
    expect(errors).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^gateway: expected a gateway id .*no '\/'/),
        expect.stringMatching(/^uplink\.url: expected a broker URL like mqtt:\/\/host:1883/),
        "uplink.colour: unknown key",
        "store.quota: expected a size like 256MB",
        "store.when_full: expected one of: drop-oldest, drop-newest",
        "sources[2].interval: expected a duration like 5s",
        "sources[3].type: unknown source type 'modbus-magic'; expected one of: simulated, modbus, i2c, gpio, opcua, bridge",
      ]),
    );
    expect(errors.length).toBeGreaterThanOrEqual(7);
  });

  it("reports duplicates after the shape is right", () => {
    const errors = errorsOf(`${minimal}sources:
  - { type: simulated, name: a, interval: 1s, points: [{ name: p }] }
  - { type: simulated, name: a, interval: 1s, points: [{ name: p }, { name: p }] }
`);
    expect(errors).toEqual([
      "sources[1].name: duplicate name 'a' (also sources[0].name)",
      "sources[1].points[1].name: duplicate point name 'p' in 'a'",
    ]);
  });

  it("checks Modbus lines: one transport, known profiles and points, unique units and names", () => {
    const errors = errorsOf(`${minimal}
simulators:
  - { type: modbus, name: sim, units: [{ unit: 1, profile: sdm999 }] }
sources:
  - { type: simulated, name: main, interval: 1s, points: [{ name: p }] }
  - type: modbus
    name: line-1
    rtu: { device: /dev/ttyUSB0, baud: 9600, parity: mark }
    tcp: { host: 10.0.0.2 }
    devices:
      - { name: main, unit: 1, profile: sdm630 }
      - { name: m2, unit: 1, profile: sdm630, only: [voltage_l1, voltage_l9] }
      - { name: m3, unit: 300, profile: nosuch }
      - { name: m4, unit: 4 }
  - { type: modbus, name: line-2, simulator: other, devices: [{ name: m5, unit: 5, profile: epever }] }
`);
    expect(errors).toEqual(
      expect.arrayContaining([
        "sources[1].rtu.parity: expected one of: none, even, odd",
        "sources[1].devices[2].unit: expected a unit id 1–247",
      ]),
    );
    // Shape errors come first; the cross-checks run once the shape is right.
    const cross = errorsOf(`${minimal}
simulators:
  - { type: modbus, name: sim, units: [{ unit: 1, profile: sdm999 }] }
sources:
  - { type: simulated, name: main, interval: 1s, points: [{ name: p }] }
  - type: modbus
    name: line-1
    rtu: { device: /dev/ttyUSB0 }
    tcp: { host: 10.0.0.2 }
    devices:
      - { name: main, unit: 1, profile: sdm630 }
      - { name: m2, unit: 1, profile: sdm630, only: [voltage_l1, voltage_l9] }
      - { name: m3, unit: 3, profile: nosuch }
      - { name: m4, unit: 4 }
  - { type: modbus, name: line-2, simulator: other, devices: [{ name: m5, unit: 5, profile: epever }] }
`);
    expect(cross).toEqual([
      "sources[1]: has rtu and tcp: choose one",
      "sources[1].devices[0].name: duplicate name 'main' (also sources[0].name)",
      "sources[1].devices[1].unit: unit 1 is also 'main' on this line",
      "sources[1].devices[1].only: not points of sdm630: voltage_l9",
      "sources[1].devices[2].profile: unknown profile 'nosuch'; built in: sdm120, sdm630, epever",
      "sources[1].devices[3].points: a device needs a profile or points",
      "sources[2].simulator: no simulator named 'other' under simulators:",
      "simulators[0].units[0].profile: unknown profile 'sdm999'; built in: sdm120, sdm630, epever",
    ]);
  });

  it("refuses two sources on one serial line, also under another name of it, naming both places", () => {
    const dir = tempDir();
    const tty = join(dir, "ttyUSB0");
    writeFileSync(tty, "");
    mkdirSync(join(dir, "by-id"));
    symlinkSync(tty, join(dir, "by-id", "usb-FTDI_FT232R-if00-port0"));
    const errors = errorsOf(`${minimal}
sources:
  - { type: modbus, name: line-a, rtu: { device: ${tty} }, devices: [{ name: m1, unit: 1, profile: sdm120 }] }
  - { type: modbus, name: line-b, rtu: { device: ${join(dir, "by-id", "usb-FTDI_FT232R-if00-port0")}, baud: 2400 }, devices: [{ name: m2, unit: 2, profile: sdm120 }] }
  - { type: modbus, name: line-c, rtu_over_tcp: { host: 10.0.0.9 }, devices: [{ name: m3, unit: 3, profile: sdm120 }] }
  - { type: modbus, name: line-d, rtu_over_tcp: { host: 10.0.0.9, port: 502 }, devices: [{ name: m4, unit: 4, profile: sdm120 }] }
  - { type: modbus, name: line-e, tcp: { host: 10.0.0.9 }, devices: [{ name: m5, unit: 5, profile: sdm120 }] }
`);
    expect(errors).toEqual([
      `sources[1].rtu.device: ${join(dir, "by-id", "usb-FTDI_FT232R-if00-port0")} (→ ${tty}) is also sources[0].rtu.device; put both lines' devices under one source`,
      "sources[3].rtu_over_tcp: converter 10.0.0.9:502 is also sources[2].rtu_over_tcp; put both lines' devices under one source",
    ]);
  });

  it("checks streetlights and chargers against the devices they use", () => {
    const errors = errorsOf(`${minimal}
sources:
  - type: modbus
    name: line
    tcp: { host: 10.0.0.2 }
    devices:
      - { name: solar-1, unit: 1, profile: epever }
      - { name: m1, unit: 2, profile: sdm120, only: [voltage] }
streetlights:
  - { name: s1, relay: { modbus: { device: solar-9, point: load_output } }, latitude: 45, longitude: 9 }
  - { name: s2, relay: { modbus: { device: solar-1, point: battery_voltage } }, latitude: 45, longitude: 9, timezone: Mars/Olympus, part_night: { from: "00:30", to: "05:00", mode: dim }, presence_boost: {} }
chargers:
  - { name: c1, relay: { simulated: true }, meter: m1, max_power: 800 }
  - { name: s1, relay: { gpio: { pin: 22 } }, meter: nope, max_power: 800 }
`);
    expect(errors).toEqual([
      "streetlights[0].relay.modbus.device: no Modbus device named 'solar-9' under sources:",
      "streetlights[1].relay.modbus.point: 'solar-1.battery_voltage' is not a writable coil",
      "streetlights[1].part_night.mode: dim needs a dimmable lamp (dimmable: true); this one would stay fully on",
      "streetlights[1].presence_boost: needs presence: the point id of a presence input",
      "streetlights[1].timezone: unknown time zone 'Mars/Olympus' (expected an IANA name like Europe/Rome)",
      "chargers[0].power_point: 'm1' does not read a point 'active_power'",
      "chargers[0].energy_point: 'm1' does not read a point 'import_active_energy'",
      "chargers[1].name: duplicate name 's1' (also streetlights[0].name)",
      "chargers[1].meter: no Modbus device named 'nope' under sources:",
    ]);
  });

  it("names missing required keys", () => {
    expect(errorsOf("site: s1\n")).toEqual(["gateway: required", "uplink: required"]);
  });

  it("gives YAML syntax errors with line and column", () => {
    const errors = errorsOf("site: s1\ngateway: [unclosed\n");
    expect(errors[0]).toMatch(/^line \d+, column \d+: /);
  });

  it("rejects duplicate keys in YAML", () => {
    expect(errorsOf("site: a\nsite: b\n")[0]).toMatch(/line 2, column 1: .*[Uu]nique/);
  });

  it("reports a missing file in one line", () => {
    const r = checkConfigFile("/nonexistent/edge.yaml");
    expect(r).toEqual({ ok: false, errors: ["cannot read /nonexistent/edge.yaml: no such file"] });
  });

  it("accepts every config shipped in configs/", () => {
    for (const name of ["demo.yaml", "gateway.example.yaml", "sala-smart.yaml", "street-cabinet.yaml"]) {
      const r = checkConfigFile(join("configs", name));
      expect(r.ok ? [] : r.errors, name).toEqual([]);
    }
  });

  it("configs/edge-agent.schema.json is the schema as generated (run: edge-agent config schema --out configs/edge-agent.schema.json)", () => {
    const committed = JSON.parse(readFileSync("configs/edge-agent.schema.json", "utf8"));
    expect(committed).toEqual(configJsonSchema());
    expect(committed.properties.store.properties.when_full.enum).toEqual(["drop-oldest", "drop-newest"]);
    expect(committed.additionalProperties).toBe(false);
  });

  it("a config written to disk loads relative to its own directory", () => {
    const dir = tempDir();
    const file = join(dir, "edge.yaml");
    writeFileSync(file, `${minimal}store: { path: ./db/outbox.db }\n`);
    const r = checkConfigFile(file);
    expect(r.ok && r.config.store.path).toBe(join(dir, "db/outbox.db"));
  });
});
