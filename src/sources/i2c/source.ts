/**
 * A `type: i2c` source: the sensors of one room on one I²C bus, polled one after the other on
 * the bus's queue (shared with any other source on the same bus). A sensor that fails yields
 * readings of quality bad and counters; it never stops the others.
 */
import { getDriver, sensorQuantities } from "../../../drivers/i2c/registry.js";
import { pointName } from "../../../drivers/i2c/types.js";
import { busName } from "../../buses/i2c/bus.js";
import { NodeI2cBus } from "../../buses/i2c/node-bus.js";
import { type I2cBusPool, I2cQueue } from "../../buses/i2c/queue.js";
import { simulatedBus } from "../../simulators/i2c/bench.js";
import { realClock } from "../../buses/i2c/clock.js";
import type { I2cSourceConfig } from "./type.js";
import type { Reading } from "../../model/reading.js";
import type { Logger } from "../../model/logger.js";
import type { Source, SourceDetail } from "../source.js";
import { type SensorHealth, SensorPoller } from "./sensor.js";
import { i2cDetail } from "./status.js";
import type { SourceDeps } from "../type.js";

export class I2cSource implements Source {
  readonly name: string;
  readonly interval: number;
  readonly sensors: SensorPoller[];

  constructor(
    cfg: I2cSourceConfig,
    private readonly queue: I2cQueue,
    private readonly deps: { log: Logger; now?: () => number },
  ) {
    this.name = cfg.name;
    this.interval = cfg.interval;
    const log = deps.log.child({ source: cfg.name });
    this.sensors = cfg.sensors.map((s) => {
      const driver = getDriver(s.driver);
      if (!driver) throw new Error(`sources: unknown i2c driver '${s.driver}'`); // the schema rejects it first
      const address = s.address ?? driver.addresses[0]!;
      const options = {
        ...(s.precision ? { precision: s.precision } : {}),
        ...(s.mtreg ? { mtreg: s.mtreg } : {}),
        ...(s.resolution ? { resolution: s.resolution } : {}),
      };
      return new SensorPoller({
        source: cfg.name,
        driver,
        sensor: driver.create(queue.device(address), options),
        address,
        bus: queue.name,
        points: sensorQuantities(driver, s.only).map((quantity) => ({ quantity, point: `${cfg.name}/${pointName(quantity, s.prefix)}` })),
        log,
      });
    });
  }

  async start(): Promise<void> {
    this.queue.acquire();
    const now = (this.deps.now ?? Date.now)();
    for (const s of this.sensors) await s.init(now);
  }

  async poll(tickTs: number): Promise<Reading[]> {
    const readings: Reading[] = [];
    for (const s of this.sensors) readings.push(...(await s.poll(tickTs)));
    return readings;
  }

  async stop(): Promise<void> {
    for (const s of this.sensors) await s.shutdown();
    await this.queue.release();
  }

  health(): SensorHealth[] {
    return this.sensors.map((s) => s.health());
  }

  /** Each sensor is a device, on the source's bus. */
  status(): SourceDetail {
    return i2cDetail(this.name, this.queue.name, this.health(), this.queue.stats());
  }
}

/** The source of a config entry: on /dev/i2c-N, or on a simulated bus of its own with `simulated: true`. */
export function createI2cSource(cfg: I2cSourceConfig, deps: { log: Logger; buses: I2cBusPool; now?: () => number }): I2cSource {
  const queue = cfg.simulated
    ? new I2cQueue(
        simulatedBus(
          `${busName(cfg.bus)}-sim`,
          cfg.sensors.map((s) => {
            const driver = getDriver(s.driver)!;
            return { driver: driver.id, address: s.address ?? driver.addresses[0]! };
          }),
          realClock(),
        ),
      )
    : deps.buses.get(busName(cfg.bus), () => new NodeI2cBus(cfg.bus));
  return new I2cSource(cfg, queue, deps);
}

/** The agent's factory for `type: i2c` (SourceModule). */
export function create(cfg: I2cSourceConfig, deps: SourceDeps): Source[] {
  return [createI2cSource(cfg, { log: deps.log, buses: deps.i2cBuses })];
}
