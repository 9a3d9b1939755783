/**
 * The field devices behind the sources, flattened from the typed status each source reports:
 * what metrics, /healthz and the gateway health message count as up or down.
 */
import type { AgentStatus, DeviceStatus } from "../model/status.js";

export interface DeviceFigures {
  device: string;
  source: string;
  up: boolean;
  requests?: number;
  ok?: number;
  retries?: number;
  /** Failed requests by kind (timeout, crc, nack…). */
  errors: Record<string, number>;
  lastOkTs?: number;
  requestsPerPoll?: number;
  /** How many points or ranges are not read for now. */
  unsupported?: number;
  /** Changes seen on an input, and those dropped. */
  changes?: DeviceStatus["changes"];
  /** A bridged board's link. */
  board?: DeviceStatus["board"];
}

export function deviceFigures(status: AgentStatus): DeviceFigures[] {
  return Object.entries(status.sources).flatMap(([source, s]) =>
    s.devices.map(
      (d): DeviceFigures => ({
        device: d.name,
        source,
        up: d.online,
        ...(d.board ? { board: d.board } : {}),
        requests: d.requests,
        ok: d.ok,
        retries: d.retries,
        errors: d.errors,
        lastOkTs: d.lastOkTs ?? undefined,
        requestsPerPoll: d.requestsPerPoll,
        unsupported: d.excluded?.length,
        changes: d.changes,
      }),
    ),
  );
}
