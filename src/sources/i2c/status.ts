/** An I²C source's sensors as the typed status every kind of source reports: each sensor a device on the source's bus. */
import type { I2cQueueStats } from "../../buses/i2c/queue.js";
import type { SourceDetail } from "../source.js";
import type { SensorHealth } from "./sensor.js";

export function i2cDetail(source: string, bus: string, sensors: readonly SensorHealth[], queue: I2cQueueStats): SourceDetail {
  return {
    devices: sensors.map((h) => {
      const { reads, ok, inits: _inits, waits: _waits, ...errors } = h.counters;
      return { name: `${source}/${h.driver}@${h.address}`, online: h.online, lastError: h.lastError, lastOkTs: h.lastOkTs, requests: reads, ok, retries: 0, errors, bus };
    }),
    buses: [{ name: bus, open: true, queued: queue.queued, lastError: queue.lastError }],
  };
}
