/**
 * Physical ports by identity: sources naming one port share its queue (`config check` refusing
 * two Modbus sources on one serial device is in test/unit/config.test.ts).
 */
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { I2cBusPool } from "../../src/buses/i2c/queue.js";
import { SimI2cBus } from "../../src/buses/i2c/sim-bus.js";
import { ManualClock } from "../../src/buses/i2c/clock.js";
import type { ModbusTransport } from "../../src/buses/modbus/link.js";
import { PortRegistry, serialPortId } from "../../src/buses/ports.js";
import type { ModbusSourceConfig } from "../../src/sources/modbus/type.js";
import { silentLogger } from "../../src/ops/logger.js";
import { createModbusDevices, lineFor } from "../../src/sources/modbus/source.js";
import { testConfig } from "../helpers/config.js";
import { tempDir } from "../helpers/tmp.js";

/** A tty and a /dev/serial/by-id style link to it, in a temp dir. */
function devices() {
  const dir = tempDir();
  const tty = join(dir, "ttyUSB0");
  writeFileSync(tty, "");
  mkdirSync(join(dir, "by-id"));
  const byId = join(dir, "by-id", "usb-FTDI_FT232R_A10K3XYZ-if00-port0");
  symlinkSync(tty, byId);
  return { dir, tty, byId, other: join(dir, "ttyUSB1") };
}

const rtu = (device: string, baud = 9600): ModbusTransport => ({ kind: "rtu", device, baud, parity: "none", dataBits: 8, stopBits: 1 });

describe("sources on one physical port share its queue", () => {
  it("two sources naming one serial device (by-id link and tty) get one line; other ports their own", () => {
    const d = devices();
    const ports = new PortRegistry();
    const first = lineFor("rs485-a", rtu(d.byId), ports);
    expect(lineFor("rs485-b", rtu(d.tty), ports)).toBe(first);
    expect(lineFor("rs485-c", rtu(d.other), ports)).not.toBe(first);
    expect(serialPortId(d.byId)).toBe(`serial:${d.tty}`);
  });

  it("refuses a second source opening the line at another speed, naming the first", () => {
    const d = devices();
    const ports = new PortRegistry();
    lineFor("rs485-a", rtu(d.tty), ports);
    expect(() => lineFor("rs485-b", rtu(d.byId, 19200), ports)).toThrow(`source 'rs485-b': ${d.tty} is already open by source 'rs485-a' with 9600 8N1, not 19200 8N1`);
  });

  it("two sources on one serial-to-Ethernet converter share its line; Modbus TCP sources keep a connection each", async () => {
    const source = (name: string, transport: Record<string, unknown>) =>
      testConfig({ uplink: { url: "mqtt://127.0.0.1:1" }, sources: [{ type: "modbus", name, ...transport, devices: [{ name: `${name}-m`, unit: 1, profile: "sdm120" }] }] })
        .sources[0] as ModbusSourceConfig;
    const deps = { log: silentLogger(), simulators: new Map(), ports: new PortRegistry() };
    const a = createModbusDevices(source("conv-a", { rtu_over_tcp: { host: "10.0.0.9", port: 4001 } }), deps);
    const b = createModbusDevices(source("conv-b", { rtu_over_tcp: { host: "10.0.0.9", port: 4001 } }), deps);
    expect(b.line).toBe(a.line);
    // Both sources' devices are users of the one line: it closes when the last one stops.
    await a.devices[0]!.start();
    await b.devices[0]!.start();
    await a.devices[0]!.stop();
    await expect(a.line.run("x", async () => "still open")).resolves.toBe("still open");
    await b.devices[0]!.stop();
    await expect(a.line.run("x", async () => "closed")).rejects.toMatchObject({ kind: "disconnected", message: "line conv-a is closed" });

    const t1 = createModbusDevices(source("tcp-a", { tcp: { host: "10.0.0.9", port: 502 } }), deps);
    const t2 = createModbusDevices(source("tcp-b", { tcp: { host: "10.0.0.9", port: 502 } }), deps);
    expect(t2.line).not.toBe(t1.line);
  });

  it("I²C sources on one bus number share a queue; a bus is not two kinds of port", () => {
    const clock = new ManualClock();
    const ports = new PortRegistry();
    const pool = new I2cBusPool(ports);
    const q = pool.get("i2c-1", () => new SimI2cBus(1, clock));
    expect(new I2cBusPool(ports).get("i2c-1", () => new SimI2cBus(1, clock))).toBe(q);
    expect(pool.get("i2c-3", () => new SimI2cBus(3, clock))).not.toBe(q);
    expect(() => ports.claim("i2c:1", { kind: "bridge", owner: "source 'boards'" }, () => ({}))).toThrow("source 'boards': i2c-1 is already in use as i2c by the i2c sources");
  });
});
