/**
 * Groups a device's points into as few Modbus reads as the limits allow. Pure: no I/O.
 * Assumes the points of a table do not partly overlap (the profile registry test checks it);
 * points on the same registers, such as bits of one register, share a request.
 */
import type { ModbusPoint, Table } from "../../../drivers/modbus/types.js";
import { isBitTable, registerCount } from "../../../drivers/modbus/types.js";

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
  /** Largest run of unused registers (or bits) a request may read over to join two points. */
  maxGap: number;
}

/** Modbus Application Protocol V1.1b3: FC03/04 read 1–125 registers, FC01/02 1–2000 bits. */
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

/**
 * Greedy left to right per table: a point joins the current request while the request stays
 * within the limit, the unused gap before the point is at most maxGap and no break lies between
 * the request's start and the point. Every rule holds for any sub-run of a valid run, which is
 * why greedy gives the fewest requests.
 */
export function planReads(points: readonly ModbusPoint[], limits: PlanLimits, breaks = new Breaks()): ReadRequest[] {
  checkLimits(limits);
  const requests: ReadRequest[] = [];
  for (const table of TABLES) {
    const limit = isBitTable(table) ? limits.maxBits : limits.maxRegisters;
    const sorted = points.filter((p) => p.table === table).sort((a, b) => a.address - b.address);
    let current: ReadRequest | undefined;
    for (const p of sorted) {
      const size = registerCount(p);
      if (size > limit) {
        throw new RangeError(
          `point ${p.name} (${table} 0x${p.address.toString(16)}) spans ${size} registers, ` +
            `more than one read may return (${limit})`,
        );
      }
      const end = current ? current.address + current.count : 0;
      if (
        current &&
        Math.max(end, p.address + size) - current.address <= limit &&
        p.address - end <= limits.maxGap &&
        !breaks.within(table, current.address, p.address)
      ) {
        current.count = Math.max(end, p.address + size) - current.address;
        current.points.push(p);
      } else {
        current = { table, address: p.address, count: size, points: [p] };
        requests.push(current);
      }
    }
  }
  return requests;
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
    l.maxGap >= 0;
  if (!ok) {
    throw new RangeError(
      `read limits out of range: maxRegisters ${l.maxRegisters} (1–125), maxBits ${l.maxBits} (1–2000), ` +
        `maxGap ${l.maxGap} (≥ 0)`,
    );
  }
}
