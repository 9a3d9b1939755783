/**
 * Simulated buses ready to use: a chip model per driver id, a bus holding the chips a config
 * lists, a "room" that moves the physical values plausibly (for the demo), and the bench the
 * CLI's --sim flag talks to (the Sala Smart room on bus 1).
 */
import type { SimClock } from "../../buses/i2c/clock.js";
import { SimI2cBus } from "../../buses/i2c/sim-bus.js";
import { SimBh1750 } from "./bh1750.js";
import { SimBme280 } from "./bme280.js";
import type { Environment, SimChip } from "./chip.js";
import { SimScd4x } from "./scd4x.js";
import { SimSht3x } from "./sht3x.js";
import { SimSht4x } from "./sht4x.js";
import { prng } from "../prng.js";

/** The chip model behind each driver id. */
export function createSimChip(driver: string, address: number, clock: SimClock): SimChip {
  switch (driver) {
    case "sht3x":
      return new SimSht3x(address, clock);
    case "sht4x":
      return new SimSht4x(address, clock);
    case "scd4x":
      return new SimScd4x(address, clock, "scd41");
    case "bme280":
      return new SimBme280(address, clock);
    case "bh1750":
      return new SimBh1750(address, clock);
    default:
      throw new Error(`no simulated chip for driver '${driver}'`);
  }
}


/**
 * A meeting room's air and light as a function of time: temperature and humidity drift over
 * half an hour, CO₂ rises and falls with meetings, pressure with the weather, light with the
 * sun and a little flicker.
 */
export class SimRoom {
  private readonly random: () => number;

  constructor(
    private readonly chips: readonly SimChip[],
    seed = 101,
  ) {
    this.random = prng(seed);
  }

  environment(nowMs: number): Environment {
    const s = nowMs / 1000;
    const wave = (period: number, phase = 0) => Math.sin((2 * Math.PI * s) / period + phase);
    const meeting = Math.max(0, wave(1200)); // CO₂ builds up while people are in
    return {
      temperature: 22 + 1.2 * wave(1800) + 0.4 * meeting,
      humidity: 45 - 6 * wave(1800, 1) + 4 * meeting,
      co2: 480 + 900 * meeting + 15 * (this.random() - 0.5),
      pressure: 1012 + 4 * wave(7200, 1),
      illuminance: Math.max(0, 380 + 220 * wave(900, 2) + 10 * (this.random() - 0.5)),
    };
  }

  update(nowMs: number): void {
    const env = this.environment(nowMs);
    for (const chip of this.chips) chip.set(env);
  }
}

/** A simulated bus with a chip per sensor (each at its address), values moved by a SimRoom. */
export function simulatedBus(
  name: string,
  sensors: ReadonlyArray<{ driver: string; address: number }>,
  clock: SimClock,
  opts: { moving?: boolean; seed?: number } = {},
): SimI2cBus {
  const chips = sensors.map((s) => createSimChip(s.driver, s.address, clock));
  const room = opts.moving === false ? null : new SimRoom(chips, opts.seed);
  const bus = new SimI2cBus(name, clock, room ? { onAccess: (now) => room.update(now) } : {});
  room?.update(clock.now());
  return bus.attach(...chips);
}

/** The bench the CLI's --sim flag talks to: the Sala Smart room on bus 1. */
export const BENCH_BUS = 1;
export const BENCH_SENSORS = [
  { driver: "sht4x", address: 0x44 },
  { driver: "scd4x", address: 0x62 },
  { driver: "bme280", address: 0x76 },
  { driver: "bh1750", address: 0x23 },
] as const;

export function simulatedBench(bus: number, clock: SimClock, extra?: { driver: string; address: number }): SimI2cBus {
  if (bus !== BENCH_BUS) return new SimI2cBus(bus, clock, { missing: `the simulated bench has i2c-${BENCH_BUS} only` });
  const sensors: Array<{ driver: string; address: number }> = BENCH_SENSORS.filter((s) => s.address !== extra?.address);
  if (extra) sensors.push(extra);
  return simulatedBus(`i2c-${bus}`, sensors, clock);
}
