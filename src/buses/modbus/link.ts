/**
 * One physical Modbus connection (a serial line, a TCP connection, or RTU over TCP) through
 * modbus-serial. A link does one request at a time and knows nothing about devices: the line's
 * queue above it guarantees requests never overlap (modbus-serial keeps a single pending
 * transaction per port, pitfalls.md).
 *
 * Every failure becomes a ModbusError of a kind a technician can act on: timeout, CRC error,
 * exception (with its code), reply from the wrong unit, truncated frame, disconnected.
 */
import modbusSerial from "modbus-serial";

// A CommonJS module whose class is also its `default` property: the one form both TypeScript
// (NodeNext) and Node agree on.
const ModbusRTU = modbusSerial.default;
type ModbusRTU = InstanceType<typeof ModbusRTU>;
import type { Table } from "../../../drivers/modbus/types.js";

export type ModbusTransport =
  | { kind: "rtu"; device: string; baud: number; parity: "none" | "even" | "odd"; dataBits: 7 | 8; stopBits: 1 | 2 }
  | { kind: "tcp"; host: string; port: number }
  | { kind: "rtu-over-tcp"; host: string; port: number };

export type ModbusErrorKind = "timeout" | "crc" | "exception" | "wrong-unit" | "truncated" | "disconnected" | "other";

/** Modbus exception codes (Modbus Application Protocol V1.1b3, section 7). */
export const EXCEPTION_NAMES: Record<number, string> = {
  1: "illegal function",
  2: "illegal data address",
  3: "illegal data value",
  4: "server device failure",
  5: "acknowledge",
  6: "server device busy",
  8: "memory parity error",
  10: "gateway path unavailable",
  11: "gateway target failed to respond",
};

export class ModbusError extends Error {
  constructor(
    readonly kind: ModbusErrorKind,
    message: string,
    readonly exceptionCode?: number,
  ) {
    super(message);
    this.name = "ModbusError";
  }

  /** Worth trying again at once: the frame was lost or damaged, not refused. */
  get retryable(): boolean {
    return this.kind === "timeout" || this.kind === "crc" || this.kind === "truncated" || this.kind === "wrong-unit";
  }
}

export function describeTransport(t: ModbusTransport): string {
  switch (t.kind) {
    case "rtu":
      return `${t.device} ${t.baud} ${t.dataBits}${t.parity[0]!.toUpperCase()}${t.stopBits}`;
    case "tcp":
      return `tcp ${t.host}:${t.port}`;
    case "rtu-over-tcp":
      return `rtu-over-tcp ${t.host}:${t.port}`;
  }
}

/** Silence between RTU frames: 3.5 characters of 11 bits, fixed at 1.75 ms above 19200 baud (MBSL 2.5.1.1). */
export function interFrameMs(t: ModbusTransport): number {
  if (t.kind !== "rtu") return 0;
  return t.baud > 19200 ? 1.75 : (3.5 * 11 * 1000) / t.baud;
}

export interface ModbusLink {
  readonly isOpen: boolean;
  open(): Promise<void>;
  close(): Promise<void>;
  /** Registers (16-bit) or, for coil/discrete, bits as 0/1. */
  read(unit: number, table: Table, address: number, count: number, timeoutMs: number): Promise<number[]>;
  writeCoil(unit: number, address: number, value: boolean, timeoutMs: number): Promise<void>;
  writeRegisters(unit: number, address: number, values: number[], timeoutMs: number): Promise<void>;
  /** Called when the connection drops by itself (cable pulled, converter closed the socket). */
  onDisconnect?: (reason: string) => void;
}

type ErrorLike = Error & { modbusCode?: number; errno?: string; code?: string };

/** The link over modbus-serial, for all three transports. */
export class ModbusSerialLink implements ModbusLink {
  private client: ModbusRTU | null = null;
  /** Bytes received during the current transaction (RTU framing only), to explain a timeout. */
  private received: Buffer[] = [];
  /** The last exchange timed out: a late reply may still be on its way. */
  private dirty = false;
  onDisconnect?: (reason: string) => void;

  constructor(readonly transport: ModbusTransport) {}

  get isOpen(): boolean {
    return this.client?.isOpen ?? false;
  }

  async open(): Promise<void> {
    await this.close();
    const client = new ModbusRTU();
    const t = this.transport;
    try {
      if (t.kind === "rtu") {
        await client.connectRTUBuffered(t.device, { baudRate: t.baud, parity: t.parity, dataBits: t.dataBits, stopBits: t.stopBits });
      } else if (t.kind === "tcp") {
        await client.connectTCP(t.host, { port: t.port });
      } else {
        // RTU frames over TCP is modbus-serial's "telnet" port (connectTcpRTUBuffered speaks MBAP).
        await client.connectTelnet(t.host, { port: t.port });
      }
    } catch (err) {
      throw new ModbusError("disconnected", `cannot open ${describeTransport(t)}: ${openReason(err as ErrorLike)}`);
    }
    this.client = client;
    client.on("close", () => {
      if (this.client !== client) return;
      this.client = null;
      this.onDisconnect?.("connection closed");
    });
    client.on("error", () => {
      // Reported through the failing request; the listener keeps the emitter from throwing.
    });
    // Watch the raw bytes under modbus-serial's framing: a timeout after some bytes arrived is
    // a truncated frame or a reply from another unit, which the technician wants to know.
    const raw = (client as unknown as { _port?: { _client?: NodeJS.EventEmitter } })._port?._client;
    raw?.on("data", (chunk: Buffer) => this.received.push(chunk));
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = null;
    if (!client) return;
    // Wait for the port to be really closed before any reopen ("Cannot lock port", pitfalls.md).
    await withTimeoutClose(client);
  }

  private async prepare(unit: number, timeoutMs: number): Promise<ModbusRTU> {
    const client = this.client;
    if (!client || !client.isOpen) throw new ModbusError("disconnected", `${describeTransport(this.transport)} is not open`);
    if (this.dirty) {
      // Give a late reply to the last, timed-out request time to arrive, then throw it away.
      this.dirty = false;
      await new Promise((r) => setTimeout(r, LATE_REPLY_MS));
      clearBuffer(client);
    }
    client.setID(unit);
    client.setTimeout(timeoutMs);
    this.received = [];
    return client;
  }

  async read(unit: number, table: Table, address: number, count: number, timeoutMs: number): Promise<number[]> {
    const client = await this.prepare(unit, timeoutMs);
    try {
      switch (table) {
        case "input":
          return (await client.readInputRegisters(address, count)).data;
        case "holding":
          return (await client.readHoldingRegisters(address, count)).data;
        case "coil":
          return (await client.readCoils(address, count)).data.slice(0, count).map((b: boolean) => (b ? 1 : 0));
        case "discrete":
          return (await client.readDiscreteInputs(address, count)).data.slice(0, count).map((b: boolean) => (b ? 1 : 0));
      }
    } catch (err) {
      throw this.classify(err as ErrorLike, unit);
    }
  }

  async writeCoil(unit: number, address: number, value: boolean, timeoutMs: number): Promise<void> {
    const client = await this.prepare(unit, timeoutMs);
    try {
      await client.writeCoil(address, value);
    } catch (err) {
      throw this.classify(err as ErrorLike, unit);
    }
  }

  async writeRegisters(unit: number, address: number, values: number[], timeoutMs: number): Promise<void> {
    const client = await this.prepare(unit, timeoutMs);
    try {
      await client.writeRegisters(address, values);
    } catch (err) {
      throw this.classify(err as ErrorLike, unit);
    }
  }

  private classify(err: ErrorLike, unit: number): ModbusError {
    const e = this.classifyOnly(err, unit);
    if (e.kind === "timeout" || e.kind === "truncated" || e.kind === "wrong-unit") this.afterTimeout();
    return e;
  }

  /**
   * After a lost exchange, a late or partial reply may still come in. Over TCP a partial frame
   * poisons the connection for good, so drop it (the line reconnects). Over RTU, modbus-serial
   * would glue the leftovers to the next reply or hand a late reply to the next request with the
   * same unit and function, so its buffer is cleared now and again before the next request.
   */
  private afterTimeout(): void {
    const client = this.client;
    if (!client) return;
    if (this.transport.kind === "tcp") {
      this.client = null;
      void withTimeoutClose(client);
      return;
    }
    this.dirty = true;
    clearBuffer(client);
  }

  private classifyOnly(err: ErrorLike, unit: number): ModbusError {
    if (err instanceof ModbusError) return err;
    const msg = err.message ?? String(err);
    if (typeof err.modbusCode === "number") {
      const name = EXCEPTION_NAMES[err.modbusCode] ?? "unknown exception";
      return new ModbusError("exception", `exception ${err.modbusCode} (${name})`, err.modbusCode);
    }
    if (/CRC error/i.test(msg)) return new ModbusError("crc", "CRC error in the reply");
    if (/expected address (\d+) got (\d+)/.test(msg)) {
      const m = /got (\d+)/.exec(msg);
      return new ModbusError("wrong-unit", `reply from unit ${m?.[1]} instead of ${unit}`);
    }
    if (/Data length error/i.test(msg)) return new ModbusError("truncated", `malformed reply (${msg})`);
    if (/Timed out/i.test(msg) || err.errno === "ETIMEDOUT") {
      const bytes = Buffer.concat(this.received);
      if (bytes.length > 0 && this.transport.kind !== "tcp") {
        if (bytes[0] !== unit) return new ModbusError("wrong-unit", `reply from unit ${bytes[0]} instead of ${unit}`);
        return new ModbusError("truncated", `truncated reply (${bytes.length} bytes, then silence)`);
      }
      return new ModbusError("timeout", "no answer (timeout)");
    }
    if (/Port Not Open|ECONNRESET|EPIPE|closed|not open/i.test(msg) || err.code === "ECONNRESET") {
      this.client = null;
      return new ModbusError("disconnected", `connection lost (${msg})`);
    }
    return new ModbusError("other", msg);
  }
}

/** How long a late reply may still straggle in after a timeout, ms. */
const LATE_REPLY_MS = 30;

function clearBuffer(client: ModbusRTU): void {
  const port = (client as unknown as { _port?: { _buffer?: Buffer } })._port;
  if (port && Buffer.isBuffer(port._buffer)) port._buffer = Buffer.alloc(0);
}

/** modbus-serial's close() never calls back when the socket is already gone: don't wait forever. */
function withTimeoutClose(client: ModbusRTU): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 1000);
    try {
      client.close(() => {
        clearTimeout(timer);
        resolve();
      });
    } catch {
      clearTimeout(timer);
      resolve();
    }
  });
}

function openReason(err: ErrorLike): string {
  const code = err.code ?? err.errno;
  const msg = err.message ?? String(err);
  if (code === "ENOENT" || /No such file/i.test(msg)) return "no such device (unplugged? see: edge-agent ports)";
  if (code === "EACCES" || /Permission denied/i.test(msg)) return "permission denied (add the user to the dialout group)";
  if (/Cannot lock port|Resource temporarily unavailable/i.test(msg)) return "the port is in use by another program";
  if (code === "ECONNREFUSED") return "connection refused";
  if (code === "EHOSTUNREACH" || code === "ENETUNREACH" || code === "ETIMEDOUT") return `unreachable (${code})`;
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return "cannot resolve the host name";
  return msg;
}
