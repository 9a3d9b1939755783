import bytes from "bytes";
import ms from "ms";
import { z } from "zod";

const DURATION = /^\d+(\.\d+)?\s*(ms|s|m|h|d)$/;
const SIZE = /^\d+(\.\d+)?\s*(B|KB|MB|GB|TB)$/i;

/** A duration written with its unit (`200ms`, `5s`, `1m`, `12h`, `30d`), parsed to milliseconds. */
export function duration(opts: { min?: number } = {}) {
  const min = opts.min ?? 0;
  return z
    .string({ error: "expected a duration like 5s" })
    .regex(DURATION, { error: "expected a duration like 5s" })
    .transform((text, ctx) => {
      const value = ms(text as ms.StringValue);
      if (value < min) {
        ctx.addIssue({ code: "custom", message: `must be at least ${ms(min)}` });
        return z.NEVER;
      }
      return value;
    })
    .meta({ description: "A duration with its unit: 200ms, 5s, 1m, 12h, 30d." });
}

/** A size written with its unit (`512KB`, `256MB`, `2GB`; binary multiples), parsed to bytes. */
export function size() {
  return z
    .string({ error: "expected a size like 256MB" })
    .regex(SIZE, { error: "expected a size like 256MB" })
    .transform((text) => bytes.parse(text) ?? 0)
    .meta({ description: "A size with its unit: 512KB, 256MB, 2GB (multiples of 1024)." });
}
