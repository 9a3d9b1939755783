import { describe, expect, it } from "vitest";
import { SimGpioBackend } from "../../src/buses/gpio/sim-backend.js";
import { GpioRelay } from "../../src/control/relay.js";

describe("GpioRelay", () => {
  it("drives the pin and confirms it by reading back, active-low too", async () => {
    const gpio = new SimGpioBackend();
    const relay = new GpioRelay(gpio, 23, false);
    await relay.set(true);
    expect(gpio.level(23)).toBe(1);
    await relay.set(false);
    expect(gpio.level(23)).toBe(0);

    const inverted = new GpioRelay(gpio, 24, true);
    await inverted.set(true);
    expect(gpio.level(24)).toBe(0); // on = pin low for an active-low relay board
  });

  it("names the pin when it cannot be had, and tries again on the next switch", async () => {
    const gpio = new SimGpioBackend();
    await gpio.input(25, { edge: "both", debounceMs: 0, activeLow: false }); // taken by a PIR
    const relay = new GpioRelay(gpio, 25, false);
    await expect(relay.set(true)).rejects.toThrow(/GPIO 25.*already in use/);
    await expect(relay.set(true)).rejects.toThrow(/GPIO 25/);
  });
});
