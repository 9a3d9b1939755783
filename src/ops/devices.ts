/**
 * The field devices behind the sources, from each source's health: what metrics, /healthz and
 * the gateway health message count as up or down.
 */
import type { AgentStatus } from "../agent/agent.js";

/** Work counters; every other counter of a device's health counts failed requests by kind. */
const NOT_ERRORS = new Set(["polls", "requests", "reads", "ok", "retries", "inits", "waits"]);

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
  unsupported?: number;
}

/**
 * The devices among the sources, from their `health()`: a Modbus device (`online`), each sensor
 * of an I²C source (an array, one per sensor), a GPIO input (`open`). Sources without health
 * (simulators) are not devices.
 */
export function deviceFigures(status: AgentStatus): DeviceFigures[] {
  const out: DeviceFigures[] = [];
  for (const [source, s] of Object.entries(status.sources)) {
    const h = s.health;
    if (Array.isArray(h)) {
      h.forEach((sensor: unknown, i) => {
        if (!isRecord(sensor)) return;
        const name = typeof sensor.driver === "string" && typeof sensor.address === "string" ? `${sensor.driver}@${sensor.address}` : String(i);
        const f = figures(`${source}/${name}`, source, sensor);
        if (f) out.push(f);
      });
    } else if (isRecord(h)) {
      const f = figures(source, source, h);
      if (f) out.push(f);
    }
  }
  return out;
}

function figures(device: string, source: string, h: Record<string, unknown>): DeviceFigures | null {
  const up = typeof h.online === "boolean" ? h.online : typeof h.open === "boolean" ? h.open : null;
  if (up === null) return null;
  const counters: Record<string, number> = {};
  if (isRecord(h.counters)) {
    for (const [k, n] of Object.entries(h.counters)) if (typeof n === "number" && Number.isFinite(n)) counters[k] = n;
  }
  const errors = Object.fromEntries(Object.entries(counters).filter(([k]) => !NOT_ERRORS.has(k)));
  return {
    device,
    source,
    up,
    requests: counters.requests ?? counters.reads,
    ok: counters.ok,
    retries: counters.retries,
    errors,
    lastOkTs: typeof h.lastOkTs === "number" ? h.lastOkTs : undefined,
    requestsPerPoll: typeof h.requestsPerPoll === "number" ? h.requestsPerPoll : undefined,
    unsupported: Array.isArray(h.unsupported) ? h.unsupported.length : undefined,
  };
}

export function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}
