/**
 * GPIO: BCM → sysfs numbers against fake /sys/class/gpio trees (Pi 4 and Pi 5 on Bookworm,
 * an old kernel, no sysfs GPIO, no permission), debounce and edges under fake timers, the
 * simulated backend, the onoff backend with a stand-in for onoff, and the gpio source.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { EdgeFilter } from "../../src/buses/gpio/debounce.js";
import { GpioError, type Level } from "../../src/buses/gpio/gpio.js";
import { OnoffGpioBackend } from "../../src/buses/gpio/onoff-backend.js";
import { SimGpioBackend } from "../../src/buses/gpio/sim-backend.js";
import { inspectPin, resolvePin } from "../../src/buses/gpio/sysfs.js";
import type { GpioSourceConfig } from "../../src/sources/gpio/type.js";
import { silentLogger } from "../../src/ops/logger.js";
import { GpioSource } from "../../src/sources/gpio/source.js";
import { testConfig } from "../helpers/config.js";
import { tempDir } from "../helpers/tmp.js";

/** A fake /sys/class/gpio with the given chips. */
function sysfs(chips: Array<{ base: number; ngpio: number; label: string }>): string {
  const root = join(tempDir(), "gpio");
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, "export"), "");
  writeFileSync(join(root, "unexport"), "");
  for (const c of chips) {
    const dir = join(root, `gpiochip${c.base}`);
    mkdirSync(dir);
    writeFileSync(join(dir, "base"), `${c.base}\n`);
    writeFileSync(join(dir, "ngpio"), `${c.ngpio}\n`);
    writeFileSync(join(dir, "label"), `${c.label}\n`);
  }
  return root;
}

/** Marks a pin exported with a value, as the kernel would show it. */
function exported(root: string, sysfsNumber: number, value: Level, direction = "in") {
  const dir = join(root, `gpio${sysfsNumber}`);
  mkdirSync(dir);
  writeFileSync(join(dir, "value"), `${value}\n`);
  writeFileSync(join(dir, "direction"), `${direction}\n`);
  writeFileSync(join(dir, "active_low"), "0\n");
}

const denied = () => Promise.reject(Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" }));

describe("BCM → sysfs numbers", () => {
  it("Pi 4 on Bookworm: base 512 (the expander chip is not the header's)", async () => {
    const root = sysfs([
      { base: 512, ngpio: 58, label: "pinctrl-bcm2711" },
      { base: 570, ngpio: 8, label: "raspberrypi-exp-gpio" },
    ]);
    expect(await resolvePin(17, { root })).toMatchObject({ pin: 17, sysfs: 529, chip: { name: "gpiochip512", label: "pinctrl-bcm2711" } });
  });

  it("Pi 5 on Bookworm: the RP1 controller at base 571, not the SoC's", async () => {
    const root = sysfs([
      { base: 512, ngpio: 32, label: "pinctrl-bcm2712" },
      { base: 544, ngpio: 17, label: "pinctrl-bcm2712" },
      { base: 571, ngpio: 54, label: "pinctrl-rp1" },
    ]);
    expect((await resolvePin(17, { root })).sysfs).toBe(588);
  });

  it("an old kernel: base 0", async () => {
    const root = sysfs([{ base: 0, ngpio: 54, label: "pinctrl-bcm2835" }]);
    expect((await resolvePin(17, { root })).sysfs).toBe(17);
  });

  it("no sysfs GPIO: one line naming the pin and the reason", async () => {
    const root = join(tempDir(), "no-such-gpio");
    await expect(resolvePin(17, { root })).rejects.toMatchObject({
      kind: "absent",
      message: `GPIO 17: sysfs GPIO is not available (${root} does not exist: this kernel has no sysfs GPIO)`,
    });
  });

  it("no permission: names the pin and the gpio group", async () => {
    const root = sysfs([{ base: 512, ngpio: 58, label: "pinctrl-bcm2711" }]);
    // Tests run as root, where file modes deny nothing: the access check is injected.
    await expect(inspectPin(17, { root, access: denied })).rejects.toMatchObject({
      kind: "permission",
      message: `GPIO 17: no permission on ${root}/export (add the user to the gpio group)`,
    });
    await expect(new OnoffGpioBackend({ root, access: denied }).input(17, { edge: "both", debounceMs: 0, activeLow: false })).rejects.toThrow(
      "GPIO 17: no permission on",
    );
  });

  it("a pin the controller does not have, and a board with no Pi controller", async () => {
    const root = sysfs([{ base: 512, ngpio: 58, label: "pinctrl-bcm2711" }]);
    await expect(resolvePin(60, { root })).rejects.toThrow("GPIO 60: pinctrl-bcm2711 has BCM GPIOs 0–57");
    const other = sysfs([
      { base: 0, ngpio: 32, label: "gpio-a" },
      { base: 32, ngpio: 32, label: "gpio-b" },
    ]);
    await expect(resolvePin(4, { root: other })).rejects.toThrow(/no Raspberry Pi GPIO controller .* found gpiochip0 \(gpio-a\), gpiochip32 \(gpio-b\)/);
  });

  it("reads an exported pin as it is, without exporting it again", async () => {
    const root = sysfs([{ base: 571, ngpio: 54, label: "pinctrl-rp1" }]);
    exported(root, 593, 1, "out");
    const r = await inspectPin(22, { root, access: denied }); // no export needed, so no permission needed
    expect(r).toMatchObject({ value: 1, direction: "out", activeLow: false, sysfsPin: { sysfs: 593 } });
  });
});

describe("debounce and edges", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(1_000_000);
  });
  afterEach(() => vi.useRealTimers());

  it("a bouncing contact gives one edge, stamped when the level changed", () => {
    const edges: Array<[Level, number]> = [];
    const f = new EdgeFilter({ edge: "both", debounceMs: 50, initial: 0, onEdge: (v, ts) => edges.push([v, ts]) });
    f.input(1);
    vi.advanceTimersByTime(5);
    f.input(0);
    vi.advanceTimersByTime(5);
    f.input(1); // settles here, at 1_000_010
    vi.advanceTimersByTime(49);
    expect(edges).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(edges).toEqual([[1, 1_000_010]]);
    expect(f.counts).toEqual({ changes: 3, edges: 1 });
  });

  it("a glitch shorter than the debounce is no edge at all", () => {
    const edges: Level[] = [];
    const f = new EdgeFilter({ edge: "both", debounceMs: 50, initial: 0, onEdge: (v) => edges.push(v) });
    f.input(1);
    vi.advanceTimersByTime(20);
    f.input(0);
    vi.advanceTimersByTime(100);
    expect(edges).toEqual([]);
  });

  it("rising or falling only", () => {
    const rising: Level[] = [];
    const falling: Level[] = [];
    const r = new EdgeFilter({ edge: "rising", debounceMs: 0, initial: 0, onEdge: (v) => rising.push(v) });
    const f = new EdgeFilter({ edge: "falling", debounceMs: 0, initial: 0, onEdge: (v) => falling.push(v) });
    for (const level of [1, 0, 1, 0] as Level[]) {
      r.input(level);
      f.input(level);
    }
    expect(rising).toEqual([1, 1]);
    expect(falling).toEqual([0, 0]);
  });
});

describe("simulated GPIO backend", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("delivers edges to watchers after the debounce, logical with active_low", async () => {
    const gpio = new SimGpioBackend();
    const seen: Level[] = [];
    const input = await gpio.input(17, { edge: "both", debounceMs: 50, activeLow: true });
    input.watch((v) => seen.push(v));
    expect(await input.read()).toBe(1); // pulled low at power-on: active with active_low
    gpio.setLevel(17, 1);
    vi.advanceTimersByTime(50);
    expect(seen).toEqual([0]);
    expect(await gpio.inspect(17)).toMatchObject({ pin: 17, sysfs: 529, direction: "in", activeLow: true });
    await expect(gpio.input(17, { edge: "both", debounceMs: 0, activeLow: false })).rejects.toThrow("GPIO 17 (sysfs 529): already in use as an input");
    await input.release();
  });

  it("an output takes its safe initial value at once and reads back what it holds", async () => {
    const gpio = new SimGpioBackend();
    const out = await gpio.output(27, { initial: 0, activeLow: true });
    expect(gpio.level(27)).toBe(1); // active low: off is a high pin
    await out.write(1);
    expect(gpio.level(27)).toBe(0);
    expect(await out.read()).toBe(1);
    await expect(gpio.inspect(60)).rejects.toBeInstanceOf(GpioError);
  });
});

describe("onoff backend", () => {
  /** A stand-in for onoff's Gpio that records how it was built. */
  function fakeOnoff() {
    const made: Array<{ gpio: number; direction: string; edge?: string; options?: object }> = [];
    let listener: ((err: Error | null | undefined, value: Level) => void) | null = null;
    class Gpio {
      value: Level = 0;
      constructor(gpio: number, direction: string, edge?: string, options?: object) {
        made.push({ gpio, direction, ...(edge ? { edge } : {}), ...(options ? { options } : {}) });
        if (gpio === 999) throw Object.assign(new Error("EBUSY"), { code: "EBUSY" });
      }
      readSync(): Level {
        return this.value;
      }
      async read(): Promise<Level> {
        return this.value;
      }
      async write(v: Level) {
        this.value = v;
      }
      watch(cb: (err: Error | null | undefined, value: Level) => void) {
        listener = cb;
      }
      unwatchAll() {
        listener = null;
      }
      unexport() {}
    }
    return { made, fire: (v: Level) => listener?.(null, v), load: async () => ({ Gpio }) as never };
  }

  it("opens the sysfs number of the BCM pin, with our debounce in front of onoff", async () => {
    vi.useFakeTimers();
    try {
      const root = sysfs([{ base: 512, ngpio: 58, label: "pinctrl-bcm2711" }]);
      const onoff = fakeOnoff();
      const backend = new OnoffGpioBackend({ root, access: () => Promise.resolve(), load: onoff.load });
      const input = await backend.input(17, { edge: "both", debounceMs: 50, activeLow: false });
      const seen: Level[] = [];
      input.watch((v) => seen.push(v));
      expect(onoff.made[0]).toEqual({ gpio: 529, direction: "in", edge: "both", options: { activeLow: false } });
      onoff.fire(1);
      onoff.fire(0);
      onoff.fire(1);
      vi.advanceTimersByTime(50);
      expect(seen).toEqual([1]);
      await input.release();
    } finally {
      vi.useRealTimers();
    }
  });

  it("makes an output at its safe level in one step (raw level: inverted for active low)", async () => {
    const root = sysfs([{ base: 571, ngpio: 54, label: "pinctrl-rp1" }]);
    const onoff = fakeOnoff();
    const backend = new OnoffGpioBackend({ root, access: () => Promise.resolve(), load: onoff.load });
    await backend.output(5, { initial: 0, activeLow: false });
    await backend.output(6, { initial: 0, activeLow: true });
    expect(onoff.made.map((m) => [m.gpio, m.direction])).toEqual([
      [576, "low"],
      [577, "high"],
    ]);
  });

  it("onoff itself loads on this machine (sysfs GPIO is not accessible here)", async () => {
    const { Gpio } = await import("onoff");
    expect(Gpio.accessible).toBe(false);
  });
});

describe("gpio source", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(1_000_000);
  });
  afterEach(() => vi.useRealTimers());

  const cfg = (extra: Record<string, unknown> = {}) =>
    testConfig({ uplink: { url: "mqtt://127.0.0.1:1883" }, sources: [{ type: "gpio", name: "room-101-pir", pin: 17, debounce: "50ms", interval: "30s", ...extra }] })
      .sources[0] as GpioSourceConfig;

  it("reports every debounced edge with its own time, and the current value at each poll", async () => {
    const gpio = new SimGpioBackend();
    const src = new GpioSource(cfg(), gpio, { log: silentLogger() });
    await src.start();
    gpio.setLevel(17, 1);
    vi.advanceTimersByTime(1000);
    gpio.setLevel(17, 0);
    vi.advanceTimersByTime(10); // a bounce
    gpio.setLevel(17, 1);
    vi.advanceTimersByTime(10);
    gpio.setLevel(17, 0);
    vi.advanceTimersByTime(1000);
    expect(await src.poll(1_030_000)).toEqual([
      { point: "room-101-pir/presence", ts: 1_000_000, value: true, quality: "good" },
      { point: "room-101-pir/presence", ts: 1_001_020, value: false, quality: "good" },
      { point: "room-101-pir/presence", ts: 1_030_000, value: false, quality: "good" },
    ]);
    expect(await src.poll(1_060_000)).toEqual([{ point: "room-101-pir/presence", ts: 1_060_000, value: false, quality: "good" }]);
    expect(src.health()).toMatchObject({ open: true, edges: 2, dropped: 0 });
    await src.stop();
  });

  it("a pin that cannot be opened gives a bad reading at every poll, and is tried again", async () => {
    const root = join(tempDir(), "none");
    const src = new GpioSource(cfg(), new OnoffGpioBackend({ root }), { log: silentLogger() });
    await src.start();
    expect(await src.poll(1)).toEqual([{ point: "room-101-pir/presence", ts: 1, value: null, quality: "bad" }]);
    expect(src.health().lastError).toBe(`GPIO 17: sysfs GPIO is not available (${root} does not exist: this kernel has no sysfs GPIO)`);
  });
});
