/** Shared printing helpers (commands gather data in one function and print it with these), and flag parsing. */
import ms from "ms";
import { formatDuration, TIMER_MAX_MS } from "../config/limits.js";
import { UserError } from "../model/errors.js";

/**
 * Milliseconds of `text` if it is a number with one of `units` (30s, 500ms, 1.5h), else undefined
 * (the caller words that message). A duration above `max` (default: Node's timer limit, past which
 * a timer fires after 1 ms) is a UserError naming the bound.
 */
export function parseDuration(text: string | undefined, units: readonly string[], opts: { max?: number; flag?: string } = {}): number | undefined {
  const m = text === undefined ? null : /^\d+(\.\d+)?\s*([a-z]+)$/.exec(text);
  if (!m || !units.includes(m[2]!)) return undefined;
  const max = opts.max ?? TIMER_MAX_MS;
  // ms() gives undefined for a text over 100 characters, and digits can overflow to Infinity.
  const value = ms(text as ms.StringValue) as number | undefined;
  if (value === undefined || !(value <= max)) {
    throw new UserError(`${opts.flag ? `${opts.flag}: ` : ""}'${text}' is too long: at most ${formatDuration(max)}`);
  }
  return value;
}

export function printJson(data: unknown): void {
  process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function formatAge(ms: number | null): string {
  if (ms === null) return "-";
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s}s`;
  const m = Math.round(s / 60);
  if (m < 120) return `${m}m`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.round(h / 24)}d`;
}

/** Aligned `label  value` lines. */
export function table(rows: Array<[string, string]>): string {
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n");
}
