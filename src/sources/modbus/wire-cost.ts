/**
 * What one read costs on its transport, in milliseconds: the planner merges two reads when
 * reading the registers between them costs less than a transaction of its own. Estimates, not
 * measurements: they rank plans and tell a technician roughly what a poll takes on the wire.
 */
import type { Table } from "../../../drivers/modbus/types.js";
import { isBitTable } from "../../../drivers/modbus/types.js";

/** The facts of a transport the cost depends on (a ModbusTransport fits). */
export type WireFacts =
  | { kind: "rtu"; baud: number; parity: "none" | "even" | "odd"; dataBits: 7 | 8; stopBits: 1 | 2 }
  | { kind: "tcp" }
  | { kind: "rtu-over-tcp" };

/** A transaction costs fixedMs + (requestBytes + replyBytes + data bytes) × msPerByte. */
export interface WireModel {
  /** For people: `9600 8N1`, `tcp`. */
  label: string;
  /** Silences, the device's turnaround, a network round trip: paid once per request. */
  fixedMs: number;
  msPerByte: number;
  /** Bytes of a read request on the wire. */
  requestBytes: number;
  /** Bytes of a read reply without its data. */
  replyBytes: number;
}

/**
 * Assumed, as devices rarely document it: time from the end of a request to the start of the
 * reply. Meters take several milliseconds; the simulator takes 2.
 */
export const ASSUMED_TURNAROUND_MS = 10;
/** Assumed round trip of a Modbus TCP request on a local network, the device's work included. */
export const ASSUMED_ROUND_TRIP_MS = 3;
/** Nominal rate of a TCP link (10 Mbit/s, the slowest Ethernet a gateway or converter has). */
const TCP_MS_PER_BYTE = 8 / 10_000;
/** The serial line behind an RTU-over-TCP converter is not visible to us: assumed 9600 8N1. */
const CONVERTER_LINE = { kind: "rtu", baud: 9600, parity: "none", dataBits: 8, stopBits: 1 } as const;

// Modbus over Serial Line V1.02 §2.5.1 (RTU frame: unit, PDU, CRC) and Modbus Messaging on
// TCP/IP §3.1.3 (MBAP header of 7 bytes); a read request PDU is 5 bytes, a reply's PDU 2 + data.
const RTU_REQUEST = 1 + 5 + 2;
const RTU_REPLY = 1 + 2 + 2;
const MBAP_REQUEST = 7 + 5;
const MBAP_REPLY = 7 + 2;

export function wireModel(facts: WireFacts): WireModel {
  switch (facts.kind) {
    case "rtu": {
      // Start bit, data bits, parity bit, stop bits: 10 for 8N1, 11 for 8E1 and 8N2.
      const bits = 1 + facts.dataBits + (facts.parity === "none" ? 0 : 1) + facts.stopBits;
      const charMs = (bits * 1000) / facts.baud;
      // MBSL §2.5.1.1: 3.5 character times between frames, fixed at 1.75 ms above 19200 baud;
      // one after the request (the device sees its end) and one after the reply.
      const t35 = facts.baud > 19200 ? 1.75 : 3.5 * charMs;
      const label = `${facts.baud} ${facts.dataBits}${facts.parity[0]!.toUpperCase()}${facts.stopBits}`;
      return { label, fixedMs: 2 * t35 + ASSUMED_TURNAROUND_MS, msPerByte: charMs, requestBytes: RTU_REQUEST, replyBytes: RTU_REPLY };
    }
    case "tcp":
      return { label: "tcp", fixedMs: ASSUMED_ROUND_TRIP_MS, msPerByte: TCP_MS_PER_BYTE, requestBytes: MBAP_REQUEST, replyBytes: MBAP_REPLY };
    case "rtu-over-tcp": {
      const line = wireModel(CONVERTER_LINE);
      return { ...line, label: `rtu-over-tcp (line assumed ${line.label})`, fixedMs: line.fixedMs + ASSUMED_ROUND_TRIP_MS };
    }
  }
}

/** Estimated time of one read of `count` registers (or bits) of `table`. */
export function readMs(wire: WireModel, table: Table, count: number): number {
  const data = isBitTable(table) ? Math.ceil(count / 8) : 2 * count;
  return wire.fixedMs + (wire.requestBytes + wire.replyBytes + data) * wire.msPerByte;
}

/** Estimated time of a whole plan: its reads one after the other, as a line sends them. */
export function planMs(wire: WireModel, plan: ReadonlyArray<{ table: Table; count: number }>): number {
  let ms = 0;
  for (const r of plan) ms += readMs(wire, r.table, r.count);
  return ms;
}
