/**
 * What a config file may cost to read, and the longest delay a timer can take. Kept free of zod
 * and YAML so the CLI's flag parsing can use it without loading either.
 */

/** Node's setTimeout/setInterval limit: a longer delay is replaced by 1 ms, with only a warning. */
export const TIMER_MAX_MS = 2 ** 31 - 1;

/**
 * Bounds on a config file, far above any real one (the shipped examples are 2–4 KB, ~1000 YAML
 * tokens). Measured with the unit's node flags: a 256 KB file of the costliest shape (`[0,0,0,…]`)
 * peaks at ~170 MB RSS and takes ~2 s to check; 1 MB would pass the unit's MemoryMax.
 */
export const CONFIG_LIMITS = {
  bytes: 256 * 1024,
  /** Open collections at once (the parser's stack); a real config nests fewer than 12. */
  depth: 64,
  /** Values that aliases add once expanded: more is an alias bomb (`&a [*b, *b, …]`). */
  aliasedValues: 100_000,
} as const;

const UNITS: ReadonlyArray<readonly [string, number]> = [
  ["d", 86_400_000],
  ["h", 3_600_000],
  ["m", 60_000],
  ["s", 1000],
];

/**
 * A duration as it could be written in a config or a flag: `24h`, `65535s`, `3650d`, `100ms`.
 * Days only from 2d on, so a day reads `24h`. A value that is not whole seconds is given in ms
 * with an approximation rounded down, so the approximation is itself a valid value; the timer
 * limit says what it is.
 */
export function formatDuration(ms: number): string {
  for (const [unit, size] of UNITS) {
    if (ms > 0 && ms % size === 0 && (unit !== "d" || ms >= 2 * size)) return `${ms / size}${unit}`;
  }
  const notes: string[] = [];
  const larger = UNITS.find(([, size]) => ms >= 2 * size);
  if (larger) notes.push(`about ${Math.floor((ms / larger[1]) * 10) / 10}${larger[0]}`);
  if (ms === TIMER_MAX_MS) notes.push("Node's timer limit");
  return notes.length > 0 ? `${ms}ms (${notes.join(", ")})` : `${ms}ms`;
}
