/** A Modbus device's health as the typed status every kind of source reports. */
import type { SourceDetail } from "../source.js";
import type { DeviceHealth } from "./device.js";

export function modbusDetail(name: string, h: DeviceHealth): SourceDetail {
  const { polls: _polls, requests, ok, retries, ...errors } = h.counters;
  return {
    devices: [
      {
        name,
        online: h.online,
        lastError: h.lastError,
        lastOkTs: h.lastOkTs,
        requests,
        ok,
        retries,
        errors,
        requestsPerPoll: h.requestsPerPoll,
        // What is not read for now, and when it is tried again.
        excluded: h.excluded.map((x) => `${x.what} (tried again ${new Date(x.retryAt).toISOString().slice(11, 19)} UTC)`),
        bus: h.bus.name,
      },
    ],
    buses: [{ name: h.bus.name, open: h.bus.open, queued: h.bus.queued, lastError: h.bus.lastError }],
  };
}
