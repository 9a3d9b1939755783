import { getProfile } from "../../drivers/modbus/registry.js";
import type { ModbusPoint, ModbusProfile, Table } from "../../drivers/modbus/types.js";

export function profile(id: string): ModbusProfile {
  const p = getProfile(id);
  if (!p) throw new Error(`profile ${id} missing from the registry`);
  return p;
}

/** Point names belong to the profiles' author: find points by where they live instead. */
export function pointAt(p: ModbusProfile, table: Table, address: number): ModbusPoint {
  const point = p.points.find((x) => x.table === table && x.address === address);
  if (!point) throw new Error(`${p.id} has no ${table} point at 0x${address.toString(16)}`);
  return point;
}
