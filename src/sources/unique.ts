import type { Path, Report } from "../config/fields.js";

/** Points of one owner have distinct names: the second of two is an error at its place. */
export function uniqueNames(points: ReadonlyArray<{ name: string }>, owner: string, at: Path, report: Report): void {
  const seen = new Set<string>();
  points.forEach((p, j) => {
    if (seen.has(p.name)) report([...at, j, "name"], `duplicate point name '${p.name}' in '${owner}'`);
    seen.add(p.name);
  });
}
