/**
 * Groups a device's points into the Modbus reads that cost the least time on its transport.
 * Pure: no I/O. Merging two reads saves a transaction (request, silences, turnaround or round
 * trip) and costs the unused registers between them: worth it over a 12-register hole on TCP
 * or at 115200 baud, not over a 40-register one at 2400 baud (see wire-cost.ts).
 * Assumes the points of a table do not partly overlap (the profile registry test checks it);
 * points on the same registers, such as bits of one register, share a request.
 */
import type { ModbusPoint, ReadableRange, Table } from "../../../drivers/modbus/types.js";
import { isBitTable, registerCount } from "../../../drivers/modbus/types.js";
import { readMs, wireModel, type WireModel } from "./wire-cost.js";

export interface ReadRequest {
  table: Table;
  address: number;
  /** Registers (input/holding) or bits (coil/discrete) to read from `address`. */
  count: number;
  /** The points this read covers, by address. */
  points: ModbusPoint[];
}

export interface PlanLimits {
  /** Registers per FC03/FC04 read, ≤ 125. */
  maxRegisters: number;
  /** Bits per FC01/FC02 read, ≤ 2000. */
  maxBits: number;
  /**
   * Largest run of unused registers (or bits) a request may read over to join two points: a
   * hard cap a user set (`max_gap`). Without it the cost on the wire decides.
   */
  maxGap?: number | undefined;
  /**
   * Where unused registers are known to read as zero (the profile's facts; ranges do not
   * overlap): a request inside one range may read over any hole; a request of several points
   * that touches a range lies inside it.
   */
  readable?: readonly ReadableRange[] | undefined;
}

export const PROTOCOL_LIMITS = { maxRegisters: 125, maxBits: 2000 } as const;

const TABLES: readonly Table[] = ["coil", "discrete", "input", "holding"];

/**
 * Addresses a request must never span (read both `address - 1` and `address`). Learned from
 * devices that answer a merged read with an exception but each part on its own.
 */
export class Breaks {
  readonly #byTable = new Map<Table, Set<number>>();

  add(table: Table, address: number): void {
    const set = this.#byTable.get(table) ?? new Set<number>();
    set.add(address);
    this.#byTable.set(table, set);
  }

  delete(table: Table, address: number): void {
    this.#byTable.get(table)?.delete(address);
  }

  has(table: Table, address: number): boolean {
    return this.#byTable.get(table)?.has(address) ?? false;
  }

  get size(): number {
    let n = 0;
    for (const set of this.#byTable.values()) n += set.size;
    return n;
  }

  /** True when a break lies in (after, upTo]. */
  within(table: Table, after: number, upTo: number): boolean {
    for (const b of this.#byTable.get(table) ?? []) if (b > after && b <= upTo) return true;
    return false;
  }
}

/** Without a transport: Modbus TCP, where a transaction costs far more than a register. */
export const DEFAULT_WIRE: WireModel = wireModel({ kind: "tcp" });

/** Points on overlapping registers: they go into one request together. */
interface Cluster {
  start: number;
  end: number;
  points: ModbusPoint[];
  /** Index of the readable range holding it, -1 for none. */
  range: number;
}

/**
 * The cheapest plan on `wire`, per table by dynamic programming over the points in address
 * order: a request covers a run of neighbours (reading past a point costs the same registers
 * as reading it), and a run is allowed when it stays within the limit, reads over no hole wider
 * than maxGap, crosses no break, and lies inside one readable range or touches none. On equal
 * cost, fewer requests win. (Points on one register are always read together, even where they
 * cross a range's edge.)
 */
export function planReads(points: readonly ModbusPoint[], limits: PlanLimits, breaks = new Breaks(), wire: WireModel = DEFAULT_WIRE): ReadRequest[] {
  checkLimits(limits);
  const requests: ReadRequest[] = [];
  for (const table of TABLES) {
    const limit = isBitTable(table) ? limits.maxBits : limits.maxRegisters;
    const ranges = limits.readable?.filter((r) => r.table === table) ?? [];
    const clusters = clustersOf(table, points, limit, ranges);
    const n = clusters.length;
    // best[i]: the cheapest plan of the first i clusters, and where its last request starts.
    const best: Array<{ ms: number; requests: number; from: number }> = [{ ms: 0, requests: 0, from: -1 }];
    for (let i = 1; i <= n; i++) {
      const last = clusters[i - 1]!;
      let choice = { ms: Number.POSITIVE_INFINITY, requests: 0, from: i - 1 };
      let end = last.end;
      for (let j = i - 1; j >= 0; j--) {
        const c = clusters[j]!;
        if (j < i - 1) {
          const next = clusters[j + 1]!;
          if (limits.maxGap !== undefined && next.start - c.end > limits.maxGap) break;
          if (breaks.within(table, c.start, next.start)) break;
          if (c.range !== last.range) break;
        }
        end = Math.max(end, c.end);
        if (end - c.start > limit) break;
        // One cluster is always readable on its own: those are the points' own registers.
        if (j < i - 1 && last.range < 0 && ranges.some((r) => r.first < end && c.start <= r.last)) break;
        const ms = best[j]!.ms + readMs(wire, table, end - c.start);
        const requests = best[j]!.requests + 1;
        if (ms < choice.ms - EPSILON_MS || (ms <= choice.ms + EPSILON_MS && requests < choice.requests)) choice = { ms, requests, from: j };
      }
      best.push(choice);
    }
    const runs: ReadRequest[] = [];
    for (let i = n; i > 0; i = best[i]!.from) {
      const run = clusters.slice(best[i]!.from, i);
      const address = run[0]!.start;
      runs.push({ table, address, count: Math.max(...run.map((c) => c.end)) - address, points: run.flatMap((c) => c.points) });
    }
    requests.push(...runs.reverse());
  }
  return requests;
}

/** Costs closer than this are equal (sums of floating-point milliseconds). */
const EPSILON_MS = 1e-9;

function clustersOf(table: Table, points: readonly ModbusPoint[], limit: number, ranges: readonly ReadableRange[]): Cluster[] {
  const sorted = points.filter((p) => p.table === table).sort((a, b) => a.address - b.address);
  const clusters: Cluster[] = [];
  let current: Cluster | undefined;
  for (const p of sorted) {
    const size = registerCount(p);
    if (size > limit) {
      throw new RangeError(
        `point ${p.name} (${table} 0x${p.address.toString(16)}) spans ${size} registers, ` +
          `more than one read may return (${limit})`,
      );
    }
    const end = p.address + size;
    if (current && p.address < current.end && Math.max(current.end, end) - current.start <= limit) {
      current.end = Math.max(current.end, end);
      current.points.push(p);
    } else {
      current = { start: p.address, end, points: [p], range: -1 };
      clusters.push(current);
    }
  }
  for (const c of clusters) c.range = ranges.findIndex((r) => r.first <= c.start && c.end - 1 <= r.last);
  return clusters;
}

/**
 * Splits a request that a device rejected. A merged read fails because it covers registers the
 * device does not implement, so the cut goes at the widest hole between points (nearest the
 * middle on a tie); a request with no hole is halved. Points on one register stay together.
 * Add `breakAt` to the Breaks and plan again. Null when there is nothing to split (one point,
 * or all points on one address).
 */
export function splitRequest(req: ReadRequest): { breakAt: number; parts: [ReadRequest, ReadRequest] } | null {
  const pts = [...req.points].sort((a, b) => a.address - b.address);
  let cut = -1;
  let widest = 0;
  let end = pts.length > 0 ? pts[0]!.address + registerCount(pts[0]!) : 0;
  const middle = (i: number) => Math.abs(i - pts.length / 2);
  for (let i = 1; i < pts.length; i++) {
    const p = pts[i]!;
    if (p.address !== pts[i - 1]!.address) {
      const gap = Math.max(0, p.address - end);
      if (cut < 0 || gap > widest || (gap === widest && middle(i) < middle(cut))) {
        cut = i;
        widest = gap;
      }
    }
    end = Math.max(end, p.address + registerCount(p));
  }
  if (cut < 0) return null;
  const parts: [ReadRequest, ReadRequest] = [span(req.table, pts.slice(0, cut)), span(req.table, pts.slice(cut))];
  return { breakAt: parts[1].address, parts };
}

/** One request per point: what a driver without a planner would send. */
export function naiveRequestCount(points: readonly ModbusPoint[]): number {
  return points.length;
}

/** The smallest request covering these points (sorted, non-empty). */
function span(table: Table, points: ModbusPoint[]): ReadRequest {
  const address = points[0]!.address;
  const end = Math.max(...points.map((p) => p.address + registerCount(p)));
  return { table, address, count: end - address, points };
}

function checkLimits(l: PlanLimits): void {
  const ok =
    Number.isInteger(l.maxRegisters) &&
    l.maxRegisters >= 1 &&
    l.maxRegisters <= PROTOCOL_LIMITS.maxRegisters &&
    Number.isInteger(l.maxBits) &&
    l.maxBits >= 1 &&
    l.maxBits <= PROTOCOL_LIMITS.maxBits &&
    (l.maxGap === undefined || l.maxGap >= 0);
  if (!ok) {
    throw new RangeError(
      `read limits out of range: maxRegisters ${l.maxRegisters} (1–125), maxBits ${l.maxBits} (1–2000), ` +
        `maxGap ${l.maxGap ?? "none"} (≥ 0)`,
    );
  }
}
