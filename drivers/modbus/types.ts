/**
 * Modbus device knowledge as data. A profile is a list of points; the planner (not the profile)
 * decides how points are grouped into requests. Addresses are the 0-based protocol addresses of
 * the datasheets' hex tables (register 0x0000 is what some tools call 30001 or 40001).
 */

/** coil: FC01/05/15 · discrete: FC02 · input: FC04 · holding: FC03/06/16. */
export type Table = "coil" | "discrete" | "input" | "holding";

export type DataType = "int16" | "uint16" | "int32" | "uint32" | "float32" | "float64" | "bool" | "string";

/**
 * Order of the bytes of a multi-register value, written as the letters of a big-endian value
 * ABCD(EFGH): ABCD = high word first, big-endian (Modbus default, Eastron); CDAB = low word
 * first (EPEVER 32-bit values); BADC and DCBA swap the bytes inside each word as well.
 */
export type WordOrder = "ABCD" | "CDAB" | "BADC" | "DCBA";

export interface ModbusPoint {
  /** Point name, unique in the device: `voltage_l1`. */
  name: string;
  table: Table;
  /** 0-based protocol address. */
  address: number;
  type: DataType;
  /** For multi-register types; default ABCD. */
  order?: WordOrder;
  /** value = raw × scale + offset (numeric types). */
  scale?: number;
  offset?: number;
  unit?: string;
  /** string: length in registers (2 characters each). */
  length?: number;
  /** bool in a register table: the bit (0–15) of the register. */
  bit?: number;
  description?: string;
  /** How the simulator moves this value; ignored by the agent. */
  sim?: SimHint;
  /** True when the point may be written (coils, holding registers). */
  writable?: boolean;
}

/** How a simulator should animate a point: a bounded wave or an increasing counter. */
export interface SimHint {
  wave: "sine" | "random-walk" | "counter" | "constant";
  min: number;
  max: number;
  /** counter: increase per second; sine: period in seconds. */
  rate?: number;
}

export interface SerialDefaults {
  baud: number;
  parity: "none" | "even" | "odd";
  dataBits: 7 | 8;
  stopBits: 1 | 2;
  unit: number;
}

/** Coils and discrete inputs hold bits; the other tables hold 16-bit registers. */
export function isBitTable(t: Table): boolean {
  return t === "coil" || t === "discrete";
}

/** A check that a unit found by a scan is this model: every probe must read and pass. */
export interface IdentifyProbe {
  table: Table;
  address: number;
  type: DataType;
  order?: WordOrder;
  scale?: number;
  /** The decoded value must equal this… */
  equals?: number;
  /** …or lie within [min, max]. */
  min?: number;
  max?: number;
}

/** The probe read as a point (decoded like one), under `name`. */
export function probePoint(probe: IdentifyProbe, name: string): ModbusPoint {
  return {
    name,
    table: probe.table,
    address: probe.address,
    type: probe.type,
    ...(probe.order ? { order: probe.order } : {}),
    ...(probe.scale !== undefined ? { scale: probe.scale } : {}),
  };
}

/** Addresses `first`–`last` (inclusive) of one table that a single read may span. */
export interface ReadableRange {
  table: Table;
  first: number;
  last: number;
}

/** The range that holds [address, address + count), if any. */
export function readableRangeOf(ranges: readonly ReadableRange[] | undefined, table: Table, address: number, count: number): ReadableRange | undefined {
  return ranges?.find((r) => r.table === table && r.first <= address && address + count - 1 <= r.last);
}

export interface ModbusProfile {
  /** Registry key used in configs: `sdm630`. */
  id: string;
  vendor: string;
  model: string;
  description: string;
  /** Where the facts come from (datasheet, manual), one short line. */
  source: string;
  serial?: SerialDefaults;
  /** Largest number of registers this device answers in one read (≤ 125); more is refused. */
  maxRegisters?: number;
  /**
   * Where a read may cover registers (or bits) that no point uses: inside each range they read
   * as zero. A read must lie within one range; one that leaves it is refused (exception 2).
   * Addresses in no range are readable only as points of the profile. With these facts the
   * planner's first plan is already right; without them it learns from refusals.
   */
  readable?: ReadableRange[];
  points: ModbusPoint[];
  /** Probes for `modbus scan`, most specific first. */
  identify?: IdentifyProbe[];
}

/** Registers a value of this type occupies (bits for coil/discrete tables count as 1). */
export function registerCount(p: Pick<ModbusPoint, "type" | "length" | "table">): number {
  if (isBitTable(p.table)) return 1;
  switch (p.type) {
    case "int16":
    case "uint16":
    case "bool":
      return 1;
    case "int32":
    case "uint32":
    case "float32":
      return 2;
    case "float64":
      return 4;
    case "string":
      return p.length ?? 1;
  }
}
