/**
 * `edge-agent i2c scan|read` and `edge-agent gpio read`, in-process (main.ts does not register
 * them yet): the data functions against the simulated bench and fake sysfs trees, the user
 * mistakes as one-line UserErrors with exit code 2, and the commands through commander.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Command } from "commander";
import { afterEach, describe, expect, it, vi } from "vitest";
import { gpioRead, registerGpio } from "../../src/cli/gpio.js";
import { i2cRead, i2cScan, registerI2c, scanGrid } from "../../src/cli/i2c.js";
import { UserError } from "../../src/model/errors.js";
import { tempDir } from "../helpers/tmp.js";

async function userError(p: Promise<unknown>): Promise<{ message: string; exitCode: number }> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UserError);
  const u = err as UserError;
  expect(u.message).not.toContain("\n");
  return { message: u.message, exitCode: u.exitCode };
}

describe("i2c scan", () => {
  it("finds the simulated room and says what each address probably is", async () => {
    expect(await i2cScan({ bus: "1", sim: true })).toEqual({
      bus: "i2c-1",
      simulated: true,
      found: [
        { address: "0x23", likely: "BH1750" },
        { address: "0x44", likely: "SHT3x or SHT4x" },
        { address: "0x62", likely: "SCD4x" },
        { address: "0x76", likely: "BME280", note: "chip id 0x60 confirms" },
      ],
    });
  });

  it("lays the addresses out like i2cdetect", () => {
    const lines = scanGrid([0x23, 0x44, 0x76]).split("\n");
    expect(lines[0]).toBe("      0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f");
    expect(lines[1]).toBe("00:          -- -- -- -- -- -- -- -- -- -- -- -- --");
    expect(lines[3]).toBe("20: -- -- -- 23 -- -- -- -- -- -- -- -- -- -- -- --");
    expect(lines[5]).toBe("40: -- -- -- -- 44 -- -- -- -- -- -- -- -- -- -- --");
    expect(lines[8]).toBe("70: -- -- -- -- -- -- 76 --");
    expect(lines).toHaveLength(9);
  });

  it("a bus that does not exist: one line naming it, exit 2 (simulated and real)", async () => {
    expect(await userError(i2cScan({ bus: "7", sim: true }))).toEqual({ message: "bus i2c-7 does not exist (the simulated bench has i2c-1 only)", exitCode: 2 });
    // No kernel I²C on this machine: the real path, as a technician would see it.
    expect(await userError(i2cScan({ bus: "250" }))).toEqual({ message: "bus i2c-250 does not exist (enable I²C: raspi-config, dtparam=i2c_arm=on)", exitCode: 2 });
    expect(await userError(i2cScan({ bus: "one" }))).toEqual({ message: "--bus: expected a bus number like 1 (the N of /dev/i2c-N), got 'one'", exitCode: 2 });
  });
});

describe("i2c read", () => {
  it("reads one sensor: values with units, serial number, CRC status", async () => {
    const out = await i2cRead({ bus: "1", driver: "sht3x", sim: true });
    expect(out).toMatchObject({ bus: "i2c-1", driver: "sht3x", model: "SHT3x", address: "0x44", crc: "ok", info: { serial: "0x1a2b3c4d" } });
    expect(out.values.map((v) => [v.quantity, v.unit, v.crc])).toEqual([
      ["temperature", "°C", "ok"],
      ["humidity", "%", "ok"],
    ]);
    expect(out.values[0]!.value).toBeGreaterThan(15);
  });

  it("waits for an SCD4x's first periodic result (simulated time: no real wait)", async () => {
    const t0 = Date.now();
    const out = await i2cRead({ bus: "1", driver: "scd4x", sim: true });
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(out.values.find((v) => v.quantity === "co2")!.value).toBeGreaterThan(300);
    expect(out.info.serial).toBe("0x123456789abc");
  });

  it("a chip without CRC says so; another address of the same driver", async () => {
    const out = await i2cRead({ bus: "1", driver: "bme280", address: "0x77", sim: true });
    expect(out).toMatchObject({ address: "0x77", crc: "none", info: { chip_id: "0x60" } });
    expect(out.values.find((v) => v.quantity === "pressure")!.unit).toBe("hPa");
  });

  it("a wrong driver or address: one line naming it, exit 2", async () => {
    expect(await userError(i2cRead({ bus: "1", driver: "sht99", sim: true }))).toEqual({
      message: "--driver: unknown driver 'sht99'; known: sht3x, sht4x, scd4x (SCD40, SCD41), bme280, bh1750",
      exitCode: 2,
    });
    expect(await userError(i2cRead({ bus: "1", driver: "sht3x", address: "0x50", sim: true }))).toEqual({
      message: "--address: 0x50 is not an address of sht3x (allowed: 0x44, 0x45)",
      exitCode: 2,
    });
    expect(await userError(i2cRead({ bus: "1", driver: "sht3x", address: "0x4x", sim: true }))).toMatchObject({ exitCode: 2, message: "--address: expected an I²C address 0x03–0x77 like 0x44, got '0x4x'" });
    expect(await userError(i2cRead({ bus: "250", driver: "sht4x" }))).toMatchObject({ exitCode: 2, message: /^bus i2c-250 does not exist/ });
  });
});

describe("gpio read", () => {
  it("simulated: a Pi 4 on Bookworm, BCM 17 is sysfs 529", async () => {
    expect(await gpioRead("17", { sim: true })).toEqual({
      pin: 17,
      sysfs: 529,
      chip: "gpiochip512 (pinctrl-bcm2711)",
      base: 512,
      value: 0,
      direction: "in",
      activeLow: false,
      backend: "simulated",
    });
  });

  it("reads an exported pin from a sysfs tree with the Pi 5's base", async () => {
    const root = join(tempDir(), "gpio");
    mkdirSync(join(root, "gpiochip571"), { recursive: true });
    writeFileSync(join(root, "gpiochip571", "base"), "571\n");
    writeFileSync(join(root, "gpiochip571", "ngpio"), "54\n");
    writeFileSync(join(root, "gpiochip571", "label"), "pinctrl-rp1\n");
    mkdirSync(join(root, "gpio588"));
    writeFileSync(join(root, "gpio588", "value"), "1\n");
    writeFileSync(join(root, "gpio588", "direction"), "in\n");
    expect(await gpioRead("17", { sysfsRoot: root })).toMatchObject({ pin: 17, sysfs: 588, base: 571, value: 1, direction: "in" });
  });

  it("no sysfs GPIO, or a pin that is no number: one line naming the pin, exit 2", async () => {
    const root = join(tempDir(), "none");
    expect(await userError(gpioRead("17", { sysfsRoot: root }))).toEqual({
      message: `GPIO 17: sysfs GPIO is not available (${root} does not exist: this kernel has no sysfs GPIO)`,
      exitCode: 2,
    });
    expect(await userError(gpioRead("GPIO17", {}))).toEqual({ message: "PIN: expected a BCM GPIO number 0–53 (GPIO17 is header pin 11), got 'GPIO17'", exitCode: 2 });
    expect(await userError(gpioRead("60", { sim: true }))).toMatchObject({ exitCode: 2 });
  });
});

describe("commands", () => {
  afterEach(() => {
    vi.restoreAllMocks();
    process.exitCode = undefined;
  });

  async function run(register: (p: Command) => void, args: string[]): Promise<string> {
    let out = "";
    vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    const program = new Command("edge-agent").exitOverride();
    register(program);
    await program.parseAsync(["node", "edge-agent", ...args]);
    return out;
  }

  it("i2c scan --sim prints the grid and the list", async () => {
    const out = await run(registerI2c, ["i2c", "scan", "--bus", "1", "--sim"]);
    expect(out).toContain("60: -- -- 62 --");
    expect(out).toContain("i2c-1 (simulated): 4 addresses answer");
    expect(out).toContain("  0x76  BME280 (chip id 0x60 confirms)");
  });

  it("i2c read --json prints the values", async () => {
    const out = JSON.parse(await run(registerI2c, ["i2c", "read", "--bus", "1", "--driver", "bh1750", "--sim", "--json"]));
    expect(out).toMatchObject({ driver: "bh1750", address: "0x23", crc: "none", values: [{ quantity: "illuminance", unit: "lx" }] });
  });

  it("i2c read prints one line per value and the CRC status", async () => {
    const out = await run(registerI2c, ["i2c", "read", "--bus", "1", "--driver", "sht4x", "--sim"]);
    expect(out).toMatch(/^SHT4x at i2c-1 \(simulated\) 0x44 · serial 0x0f1e2d3c\n {2}temperature {2}[\d.]+ °C\n {2}humidity {5}[\d.]+ %\nCRC: every word checked, all match\n$/);
  });

  it("gpio read --sim prints the BCM and sysfs numbers", async () => {
    const out = await run(registerGpio, ["gpio", "read", "4", "--sim"]);
    expect(out).toBe("GPIO 4 (BCM) = sysfs 516 on gpiochip512 (pinctrl-bcm2711), base 512: 1 (high), direction in (simulated)\n");
  });
});
