/**
 * Writes with read-back verification: a coil (FC05) or holding registers (FC16), then the same
 * address read back and compared. A mismatch is an error, never a silent success: an actuator
 * command is only "done" when the device says so.
 */
import { decodePoint, encodePoint } from "../../../drivers/modbus/codec.js";
import type { ModbusPoint } from "../../../drivers/modbus/types.js";
import { registerCount } from "../../../drivers/modbus/types.js";
import { ModbusError, type ModbusLink } from "../../buses/modbus/link.js";
import type { ModbusLine } from "../../buses/modbus/line.js";

export interface WriteResult {
  point: string;
  written: number | boolean | string;
  readBack: number | boolean | string;
}

/** Runs one transaction of a write on the line: the write itself, then its read-back. */
export type WriteStep = <T>(step: "write" | "read-back", job: (link: ModbusLink) => Promise<T>) => Promise<T>;

/**
 * Only coils and holding registers can be written, and only values their type can hold; the
 * words to write. Throws before anything reaches the line.
 */
export function encodeWrite(point: ModbusPoint, value: number | boolean | string): number[] {
  if (point.table !== "coil" && point.table !== "holding") {
    throw new ModbusError("other", `${point.name} is in the ${point.table} table, which cannot be written`);
  }
  return encodePoint(point, value);
}

/** A write and its read-back taking `owner`'s turns on the line (the CLI, a one-off write). */
export function writeVerified(
  line: ModbusLine,
  owner: string,
  unit: number,
  point: ModbusPoint,
  value: number | boolean | string,
  timeoutMs: number,
): Promise<WriteResult> {
  return writeAndReadBack((_step, job) => line.run(owner, job), unit, point, value, timeoutMs);
}

/** The write and its read-back, each through `step` (a device counts them and takes them urgent). */
export async function writeAndReadBack(
  step: WriteStep,
  unit: number,
  point: ModbusPoint,
  value: number | boolean | string,
  timeoutMs: number,
): Promise<WriteResult> {
  const words = encodeWrite(point, value);
  await step("write", (link) =>
    point.table === "coil" ? link.writeCoil(unit, point.address, Boolean(value), timeoutMs) : link.writeRegisters(unit, point.address, words, timeoutMs),
  );
  const back = await step("read-back", (link) => link.read(unit, point.table, point.address, registerCount(point), timeoutMs));
  const readBack = decodePoint(point, back);
  const expected = decodePoint(point, words);
  if (!same(expected, readBack)) {
    throw new ModbusError("other", `read-back of ${point.name} gave ${JSON.stringify(readBack)}, not the ${JSON.stringify(expected)} written`);
  }
  return { point: point.name, written: expected, readBack };
}

function same(a: number | boolean | string, b: number | boolean | string): boolean {
  if (typeof a === "number" && typeof b === "number") return Math.abs(a - b) <= Math.max(1e-6, Math.abs(a) * 1e-6);
  return a === b;
}
