/**
 * The rooms of the code and what each may import (../shared/DESIGN.md, "Layers"; the rooms it
 * does not list are placed here and in docs/architecture.md), and no import cycles between
 * modules. Read from the sources as text: every `import … from "./x.js"` and `export … from`.
 * Type-only imports count for the rooms (a type couples them too) but not for cycles (they are
 * gone at run time).
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

/** Which rooms a room may import, besides itself. */
const MAY_IMPORT: Record<string, readonly string[]> = {
  model: [],
  buses: ["model"],
  drivers: ["model", "buses"],
  simulators: ["model", "buses", "drivers", "bridge", "update"],
  bridge: ["model", "buses"],
  update: ["model", "config", "store", "bridge"],
  config: ["model", "drivers"],
  store: ["model"],
  uplink: ["model", "store", "config"],
  control: ["model", "buses", "drivers"],
  processors: ["model", "config"],
  opcua: ["model", "config", "control", "store"],
  sources: ["model", "config", "buses", "drivers", "simulators", "opcua", "bridge"],
  ops: ["model", "config", "store"],
  ingest: ["model", "uplink"],
  agent: ["model", "config", "buses", "drivers", "simulators", "store", "uplink", "control", "processors", "opcua", "sources", "ops", "bridge", "update"],
  cli: ["model", "config", "buses", "drivers", "simulators", "store", "uplink", "control", "processors", "opcua", "sources", "ops", "agent", "bridge", "update", "ingest"],
};

interface Edge {
  from: string;
  to: string;
  typeOnly: boolean;
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return files(p);
    return p.endsWith(".ts") && !p.endsWith(".d.ts") ? [p] : [];
  });
}

/** `src/uplink/uplink.ts` → `uplink`; `drivers/i2c/x.ts` → `drivers`; `src/version.ts` → `model` (it imports nothing). */
function roomOf(file: string): string {
  const rel = relative(resolve("."), file).split("/");
  if (rel[0] === "drivers") return "drivers";
  if (rel.length === 2) return "model";
  return rel[1]!;
}

const IMPORT = /^\s*(import|export)\s+(type\s+)?(?:[^"';]*?\s+from\s+)?["'](\.{1,2}\/[^"']+)["']/gm;

function edges(): Edge[] {
  const out: Edge[] = [];
  for (const file of [...files("src"), ...files("drivers")]) {
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(IMPORT)) {
      const target = resolve(dirname(file), m[3]!.replace(/\.js$/, ".ts"));
      // `import { type A, type B }` is type-only too.
      const typeOnly = m[2] !== undefined || /^\s*import\s*\{\s*(type\s+\w+\s*,?\s*)+\}\s*from/.test(m[0]);
      out.push({ from: resolve(file), to: target, typeOnly });
    }
  }
  return out;
}

/** Strongly connected components of more than one module (Tarjan). */
function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) found.push(scc.map((f) => relative(resolve("."), f)).sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return found;
}

describe("layers", () => {
  const all = edges();

  it("reads the imports (the parser sees what it must)", () => {
    expect(all.length).toBeGreaterThan(300);
    expect(all.some((e) => roomOf(e.from) === "agent" && roomOf(e.to) === "uplink")).toBe(true);
    expect(all.some((e) => e.typeOnly)).toBe(true);
  });

  it("every room imports only the rooms below it", () => {
    const wrong = all
      .filter((e) => {
        const from = roomOf(e.from);
        const to = roomOf(e.to);
        if (from === to) return false;
        const allowed = MAY_IMPORT[from];
        return allowed === undefined || !allowed.includes(to);
      })
      .map((e) => `${relative(resolve("."), e.from)} → ${relative(resolve("."), e.to)}${e.typeOnly ? " (type)" : ""}`);
    expect(wrong).toEqual([]);
  });

  it("no module imports itself back through others", () => {
    const graph = new Map<string, string[]>();
    for (const e of all) {
      if (e.typeOnly) continue;
      graph.set(e.from, [...(graph.get(e.from) ?? []), e.to]);
    }
    expect(cycles(graph)).toEqual([]);
  });

  it("finds a cycle and a wrong import when there is one (the checks can fail)", () => {
    expect(cycles(new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]]]))).toHaveLength(1);
    expect(MAY_IMPORT.config).not.toContain("control");
    expect(MAY_IMPORT.control).not.toContain("sources");
    expect(MAY_IMPORT.buses).not.toContain("drivers");
  });
});
