/**
 * Small factories for profile points, so a profile reads like the datasheet's table:
 * `f32in("voltage", 0x0000, "V", sine(227, 233, 60))`. The suffix names the table
 * (`in` = input registers, `hold` = holding registers).
 */
import type { DataType, ModbusPoint, SimHint, Table, WordOrder } from "../types.js";

/** Unit of a dimensionless value (power factor) or a raw code (status words, meter code). */
export const NO_UNIT = "";

/** Anything else a point may carry, e.g. `{ description }` or `{ writable: true }`. */
type Extra = Partial<Omit<ModbusPoint, "name" | "address" | "table" | "type">>;

type Numeric = (name: string, address: number, scale: number, unit: string, sim: SimHint, extra?: Extra) => ModbusPoint;
type Float = (name: string, address: number, unit: string, sim: SimHint, extra?: Extra) => ModbusPoint;

function numeric(table: Table, type: DataType, order?: WordOrder): Numeric {
  // Scale 1 is left out, so a raw value decodes exactly as read.
  return (name, address, scale, unit, sim, extra = {}) => ({
    name,
    table,
    address,
    type,
    ...(order && { order }),
    ...(scale !== 1 && { scale }),
    unit,
    sim,
    ...extra,
  });
}

/** IEEE-754 float32 in two registers, high word first (Eastron). */
function float32(table: Table): Float {
  return (name, address, unit, sim, extra) => numeric(table, "float32", "ABCD")(name, address, 1, unit, sim, extra);
}

export const f32in = float32("input");
export const f32hold = float32("holding");
export const u16in = numeric("input", "uint16");
/** Signed: temperatures below zero. */
export const i16in = numeric("input", "int16");
export const u16hold = numeric("holding", "uint16");
/** 32 bits in two registers, low word first (EPEVER: address = L, address + 1 = H). */
export const u32in_lowfirst = numeric("input", "uint32", "CDAB");
export const i32in_lowfirst = numeric("input", "int32", "CDAB");

export function coil(name: string, address: number, writable: boolean, extra: Extra = {}): ModbusPoint {
  return { name, table: "coil", address, type: "bool", writable, ...extra };
}

export function discrete(name: string, address: number, extra: Extra = {}): ModbusPoint {
  return { name, table: "discrete", address, type: "bool", ...extra };
}

// Simulator hints, in engineering units (after scale).
export const sine = (min: number, max: number, periodSeconds: number): SimHint => ({ wave: "sine", min, max, rate: periodSeconds });
export const walk = (min: number, max: number): SimHint => ({ wave: "random-walk", min, max });
export const counter = (perSecond: number, min = 0, max = 999_999): SimHint => ({ wave: "counter", min, max, rate: perSecond });
export const constant = (value: number): SimHint => ({ wave: "constant", min: value, max: value });
