/**
 * The envelope of each channel (drivers/bridge/bridge.proto), encoded and decoded with
 * @bufbuild/protobuf from the generated gen/bridge_pb.ts. Decoding hostile bytes gives an error
 * value, never an exception; unknown fields are dropped, not kept.
 */
import { create, fromBinary, type MessageInitShape, toBinary, toJson, type JsonValue } from "@bufbuild/protobuf";
import { CommandsSchema, LinkSchema, LogSchema, TelemetrySchema } from "./gen/bridge_pb.js";
import type { Commands, Link, Log, Telemetry } from "./gen/bridge_pb.js";
import { CHANNEL } from "./frame.js";

export * from "./gen/bridge_pb.js";

export type DecodeResult<T> = { ok: true; message: T } | { ok: false; error: string };

export type LinkInit = MessageInitShape<typeof LinkSchema>;
export type TelemetryInit = MessageInitShape<typeof TelemetrySchema>;
export type CommandsInit = MessageInitShape<typeof CommandsSchema>;
export type LogInit = MessageInitShape<typeof LogSchema>;

const READ = { readUnknownFields: false, recursionLimit: 16 } as const;

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function encodeLink(init: LinkInit): Uint8Array {
  return toBinary(LinkSchema, create(LinkSchema, init));
}
export function encodeTelemetry(init: TelemetryInit): Uint8Array {
  return toBinary(TelemetrySchema, create(TelemetrySchema, init));
}
export function encodeCommands(init: CommandsInit): Uint8Array {
  return toBinary(CommandsSchema, create(CommandsSchema, init));
}
export function encodeLog(init: LogInit): Uint8Array {
  return toBinary(LogSchema, create(LogSchema, init));
}

/** A Link, or why not. An envelope with no body (empty or unknown fields only) is an error. */
export function decodeLink(bytes: Uint8Array): DecodeResult<Link> {
  try {
    const message = fromBinary(LinkSchema, bytes, READ);
    if (message.body.case === undefined) return { ok: false, error: "Link without a body" };
    return { ok: true, message };
  } catch (err) {
    return { ok: false, error: `bad Link: ${reason(err)}` };
  }
}
export function decodeTelemetry(bytes: Uint8Array): DecodeResult<Telemetry> {
  try {
    const message = fromBinary(TelemetrySchema, bytes, READ);
    if (message.body.case === undefined) return { ok: false, error: "Telemetry without a body" };
    return { ok: true, message };
  } catch (err) {
    return { ok: false, error: `bad Telemetry: ${reason(err)}` };
  }
}
export function decodeCommands(bytes: Uint8Array): DecodeResult<Commands> {
  try {
    const message = fromBinary(CommandsSchema, bytes, READ);
    if (message.body.case === undefined) return { ok: false, error: "Commands without a body" };
    return { ok: true, message };
  } catch (err) {
    return { ok: false, error: `bad Commands: ${reason(err)}` };
  }
}
/** A Log line; an empty payload is a valid (empty, LOG_DEBUG) line. */
export function decodeLog(bytes: Uint8Array): DecodeResult<Log> {
  try {
    return { ok: true, message: fromBinary(LogSchema, bytes, READ) };
  } catch (err) {
    return { ok: false, error: `bad Log: ${reason(err)}` };
  }
}

/** A decoded payload, by channel. Management (7) carries SMP bytes, not protobuf. */
export type Envelope =
  | { chan: typeof CHANNEL.LINK; message: Link }
  | { chan: typeof CHANNEL.TELEMETRY; message: Telemetry }
  | { chan: typeof CHANNEL.COMMANDS; message: Commands }
  | { chan: typeof CHANNEL.LOG; message: Log }
  | { chan: typeof CHANNEL.MANAGEMENT; smp: Uint8Array };

/** Decodes a frame's payload by its channel; an empty payload on the link channel is a pure ack, not an envelope. */
export function decodeEnvelope(chan: number, payload: Uint8Array): DecodeResult<Envelope> {
  switch (chan) {
    case CHANNEL.LINK: {
      const r = decodeLink(payload);
      return r.ok ? { ok: true, message: { chan, message: r.message } } : r;
    }
    case CHANNEL.TELEMETRY: {
      const r = decodeTelemetry(payload);
      return r.ok ? { ok: true, message: { chan, message: r.message } } : r;
    }
    case CHANNEL.COMMANDS: {
      const r = decodeCommands(payload);
      return r.ok ? { ok: true, message: { chan, message: r.message } } : r;
    }
    case CHANNEL.LOG: {
      const r = decodeLog(payload);
      return r.ok ? { ok: true, message: { chan, message: r.message } } : r;
    }
    case CHANNEL.MANAGEMENT:
      return { ok: true, message: { chan, smp: payload } };
    default:
      return { ok: false, error: `unknown channel ${chan}` };
  }
}

/** The envelope as protobuf JSON (uint64 as strings, bytes as base64, enums by name); SMP bytes give null. */
export function envelopeJson(env: Envelope): JsonValue {
  switch (env.chan) {
    case CHANNEL.LINK:
      return toJson(LinkSchema, env.message);
    case CHANNEL.TELEMETRY:
      return toJson(TelemetrySchema, env.message);
    case CHANNEL.COMMANDS:
      return toJson(CommandsSchema, env.message);
    case CHANNEL.LOG:
      return toJson(LogSchema, env.message);
    case CHANNEL.MANAGEMENT:
      return null;
  }
}
