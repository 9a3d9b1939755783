/**
 * One simulated Modbus slave: the registers of a profile's points, moved by their sim hints, and
 * a PDU handler that answers like the real device. Reads follow the profile's block-read facts
 * (devices.md "Block reads"): inside a readable range unused registers read as zero (Eastron),
 * elsewhere every address read must be a point's, or exception 2 (EPEVER past its table); more
 * than the profile's maxRegisters is exception 3, as are other bad quantities or values;
 * exception 1 for unknown function codes.
 */
import { decodePoint, encodePoint } from "../../../drivers/modbus/codec.js";
import type { ModbusPoint, ModbusProfile, ReadableRange, Table } from "../../../drivers/modbus/types.js";
import { isBitTable, probePoint, readableRangeOf, registerCount } from "../../../drivers/modbus/types.js";
import { exceptionPdu, ModbusException } from "../../buses/modbus/frames.js";
import { prng } from "../prng.js";

export type PointValue = number | boolean | string;

/** Quantity limits per request (MBAP V1.1b3 §6.1–6.4, 6.11, 6.12). */
export const LIMITS = { readBits: 2000, readRegisters: 125, writeBits: 1968, writeRegisters: 123 } as const;

export interface SimWrite {
  table: Table;
  address: number;
  /** Registers (holding) or 0/1 (coils) as written. */
  values: number[];
  /** The points touched, with their values after the write. */
  points: Array<{ name: string; value: PointValue }>;
}

export interface SimDeviceOptions {
  /** Values are computed once at `startMs` and never move (tests comparing with other tools). */
  freeze?: boolean;
  /** Time of the first state; default Date.now(). */
  startMs?: number;
  /** Random source for random walks (0 ≤ x < 1); default a PRNG seeded with `seed`. */
  random?: () => number;
  seed?: number;
  onWrite?: (w: SimWrite) => void;
}

interface PointState {
  point: ModbusPoint;
  /** Value set by set() or a Modbus write: the animation leaves it alone. */
  pinned: boolean;
  walk?: number;
}



function isPointList(src: ModbusProfile | readonly ModbusPoint[]): src is readonly ModbusPoint[] {
  return Array.isArray(src);
}

export class SimDevice {
  onWrite: ((w: SimWrite) => void) | undefined;
  readonly freeze: boolean;
  private readonly banks: Record<Table, Map<number, number>> = {
    coil: new Map(),
    discrete: new Map(),
    input: new Map(),
    holding: new Map(),
  };
  /** Which points cover each address, per table. */
  private readonly owners: Record<Table, Map<number, PointState[]>> = {
    coil: new Map(),
    discrete: new Map(),
    input: new Map(),
    holding: new Map(),
  };
  private readonly states = new Map<string, PointState>();
  private readonly random: () => number;
  /** The profile's block-read facts; a bare point list has none (every address read must be a point's). */
  private readonly readable: readonly ReadableRange[];
  private readonly maxReadRegisters: number;
  private readonly startMs: number;
  private lastTickMs: number;

  constructor(source: ModbusProfile | readonly ModbusPoint[], opts: SimDeviceOptions = {}) {
    this.freeze = opts.freeze ?? false;
    this.onWrite = opts.onWrite;
    this.random = opts.random ?? prng(opts.seed ?? 0x5eed);
    this.startMs = opts.startMs ?? Date.now();
    this.lastTickMs = this.startMs;
    const points = isPointList(source) ? [...source] : [...source.points];
    this.readable = isPointList(source) ? [] : (source.readable ?? []);
    this.maxReadRegisters = isPointList(source) ? LIMITS.readRegisters : Math.min(LIMITS.readRegisters, source.maxRegisters ?? LIMITS.readRegisters);
    for (const p of points) this.addPoint(p);
    // A scan identifies a model by probes that need not be points: serve them too.
    if (!isPointList(source)) {
      for (const probe of source.identify ?? []) {
        const point = probePoint(probe, `identify:${probe.table}:${probe.address}`);
        const covered = this.addresses(point).some((a) => this.owners[point.table].has(a));
        if (covered || this.states.has(point.name)) continue;
        const value = probe.equals ?? (probe.min !== undefined && probe.max !== undefined ? (probe.min + probe.max) / 2 : (probe.min ?? probe.max ?? 0));
        this.addPoint({ ...point, sim: { wave: "constant", min: value, max: value } });
      }
    }
    this.animate(this.startMs, true);
  }

  /** Names of the points, in profile order. */
  pointNames(): string[] {
    return [...this.states.keys()];
  }

  /** Moves every unpinned point to its value at `nowMs` (nothing when frozen). */
  tick(nowMs: number): void {
    if (this.freeze) return;
    this.animate(nowMs, false);
  }

  /** The point's value as a client would decode it from the registers. */
  get(name: string): PointValue {
    const s = this.state(name);
    const bank = this.banks[s.point.table];
    return decodePoint(
      s.point,
      this.addresses(s.point).map((a) => bank.get(a) ?? 0),
    );
  }

  /** Sets a point and pins it: the animation leaves it alone until release(). */
  set(name: string, value: PointValue): void {
    const s = this.state(name);
    this.store(s.point, value);
    s.pinned = true;
  }

  /** Lets the animation move a point again. */
  release(name: string): void {
    this.state(name).pinned = false;
  }

  /** Answers one request PDU (function code and data) with a reply PDU. */
  handlePdu(pdu: Buffer): Buffer {
    const fc = pdu[0] ?? 0;
    switch (fc) {
      case 1:
      case 2:
        return this.readBits(fc, pdu);
      case 3:
      case 4:
        return this.readRegisters(fc, pdu);
      case 5:
        return this.writeCoil(pdu);
      case 6:
        return this.writeRegister(pdu);
      case 15:
        return this.writeCoils(pdu);
      case 16:
        return this.writeRegisters(pdu);
      default:
        return exceptionPdu(fc, ModbusException.IllegalFunction);
    }
  }

  private addPoint(p: ModbusPoint): void {
    if (this.states.has(p.name)) throw new Error(`point ${p.name}: name used twice`);
    const s: PointState = { point: p, pinned: false };
    this.states.set(p.name, s);
    for (const a of this.addresses(p)) {
      const list = this.owners[p.table].get(a);
      if (list) list.push(s);
      else this.owners[p.table].set(a, [s]);
      if (!this.banks[p.table].has(a)) this.banks[p.table].set(a, 0);
    }
  }

  private addresses(p: ModbusPoint): number[] {
    const n = registerCount(p);
    return Array.from({ length: n }, (_, i) => p.address + i);
  }

  private state(name: string): PointState {
    const s = this.states.get(name);
    if (!s) throw new Error(`no point named '${name}' (points: ${[...this.states.keys()].join(", ")})`);
    return s;
  }

  private animate(nowMs: number, first: boolean): void {
    const t = (nowMs - this.startMs) / 1000;
    const dt = Math.max(0, (nowMs - this.lastTickMs) / 1000);
    this.lastTickMs = nowMs;
    for (const s of this.states.values()) {
      if (s.pinned) continue;
      const p = s.point;
      if (!p.sim) {
        if (first) this.store(p, p.type === "string" ? "" : 0);
        continue;
      }
      const { wave, min, max } = p.sim;
      const span = max - min;
      let v: number;
      switch (wave) {
        case "constant":
          v = min;
          break;
        case "sine": {
          const period = p.sim.rate && p.sim.rate > 0 ? p.sim.rate : 60;
          // A phase per point, so the three phases of a meter do not read identical values.
          v = min + (span * (1 + Math.sin(2 * Math.PI * (t / period + phaseOf(p.name))))) / 2;
          break;
        }
        case "counter": {
          v = min + (p.sim.rate ?? 1) * t;
          // Wrap so the value always fits the registers the profile gave it.
          if (span > 0 && v > max) v = min + ((v - min) % span);
          break;
        }
        case "random-walk": {
          const prev = s.walk ?? min + span * this.random();
          let next = first ? prev : prev + (this.random() * 2 - 1) * span * 0.05 * Math.min(1, Math.sqrt(dt));
          if (next > max) next = max - (next - max);
          if (next < min) next = min + (min - next);
          next = Math.min(max, Math.max(min, next));
          s.walk = next;
          v = next;
          break;
        }
      }
      this.store(p, p.type === "string" ? String(v) : v);
    }
  }

  /** Encodes a value into the banks; a bool inside a register keeps the register's other bits. */
  private store(p: ModbusPoint, value: PointValue): void {
    const bank = this.banks[p.table];
    if (isBitTable(p.table)) {
      bank.set(p.address, toBool(value) ? 1 : 0);
      return;
    }
    if (p.type === "bool") {
      const mask = 1 << (p.bit ?? 0);
      const old = bank.get(p.address) ?? 0;
      bank.set(p.address, toBool(value) ? old | mask : old & ~mask & 0xffff);
      return;
    }
    const words = encodePoint(p, typeof value === "boolean" ? (value ? 1 : 0) : value);
    words.forEach((w, i) => bank.set(p.address + i, w & 0xffff));
  }

  /**
   * Checks quantity (exception 3) then that every address exists (exception 2): a read within
   * a readable range may cover unused addresses, anything else only points' addresses.
   */
  private checkRange(table: Table, start: number, count: number, max: number, writing: boolean): number | undefined {
    if (count < 1 || count > max) return ModbusException.IllegalDataValue;
    if (start + count > 0x10000) return ModbusException.IllegalDataAddress;
    if (!writing && readableRangeOf(this.readable, table, start, count)) return undefined;
    const owners = this.owners[table];
    for (let a = start; a < start + count; a++) {
      const list = owners.get(a);
      if (!list) return ModbusException.IllegalDataAddress;
      if (writing && !list.some((s) => s.point.writable)) return ModbusException.IllegalDataAddress;
    }
    return undefined;
  }

  private readBits(fc: 1 | 2, pdu: Buffer): Buffer {
    if (pdu.length !== 5) return exceptionPdu(fc, ModbusException.IllegalDataValue);
    const start = pdu.readUInt16BE(1);
    const count = pdu.readUInt16BE(3);
    const table: Table = fc === 1 ? "coil" : "discrete";
    const err = this.checkRange(table, start, count, LIMITS.readBits, false);
    if (err !== undefined) return exceptionPdu(fc, err);
    const bytes = Math.ceil(count / 8);
    const reply = Buffer.alloc(2 + bytes);
    reply[0] = fc;
    reply[1] = bytes;
    const bank = this.banks[table];
    for (let i = 0; i < count; i++) {
      if (bank.get(start + i)) reply[2 + (i >> 3)]! |= 1 << (i & 7);
    }
    return reply;
  }

  private readRegisters(fc: 3 | 4, pdu: Buffer): Buffer {
    if (pdu.length !== 5) return exceptionPdu(fc, ModbusException.IllegalDataValue);
    const start = pdu.readUInt16BE(1);
    const count = pdu.readUInt16BE(3);
    const table: Table = fc === 3 ? "holding" : "input";
    const err = this.checkRange(table, start, count, this.maxReadRegisters, false);
    if (err !== undefined) return exceptionPdu(fc, err);
    const reply = Buffer.alloc(2 + count * 2);
    reply[0] = fc;
    reply[1] = count * 2;
    const bank = this.banks[table];
    for (let i = 0; i < count; i++) reply.writeUInt16BE(bank.get(start + i) ?? 0, 2 + i * 2);
    return reply;
  }

  private writeCoil(pdu: Buffer): Buffer {
    if (pdu.length !== 5) return exceptionPdu(5, ModbusException.IllegalDataValue);
    const address = pdu.readUInt16BE(1);
    const raw = pdu.readUInt16BE(3);
    if (raw !== 0xff00 && raw !== 0x0000) return exceptionPdu(5, ModbusException.IllegalDataValue);
    const err = this.checkRange("coil", address, 1, 1, true);
    if (err !== undefined) return exceptionPdu(5, err);
    this.applyWrite("coil", address, [raw ? 1 : 0]);
    return Buffer.from(pdu);
  }

  private writeRegister(pdu: Buffer): Buffer {
    if (pdu.length !== 5) return exceptionPdu(6, ModbusException.IllegalDataValue);
    const address = pdu.readUInt16BE(1);
    const err = this.checkRange("holding", address, 1, 1, true);
    if (err !== undefined) return exceptionPdu(6, err);
    this.applyWrite("holding", address, [pdu.readUInt16BE(3)]);
    return Buffer.from(pdu);
  }

  private writeCoils(pdu: Buffer): Buffer {
    if (pdu.length < 6) return exceptionPdu(15, ModbusException.IllegalDataValue);
    const start = pdu.readUInt16BE(1);
    const count = pdu.readUInt16BE(3);
    const bytes = pdu[5]!;
    if (count < 1 || count > LIMITS.writeBits || bytes !== Math.ceil(count / 8) || pdu.length !== 6 + bytes) {
      return exceptionPdu(15, ModbusException.IllegalDataValue);
    }
    const err = this.checkRange("coil", start, count, LIMITS.writeBits, true);
    if (err !== undefined) return exceptionPdu(15, err);
    const values = Array.from({ length: count }, (_, i) => (pdu[6 + (i >> 3)]! >> (i & 7)) & 1);
    this.applyWrite("coil", start, values);
    return Buffer.from(pdu.subarray(0, 5));
  }

  private writeRegisters(pdu: Buffer): Buffer {
    if (pdu.length < 6) return exceptionPdu(16, ModbusException.IllegalDataValue);
    const start = pdu.readUInt16BE(1);
    const count = pdu.readUInt16BE(3);
    const bytes = pdu[5]!;
    if (count < 1 || count > LIMITS.writeRegisters || bytes !== count * 2 || pdu.length !== 6 + bytes) {
      return exceptionPdu(16, ModbusException.IllegalDataValue);
    }
    const err = this.checkRange("holding", start, count, LIMITS.writeRegisters, true);
    if (err !== undefined) return exceptionPdu(16, err);
    const values = Array.from({ length: count }, (_, i) => pdu.readUInt16BE(6 + i * 2));
    this.applyWrite("holding", start, values);
    return Buffer.from(pdu.subarray(0, 5));
  }

  /** Stores written registers or bits, pins the points they touch, and tells onWrite. */
  private applyWrite(table: Table, start: number, values: number[]): void {
    const bank = this.banks[table];
    const touched = new Set<PointState>();
    values.forEach((v, i) => {
      bank.set(start + i, v);
      for (const s of this.owners[table].get(start + i) ?? []) touched.add(s);
    });
    for (const s of touched) s.pinned = true;
    this.onWrite?.({
      table,
      address: start,
      values,
      points: [...touched].map((s) => ({ name: s.point.name, value: this.get(s.point.name) })),
    });
  }
}

/** A stable fraction in [0, 1) from a name (FNV-1a). */
function phaseOf(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h / 4294967296;
}

function toBool(v: PointValue): boolean {
  if (typeof v === "boolean") return v;
  if (typeof v === "number") return Math.round(v) !== 0;
  return v !== "" && v !== "0" && v.toLowerCase() !== "false";
}
