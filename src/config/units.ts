import bytes from "bytes";
import ms from "ms";
import { z } from "zod";
import { formatDuration, TIMER_MAX_MS } from "./limits.js";

const DURATION = /^\d+(\.\d+)?\s*(ms|s|m|h|d)$/;
const SIZE = /^\d+(\.\d+)?\s*(B|KB|MB|GB|TB)$/i;
const TB = 1024 ** 4;
/** The most bytes a double counts exactly, in whole TB (the largest unit a size may use). */
const SIZE_MAX = Math.floor(Number.MAX_SAFE_INTEGER / TB) * TB;

export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

export interface DurationBounds {
  /** Milliseconds; default 0. */
  min?: number;
  /** Milliseconds; default Node's timer limit, since most durations end up in a timer. */
  max?: number;
  /** What the field is for; the bounds are appended, so the JSON Schema states them. */
  description?: string;
}

/**
 * A duration written with its unit (`200ms`, `5s`, `1m`, `12h`, `30d`), parsed to milliseconds
 * and held within its bounds: above 2^31-1 ms Node would fire a timer after 1 ms instead.
 */
export function duration(opts: DurationBounds = {}) {
  const min = opts.min ?? 0;
  const max = opts.max ?? TIMER_MAX_MS;
  const maxText = formatDuration(max);
  const range = `A duration with its unit (200ms, 5s, 1m, 12h, 30d): ${formatDuration(min)} to ${maxText}.`;
  return z
    .string({ error: "expected a duration like 5s" })
    .regex(DURATION, { error: "expected a duration like 5s" })
    .transform((text, ctx) => {
      // ms() gives undefined for a text over 100 characters: nothing that long is a sane duration.
      const value = ms(text as ms.StringValue) as number | undefined;
      if (value === undefined || !(value <= max)) {
        ctx.addIssue({ code: "custom", message: `must be at most ${maxText}` });
        return z.NEVER;
      }
      if (value < min) {
        ctx.addIssue({ code: "custom", message: `must be at least ${formatDuration(min)}` });
        return z.NEVER;
      }
      return value;
    })
    .meta({ description: opts.description ? `${opts.description} ${range}` : range });
}

/** A size written with its unit (`512KB`, `256MB`, `2GB`; binary multiples), parsed to bytes. */
export function size() {
  return z
    .string({ error: "expected a size like 256MB" })
    .regex(SIZE, { error: "expected a size like 256MB" })
    .transform((text, ctx) => {
      const value = bytes.parse(text) ?? 0;
      // Digits past what a double counts exactly would come out as a rounded number or Infinity.
      if (!(value <= SIZE_MAX)) {
        ctx.addIssue({ code: "custom", message: `must be at most ${SIZE_MAX / TB}TB` });
        return z.NEVER;
      }
      return value;
    })
    .meta({ description: "A size with its unit: 512KB, 256MB, 2GB (multiples of 1024)." });
}
