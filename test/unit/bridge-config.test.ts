/**
 * `type: bridge` in the config: what a technician can get wrong is one line each, with its path
 * — a port another source already uses, a simulated board with a port, limits on points that
 * are not writable or upside down, a board id that is not hex, the same board twice, keys that
 * mean something to JavaScript.
 */
import { describe, expect, it } from "vitest";
import { type ConfigResult, parseConfigText } from "../../src/agent/config.js";
import { minimalConfig } from "../helpers/hostile-yaml.js";

const errors = (sources: string): string[] => {
  const r: ConfigResult = parseConfigText(`${minimalConfig}sources:\n${sources}`, "/etc/edge-agent");
  return r.ok ? [] : r.errors;
};

describe("bridge config", () => {
  it("accepts a board by port, by id, or simulated, with defaults a technician would pick", () => {
    const r = parseConfigText(
      `${minimalConfig}sources:\n  - { type: bridge, name: a, port: /dev/ttyACM0, writable: [setpoint], limits: { setpoint: { min: 16, max: 26 } } }\n  - { type: bridge, name: b, board_id: "7C:DF:A1:00:11:22" }\n  - { type: bridge, name: c, simulated: room-node }\n`,
      "/etc/edge-agent",
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const [a, b] = r.config.sources as Array<Record<string, unknown>>;
    expect(a).toMatchObject({ baud: 115_200, boot_delay: 1500, heartbeat: 1000, offline_after: 5000, interval: 100, max_frame: 1024, window: 8, reset_on_open: false });
    expect(b).toMatchObject({ board_id: "7cdfa1001122", probe: ["/dev/serial/by-id/*", "/dev/ttyACM*", "/dev/ttyUSB*"] });
  });

  it("refuses two sources on one serial device, naming both places", () => {
    expect(errors(`  - { type: bridge, name: a, port: /dev/ttyUSB7 }\n  - { type: modbus, name: line, rtu: { device: /dev/ttyUSB7 }, devices: [{ name: m, unit: 1, profile: sdm120 }] }\n`)).toEqual([
      expect.stringMatching(/^sources\[1\]\.rtu\.device: \/dev\/ttyUSB7 is also sources\[0\]\.port/),
    ]);
    expect(errors(`  - { type: bridge, name: a, port: /dev/ttyUSB7 }\n  - { type: bridge, name: b, port: /dev/ttyUSB7 }\n`)).toEqual([expect.stringMatching(/^sources\[1\]\.port: \/dev\/ttyUSB7 is also sources\[0\]\.port/)]);
  });

  it("refuses the same board id twice, an id that is not hex, and a simulated board with a port", () => {
    expect(errors(`  - { type: bridge, name: a, board_id: aabbccdd }\n  - { type: bridge, name: b, board_id: "AA-BB-CC-DD" }\n`)).toEqual([expect.stringMatching(/^sources\[1\]\.board_id: board aabbccdd is also sources\[0\]\.board_id/)]);
    expect(errors(`  - { type: bridge, name: a, board_id: "zz" }\n`)).toEqual([expect.stringMatching(/^sources\[0\]\.board_id: expected the board's unique id in hex/)]);
    expect(errors(`  - { type: bridge, name: a, simulated: room-node, port: /dev/ttyS1 }\n`)).toEqual(["sources[0].simulated: a simulated board has no port or board_id: choose one"]);
    expect(errors(`  - { type: bridge, name: a }\n`)).toEqual(["sources[0]: needs port, board_id (or both), or simulated"]);
  });

  it("refuses limits on points that are not writable, upside down, or named like JavaScript's own keys", () => {
    expect(errors(`  - { type: bridge, name: a, port: /dev/ttyS1, writable: [setpoint], limits: { led: { max: 1 }, setpoint: { min: 30, max: 5 } } }\n`)).toEqual([
      "sources[0].limits.led: 'led' is not in writable: limits apply to writable points only",
      "sources[0].limits.setpoint: min 30 is above max 5",
    ]);
    expect(errors(`  - { type: bridge, name: a, port: /dev/ttyS1, limits: { __proto__: { min: 1 } } }\n`)).toEqual(["sources[0].limits.__proto__: unknown key"]);
    expect(errors(`  - { type: bridge, name: a, port: /dev/ttyS1, window: 99, max_frame: 100, baud: -5 }\n`)).toHaveLength(3);
  });
});
