/**
 * Writes the golden frames of the firmware bridge: drivers/bridge/golden.json and section 12 of
 * docs/firmware-bridge.md. Usage: npm run bridge:golden
 *
 * golden.json is read by the C firmware's tests too: keep its field names exactly as they are —
 * a list of { name, description, chan, flags, seq, ack, payload_hex, message, wire_hex } where
 * `message` is the decoded envelope as protobuf JSON, or null for a pure ack or SMP bytes, and
 * `wire_hex` is the bytes on the wire with both delimiters (leading 0x00, COBS, trailing 0x00).
 */
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CHANNEL, FLAG, encodeFrame, frameBytes } from "../src/bridge/frame.js";
import {
  Capability,
  CommandStatus,
  LogLevel,
  PointType,
  Quality,
  ResetReason,
  decodeEnvelope,
  encodeCommands,
  encodeLink,
  encodeLog,
  encodeTelemetry,
  envelopeJson,
} from "../src/bridge/messages.js";
import { SCHEMA_HASH, formatSchemaHash, protoPath } from "../src/bridge/schema.js";

export interface GoldenFrame {
  name: string;
  description: string;
  chan: number;
  flags: number;
  seq: number;
  ack: number;
  payload_hex: string;
  message: unknown;
  wire_hex: string;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

// One realistic session: a room node (ESP32) relaying battery sensors, 2026-01-01 09:00 UTC.
const BOOT_ID = 0x9a3c71e4;
const UTC0 = 1_767_258_000_000_000n;
const BOARD_ID = Uint8Array.from([0x24, 0x0a, 0xc4, 0x5f, 0x9e, 0x10]);
const IMAGE_HASH = new Uint8Array(createHash("sha256").update("room-node 1.4.2").digest());
const { REL, ACK, NAK, BUSY } = FLAG;

interface Spec {
  name: string;
  description: string;
  chan: number;
  flags: number;
  seq: number;
  ack: number;
  payload: Uint8Array;
}

/** Bytes 1…255 repeating: no 0x00 anywhere. */
function nonZero(n: number, from: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => ((from + i) % 255) + 1);
}

/** A payload of `n` non-zero bytes whose frame's CRC has no 0x00 either: one run of 11 + n bytes. */
function exactRun(n: number, chan: number, flags: number, seq: number, ack: number): Uint8Array {
  for (let from = 0; from < 255; from++) {
    const payload = nonZero(n, from);
    const raw = frameBytes({ chan, flags, seq, ack, payload });
    if (raw.every((b) => b !== 0)) return payload;
  }
  throw new Error("no payload without a zero CRC byte");
}

const specs: Spec[] = [
  {
    name: "hello_request",
    description: "gateway → board: HelloRequest, unreliable, before any session (no ACK)",
    chan: CHANNEL.LINK, flags: 0, seq: 0, ack: 0,
    payload: encodeLink({ body: { case: "helloRequest", value: { protocol: 1 } } }),
  },
  {
    name: "hello",
    description: "board → gateway: Hello, REL frame 0 (starts the session); ESP32 room node, power-on boot",
    chan: CHANNEL.LINK, flags: REL, seq: 0, ack: 0,
    payload: encodeLink({
      body: {
        case: "hello",
        value: {
          protocol: 1,
          schemaHash: SCHEMA_HASH,
          boardId: BOARD_ID,
          hardware: "room-node/rev-c",
          firmware: "1.4.2",
          imageHash: IMAGE_HASH,
          bootId: BOOT_ID,
          resetReason: ResetReason.RESET_POWER_ON,
          capabilities: Capability.CAP_TIME | Capability.CAP_CHILDREN | Capability.CAP_COMMANDS,
          maxFrame: 512,
          window: 8,
          uptimeUs: 1_843_217n,
        },
      },
    }),
  },
  {
    name: "hello_reply_accepted",
    description: "gateway → board: HelloReply accepted, REL frame 0 of the gateway, ACK 0 (the Hello)",
    chan: CHANNEL.LINK, flags: REL | ACK, seq: 0, ack: 0,
    payload: encodeLink({
      body: { case: "helloReply", value: { accepted: true, utcUs: UTC0, maxFrame: 512, window: 8, heartbeatMs: 1000 } },
    }),
  },
  {
    name: "hello_reply_refused",
    description: "gateway → board: HelloReply refused (a board built from another bridge.proto)",
    chan: CHANNEL.LINK, flags: REL | ACK, seq: 0, ack: 0,
    payload: encodeLink({
      body: {
        case: "helloReply",
        value: { accepted: false, reason: `schema 0x0badf00d differs from the gateway's ${formatSchemaHash(SCHEMA_HASH)}`, utcUs: UTC0 },
      },
    }),
  },
  {
    name: "pure_ack",
    description: "board → gateway: pure acknowledgement of the gateway's REL frame 0 (channel 0, ACK, empty payload)",
    chan: CHANNEL.LINK, flags: ACK, seq: 0, ack: 0,
    payload: new Uint8Array(0),
  },
  {
    name: "time_request",
    description: "gateway → board: TimeRequest t1 (gateway UTC, µs), unreliable",
    chan: CHANNEL.LINK, flags: ACK, seq: 0, ack: 0,
    payload: encodeLink({ body: { case: "timeRequest", value: { t1Us: UTC0 + 2_500n } } }),
  },
  {
    name: "time_reply",
    description: "board → gateway: TimeReply t1 echoed, t2 and t3 on the board's monotonic clock (µs since boot)",
    chan: CHANNEL.LINK, flags: ACK, seq: 0, ack: 0,
    payload: encodeLink({ body: { case: "timeReply", value: { t1Us: UTC0 + 2_500n, t2Us: 1_851_002n, t3Us: 1_851_140n } } }),
  },
  {
    name: "describe",
    description: "board → gateway: Describe with 2 points (a temperature; a writable setpoint with bounds), complete",
    chan: CHANNEL.TELEMETRY, flags: REL | ACK, seq: 1, ack: 0,
    payload: encodeTelemetry({
      body: {
        case: "describe",
        value: {
          points: [
            { id: 1, name: "temperature", unit: "°C", type: PointType.POINT_NUMBER },
            { id: 2, name: "setpoint", unit: "°C", type: PointType.POINT_NUMBER, writable: true, min: 5, max: 30 },
          ],
          complete: true,
        },
      },
    }),
  },
  {
    name: "readings",
    description: "board → gateway: Readings 1…4 of the boot: a number, a bool, a text, and a failed sensor (bad, no value)",
    chan: CHANNEL.TELEMETRY, flags: REL | ACK, seq: 2, ack: 0,
    payload: encodeTelemetry({
      body: {
        case: "readings",
        value: {
          bootId: BOOT_ID,
          firstSeq: 1,
          readings: [
            { point: 1, tUs: 1_900_000n, value: { case: "number", value: 21.5 } },
            { point: 3, tUs: 1_900_000n, value: { case: "flag", value: true } },
            { point: 4, tUs: 1_900_000n, value: { case: "text", value: "door open" } },
            { point: 5, tUs: 1_900_000n, quality: Quality.BAD },
          ],
        },
      },
    }),
  },
  {
    name: "readings_ack",
    description: "gateway → board: ReadingsAck up to 4, sent after the outbox committed them; REL frame 1, ACK 2",
    chan: CHANNEL.TELEMETRY, flags: REL | ACK, seq: 1, ack: 2,
    payload: encodeTelemetry({ body: { case: "ack", value: { bootId: BOOT_ID, uptoSeq: 4 } } }),
  },
  {
    name: "heartbeat",
    description: "board → gateway: Heartbeat with 3 readings waiting in its buffer, unreliable, ACK 1",
    chan: CHANNEL.LINK, flags: ACK, seq: 0, ack: 1,
    payload: encodeLink({ body: { case: "heartbeat", value: { uptimeUs: 2_843_217n, ringUsed: 3, ringDropped: 0 } } }),
  },
  {
    name: "command_write_number",
    description: "gateway → board: Command 7, write 22.5 to point 2 (setpoint)",
    chan: CHANNEL.COMMANDS, flags: REL | ACK, seq: 2, ack: 2,
    payload: encodeCommands({ body: { case: "command", value: { id: 7, point: 2, value: { case: "number", value: 22.5 } } } }),
  },
  {
    name: "command_result",
    description: "board → gateway: CommandResult 7 ok, with the read-back value",
    chan: CHANNEL.COMMANDS, flags: REL | ACK, seq: 3, ack: 2,
    payload: encodeCommands({
      body: {
        case: "result",
        value: { id: 7, status: CommandStatus.COMMAND_OK, readback: { point: 2, tUs: 3_001_000n, value: { case: "number", value: 22.5 } } },
      },
    }),
  },
  {
    name: "log",
    description: "board → gateway: one log line (channel 3, unreliable)",
    chan: CHANNEL.LOG, flags: ACK, seq: 0, ack: 2,
    payload: encodeLog({ level: LogLevel.LOG_INFO, tUs: 3_002_000n, text: "setpoint 22.5 °C from gateway" }),
  },
  {
    name: "nak_busy",
    description: "gateway → board: NAK (resend everything after 3, now) while busy (no new REL frames): channel 0, ACK|NAK|BUSY, empty",
    chan: CHANNEL.LINK, flags: ACK | NAK | BUSY, seq: 0, ack: 3,
    payload: new Uint8Array(0),
  },
  {
    name: "readings_zeros",
    description: "board → gateway: Readings of zeros (doubles 0.0, many 0x00 bytes: one COBS block each)",
    chan: CHANNEL.TELEMETRY, flags: REL | ACK, seq: 4, ack: 2,
    payload: encodeTelemetry({
      body: {
        case: "readings",
        value: {
          bootId: BOOT_ID,
          firstSeq: 5,
          readings: [1, 6, 7].map((point) => ({ point, tUs: 4_000_000n, value: { case: "number" as const, value: 0 } })),
        },
      },
    }),
  },
  {
    name: "describe_long",
    description: "board → gateway: Describe of a child's 8 switches, payload over 254 bytes without a 0x00 (COBS block of 254: code 0xFF)",
    chan: CHANNEL.TELEMETRY, flags: REL | ACK, seq: 5, ack: 2,
    payload: encodeTelemetry({
      body: {
        case: "describe",
        value: {
          points: ["north", "south", "east", "west", "hall", "stairs", "porch", "garage"].map((where, i) => ({
            id: 11 + i,
            name: `light_${where}_switch`,
            unit: "on/off",
            type: PointType.POINT_BOOL,
            writable: true,
            child: "node-7f3a",
          })),
          complete: true,
          child: "node-7f3a",
        },
      },
    }),
  },
  {
    name: "management_smp",
    description: "gateway → board: management channel 7, raw SMP bytes (image state read: header 00 00 00 01 00 01 2a 00, CBOR {})",
    chan: CHANNEL.MANAGEMENT, flags: REL | ACK, seq: 3, ack: 5,
    payload: Uint8Array.from([0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x2a, 0x00, 0xa0]),
  },
  {
    name: "cobs_exact_block",
    description:
      "management channel, 243 opaque non-zero bytes: the whole frame (header to CRC) is 254 bytes without 0x00, so COBS ends on a full block: FF and 254 bytes, no code byte after it",
    chan: CHANNEL.MANAGEMENT, flags: REL | ACK, seq: 0x0104, ack: 0x0203,
    payload: exactRun(243, CHANNEL.MANAGEMENT, REL | ACK, 0x0104, 0x0203),
  },
];

function golden(s: Spec): GoldenFrame {
  const env = decodeEnvelope(s.chan, s.payload);
  const pureAck = s.chan === CHANNEL.LINK && s.payload.length === 0;
  if (!pureAck && !env.ok) throw new Error(`${s.name}: ${env.error}`);
  return {
    name: s.name,
    description: s.description,
    chan: s.chan,
    flags: s.flags,
    seq: s.seq,
    ack: s.ack,
    payload_hex: hex(s.payload),
    message: pureAck || !env.ok ? null : envelopeJson(env.message),
    wire_hex: hex(encodeFrame({ chan: s.chan, flags: s.flags, seq: s.seq, ack: s.ack, payload: s.payload })),
  };
}

const frames = specs.map(golden);
const long = frames.find((f) => f.name === "describe_long")!;
if (long.payload_hex.length / 2 < 254 || !/^(..)*?ff/.test(long.wire_hex)) throw new Error("describe_long does not reach a 254-byte COBS block");

const root = join(protoPath(), "..", "..", "..");
writeFileSync(join(root, "drivers", "bridge", "golden.json"), JSON.stringify(frames, null, 2) + "\n");

const FLAG_NAMES: [number, string][] = [[REL, "REL"], [ACK, "ACK"], [NAK, "NAK"], [BUSY, "BUSY"]];
const flagText = (f: number): string => FLAG_NAMES.filter(([b]) => f & b).map(([, n]) => n).join("|") || "none";

function wrapped(h: string): string {
  const bytes = h.match(/../g) ?? [];
  const lines: string[] = [];
  for (let i = 0; i < bytes.length; i += 24) lines.push(bytes.slice(i, i + 24).join(" "));
  return lines.join("\n");
}

const BEGIN = "<!-- golden frames: written by scripts/bridge-golden.ts, do not edit -->";
const END = "<!-- end of golden frames -->";
const section = [
  BEGIN,
  "",
  ...frames.flatMap((f) => [
    `**${f.name}** — ${f.description}. chan ${f.chan}, flags ${flagText(f.flags)}, seq ${f.seq}, ack ${f.ack}, payload ${f.payload_hex.length / 2} bytes.`,
    "",
    "```",
    wrapped(f.wire_hex),
    "```",
    "",
  ]),
  END,
].join("\n");

const docPath = join(root, "docs", "firmware-bridge.md");
const doc = readFileSync(docPath, "utf8");
const placeholder = "(filled by the generator: `scripts/bridge-golden.ts`)";
let next: string;
if (doc.includes(BEGIN) && doc.includes(END)) next = doc.slice(0, doc.indexOf(BEGIN)) + section + doc.slice(doc.indexOf(END) + END.length);
else if (doc.includes(placeholder)) next = doc.replace(placeholder, section);
else throw new Error(`${docPath}: no place for the golden frames (neither the markers nor the placeholder)`);
writeFileSync(docPath, next);
console.log(`drivers/bridge/golden.json and docs/firmware-bridge.md section 12: ${frames.length} frames`);
