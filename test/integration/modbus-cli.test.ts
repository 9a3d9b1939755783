/** The technician's Modbus commands against the simulator, as a technician runs them. */
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listPorts } from "../../src/cli/ports.js";
import { exited, runCli, startCli } from "../helpers/cli.js";
import { PtyPair } from "../helpers/socat.js";
import { tempDir } from "../helpers/tmp.js";

let sim: ReturnType<typeof startCli>;
let tcp = "";

beforeAll(async () => {
  sim = startCli(["simulate", "modbus", "--tcp", "127.0.0.1:0", "--unit", "1=sdm630", "--unit", "2=epever", "--unit", "3=sdm120", "--freeze", "--json"]);
  const deadline = Date.now() + 10_000;
  while (!sim.out().includes("listeners") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const info = JSON.parse(sim.out().split("\n")[0]!) as { listeners: { host: string; port: number }[] };
  tcp = `${info.listeners[0]!.host}:${info.listeners[0]!.port}`;
});
afterAll(async () => {
  sim.kill("SIGINT");
  await exited(sim);
});

describe("edge-agent modbus", () => {
  it("read --profile decodes every point with units, in fewer requests than values", () => {
    const r = runCli(["modbus", "read", "--tcp", tcp, "--unit", "1", "--profile", "sdm630", "--json"]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    const v = Object.fromEntries(out.values.map((x: { point: string; value: number }) => [x.point, x]));
    expect(v.voltage_l1.value).toBeGreaterThan(200);
    expect(v.voltage_l1.unit).toBe("V");
    expect(out.values.every((x: { value: unknown }) => x.value !== null)).toBe(true);
    expect(out.plannedRequests).toBeLessThan(out.naiveRequests / 2);
    const text = runCli(["modbus", "read", "--tcp", tcp, "--unit", "1", "--profile", "sdm630", "--only", "voltage_l1,frequency"]);
    expect(text.stdout).toMatch(/^voltage_l1\s+input 0x0000\s+2\d\d(\.\d+)? V$/m);
    expect(text.stdout).toMatch(/^frequency\s+input 0x0046\s+(49|50)\.\d+ Hz$/m);
  });

  it("read --table/--address reads raw registers and decodes them as told", () => {
    const r = runCli(["modbus", "read", "--tcp", tcp, "--unit", "2", "--table", "input", "--address", "0x3104", "--scale", "0.01", "--json"]);
    expect(r.code).toBe(0);
    const [v] = JSON.parse(r.stdout).values;
    expect(v).toMatchObject({ table: "input", address: 0x3104 });
    expect(v.value).toBeGreaterThan(8);
    expect(v.value).toBeLessThan(70);
  });

  it("write asks first, writes with --yes and shows the read-back", () => {
    const refused = runCli(["modbus", "write", "--tcp", tcp, "--unit", "2", "--coil", "0x0002", "--value", "on"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("confirm with --yes");
    const on = runCli(["modbus", "write", "--tcp", tcp, "--unit", "2", "--coil", "0x0002", "--value", "on", "--yes", "--json"]);
    expect(on.code).toBe(0);
    expect(JSON.parse(on.stdout)).toMatchObject({ unit: 2, written: true, readBack: true });
    const read = runCli(["modbus", "read", "--tcp", tcp, "--unit", "2", "--table", "coil", "--address", "2", "--json"]);
    expect(JSON.parse(read.stdout).values[0].value).toBe(true);
    const off = runCli(["modbus", "write", "--tcp", tcp, "--unit", "2", "--profile", "epever", "--point", "load_output", "--value", "off", "--yes"]);
    expect(off.stdout).toMatch(/read back: false/);
  });

  it("scan finds the units, identifies them, and prints a config snippet that passes config check", () => {
    const r = runCli(["modbus", "scan", "--tcp", tcp, "--units", "1-5", "--timeout", "150ms", "--json"]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.hits.map((h: { unit: number; profile: string }) => [h.unit, h.profile])).toEqual([
      [1, "sdm630"],
      [2, "epever"],
      [3, "sdm120"],
    ]);
    const dir = tempDir();
    const file = join(dir, "gw.yaml");
    writeFileSync(file, `site: s\ngateway: g\nuplink: { url: "mqtt://127.0.0.1:1" }\n${out.config}`);
    const check = runCli(["config", "check", file]);
    expect(check.stderr).toBe("");
    expect(check.code).toBe(0);
  });

  it("scan tries serial settings over a real serial path and finds the unit at its baud rate", async () => {
    const dir = tempDir();
    const pty = await PtyPair.open(dir);
    const rtuSim = startCli(["simulate", "modbus", "--rtu", pty.a, "--baud", "9600", "--unit", "7=sdm120", "--json"]);
    try {
      while (!rtuSim.out().includes("listeners")) await new Promise((r) => setTimeout(r, 20));
      const r = runCli(["modbus", "scan", "--rtu", pty.b, "--units", "5-8", "--bauds", "9600", "--timeout", "150ms", "--json"]);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout).hits).toEqual([expect.objectContaining({ unit: 7, baud: 9600, parity: "none", profile: "sdm120" })]);
    } finally {
      rtuSim.kill("SIGINT");
      await exited(rtuSim);
      await pty.unplug();
    }
  });

  it.each([
    [["modbus", "read", "--rtu", "/dev/ttyNOPE0", "--unit", "1", "--profile", "sdm120"], /cannot open \/dev\/ttyNOPE0 9600 8N1: no such device/],
    [["modbus", "read", "--tcp", "127.0.0.1:502", "--unit", "0", "--profile", "sdm120"], /--unit: expected 1–247, got '0'/],
    [["modbus", "read", "--tcp", "nonsense:99999", "--unit", "1", "--profile", "sdm120"], /--tcp: expected HOST:PORT/],
    [["modbus", "read", "--tcp", "127.0.0.1:502", "--unit", "1", "--profile", "sdm999"], /unknown profile 'sdm999'; built in: sdm120, sdm630, epever/],
    [["modbus", "read", "--unit", "1", "--profile", "sdm120"], /say where the device is/],
    [["modbus", "scan", "--tcp", "127.0.0.1:502", "--units", "0-300"], /--units: expected ids 1–247/],
  ])("bad input %j: one clear line, exit 2", (args, message) => {
    const r = runCli(args as string[]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("a unit that does not answer is exit 1 with the reason", () => {
    const r = runCli(["modbus", "read", "--tcp", tcp, "--unit", "9", "--profile", "sdm120", "--timeout", "100ms"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unit 9 on tcp 127\.0\.0\.1:\d+: no answer \(timeout\)/);
  });
});

describe("edge-agent ports", () => {
  it("lists serial devices with their stable names without udevadm", async () => {
    const dev = tempDir();
    mkdirSync(join(dev, "serial", "by-id"), { recursive: true });
    // Character devices cannot be made without root's mknod; a pty pair gives real ones.
    const pty = await PtyPair.open(dev);
    try {
      symlinkSync(pty.a, join(dev, "serial", "by-id", "usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0"));
      const ports = await listPorts(dev);
      expect(ports).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ byId: join(dev, "serial", "by-id", "usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0"), source: "by-id" }),
        ]),
      );
    } finally {
      await pty.unplug();
    }
    const r = runCli(["ports", "--json"]);
    expect(r.code).toBe(0);
    expect(Array.isArray(JSON.parse(r.stdout))).toBe(true);
  });
});
