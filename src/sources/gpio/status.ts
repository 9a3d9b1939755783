/** A GPIO input as the typed status every kind of source reports: a device, up while its pin is open. */
import type { SourceDetail } from "../source.js";
import type { GpioSourceHealth } from "./source.js";

export function gpioDetail(name: string, h: GpioSourceHealth): SourceDetail {
  return { devices: [{ name, online: h.open, lastError: h.lastError, lastOkTs: null, errors: {}, changes: { seen: h.edges, dropped: h.dropped } }], buses: [] };
}
