/**
 * OPC UA values and status codes in our vocabulary: a Variant becomes a number, boolean or
 * string (structures and arrays as JSON text), a StatusCode's severity becomes the quality.
 */
import type { StatusCode, Variant } from "node-opcua";
import type { Quality, Value } from "../model/reading.js";
import type { Opcua } from "./load.js";

/** Longest text kept from an array or a structure. */
const MAX_TEXT = 1000;

export function qualityOf(status: StatusCode): Quality {
  if (status.isGood()) return "good";
  if (status.isBad()) return "bad";
  return "uncertain";
}

function clip(text: string): string {
  return text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}…` : text;
}

/** 64-bit integers come as [high, low] 32-bit words; beyond 2^53 they lose their last digits. */
function int64(words: unknown, signed: boolean): number | null {
  if (!Array.isArray(words) || words.length !== 2) return null;
  const [high, low] = words as [number, number];
  const h = signed ? high | 0 : high >>> 0;
  return h * 2 ** 32 + (low >>> 0);
}

function scalar(ua: Opcua, dataType: number, value: unknown): Value {
  const T = ua.DataType;
  if (value === null || value === undefined) return null;
  switch (dataType) {
    case T.Boolean:
      return Boolean(value);
    case T.SByte:
    case T.Byte:
    case T.Int16:
    case T.UInt16:
    case T.Int32:
    case T.UInt32:
    case T.Float:
    case T.Double:
      return typeof value === "number" && Number.isFinite(value) ? value : null;
    case T.Int64:
    case T.UInt64:
      return int64(value, dataType === T.Int64);
    case T.String:
      return clip(String(value));
    case T.DateTime:
      return value instanceof Date ? value.toISOString() : null;
    case T.LocalizedText:
      return (value as { text?: string | null }).text ?? "";
    case T.ByteString:
      return Buffer.isBuffer(value) ? clip(value.toString("base64")) : null;
    case T.ExtensionObject: {
      const o = value as { toJSON?: () => unknown };
      return clip(JSON.stringify(typeof o.toJSON === "function" ? o.toJSON() : o) ?? "null");
    }
    default:
      return clip(String(value));
  }
}

/** For display (`opcua browse`): arrays as arrays (the first 50 items), structures as objects. */
export function plainValue(ua: Opcua, variant: Variant | null | undefined): unknown {
  if (!variant || variant.dataType === ua.DataType.Null) return null;
  const one = (v: unknown): unknown => {
    if (variant.dataType !== ua.DataType.ExtensionObject || v === null || typeof v !== "object") return scalar(ua, variant.dataType, v);
    const o = v as { toJSON?: () => unknown };
    return typeof o.toJSON === "function" ? o.toJSON() : o;
  };
  if (variant.arrayType !== ua.VariantArrayType.Scalar) return Array.from(variant.value as ArrayLike<unknown>).slice(0, 50).map(one);
  return one(variant.value);
}

/** The value of a Variant as a reading carries it (null when there is none). */
export function valueOf(ua: Opcua, variant: Variant | null | undefined): Value {
  if (!variant || variant.dataType === ua.DataType.Null) return null;
  if (variant.arrayType !== ua.VariantArrayType.Scalar) {
    const items = Array.from(variant.value as ArrayLike<unknown>, (v) => scalar(ua, variant.dataType, v));
    return clip(JSON.stringify(items));
  }
  return scalar(ua, variant.dataType, variant.value);
}
