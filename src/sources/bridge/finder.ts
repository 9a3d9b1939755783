/**
 * Where a board given by its unique id might be: the serial ports matching the `probe` patterns
 * (`/dev/serial/by-id/*`, `/dev/ttyACM*`…), each once by its real device (a by-id link and its
 * tty are one port), minus the ports other sources of this agent use. Patterns are globs in
 * the last path segment only (`*` and `?`), which is all device names need.
 */
import { readdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { realDevicePath, serialPortId } from "../../buses/ports.js";

function segmentRegex(pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${body}$`);
}

/** Paths matching one pattern, sorted; a missing folder matches nothing. */
export function expand(pattern: string): string[] {
  if (!/[*?]/.test(pattern)) return [pattern];
  const dir = dirname(pattern);
  const re = segmentRegex(basename(pattern));
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => re.test(n)).sort().map((n) => join(dir, n));
}

/**
 * The candidate ports, in pattern order, one path per physical port (the first name found, so
 * a by-id link is preferred when listed first); `taken(id)` says a port id belongs to another source.
 */
export function candidatePorts(patterns: readonly string[], taken: (portId: string) => boolean, resolve: (p: string) => string = realDevicePath): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const pattern of patterns) {
    for (const path of expand(pattern)) {
      const id = serialPortId(path, resolve);
      if (seen.has(id) || taken(id)) continue;
      seen.add(id);
      out.push(path);
    }
  }
  return out;
}
