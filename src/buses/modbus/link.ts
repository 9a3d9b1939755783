/**
 * One physical Modbus connection (a serial line, a TCP connection, or RTU over TCP) through
 * modbus-serial. A link does one request at a time and knows nothing about devices: the line's
 * queue above it guarantees requests never overlap (modbus-serial keeps a single pending
 * transaction per port, pitfalls.md).
 *
 * Every failure becomes a ModbusError of a kind a technician can act on: timeout, CRC error,
 * exception (with its code), reply from the wrong unit, truncated frame, disconnected.
 */
import { modbusSerial } from "./modbus-serial.js";

// A CommonJS module whose class is also its `default` property: the one form both TypeScript
// (NodeNext) and Node agree on.
const ModbusRTU = modbusSerial.default;
type ModbusRTU = InstanceType<typeof ModbusRTU>;
import { ModbusClientPort } from "./client-port.js";

export type ModbusTransport =
  | { kind: "rtu"; device: string; baud: number; parity: "none" | "even" | "odd"; dataBits: 7 | 8; stopBits: 1 | 2 }
  | { kind: "tcp"; host: string; port: number }
  | { kind: "rtu-over-tcp"; host: string; port: number };

/** coil: FC01/05/15 · discrete: FC02 · input: FC04 · holding: FC03/06/16 (the same as drivers' Table). */
export type ModbusTable = "coil" | "discrete" | "input" | "holding";

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
  read(unit: number, table: ModbusTable, address: number, count: number, timeoutMs: number): Promise<number[]>;
  writeCoil(unit: number, address: number, value: boolean, timeoutMs: number): Promise<void>;
  writeRegisters(unit: number, address: number, values: number[], timeoutMs: number): Promise<void>;
  /** Called when the connection drops by itself (cable pulled, converter closed the socket). */
  onDisconnect?: (reason: string) => void;
}

type ErrorLike = Error & { modbusCode?: number; errno?: string; code?: string };

/**
 * The link over modbus-serial, for all three transports. modbus-serial builds the requests and
 * checks the replies; the port under it is ours (ModbusClientPort: see there why).
 */
export class ModbusSerialLink implements ModbusLink {
  private client: ModbusRTU | null = null;
  private port: ModbusClientPort | null = null;
  /** The last exchange timed out: a late reply may still be on its way. */
  private dirty = false;
  onDisconnect?: (reason: string) => void;

  constructor(readonly transport: ModbusTransport) {}

  get isOpen(): boolean {
    return this.client?.isOpen ?? false;
  }

  async open(): Promise<void> {
    await this.close();
    const port = new ModbusClientPort(this.transport);
    const client = new ModbusRTU(port);
    try {
      await new Promise<void>((resolve, reject) => client.open((err: Error | null) => (err ? reject(err) : resolve())));
    } catch (err) {
      throw new ModbusError("disconnected", `cannot open ${describeTransport(this.transport)}: ${openReason(err as ErrorLike)}`);
    }
    this.client = client;
    this.port = port;
    this.dirty = false;
    port.on("close", () => {
      if (this.port !== port) return;
      this.client = null;
      this.port = null;
      this.onDisconnect?.("connection closed");
    });
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = null;
    this.port = null;
    if (!client) return;
    // Our port calls back once the port or socket is really closed: a reopen waits for that
    // ("Cannot lock port", pitfalls.md).
    await new Promise<void>((resolve) => client.close(() => resolve()));
  }

  /** Bytes received since the last request went out (what explains a timeout). */
  received(): Buffer {
    return this.port?.received() ?? Buffer.alloc(0);
  }

  private async prepare(unit: number, timeoutMs: number): Promise<ModbusRTU> {
    const client = this.client;
    if (!client || !client.isOpen) throw new ModbusError("disconnected", `${describeTransport(this.transport)} is not open`);
    if (this.dirty) {
      // Give a late reply to the last, timed-out request time to arrive, then throw it away.
      this.dirty = false;
      await new Promise((r) => setTimeout(r, LATE_REPLY_MS));
      this.port?.discard();
    }
    client.setID(unit);
    client.setTimeout(timeoutMs);
    return client;
  }

  async read(unit: number, table: ModbusTable, address: number, count: number, timeoutMs: number): Promise<number[]> {
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
   * poisons the connection for good, so drop it (the line reconnects). Over RTU the port drops
   * the leftovers now and again before the next request, after giving a late reply time to
   * arrive, so it is neither glued to the next reply nor taken for it.
   */
  private afterTimeout(): void {
    const client = this.client;
    if (!client) return;
    if (this.transport.kind === "tcp") {
      this.client = null;
      this.port = null;
      client.close(() => {});
      return;
    }
    this.dirty = true;
    this.port?.discard();
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
      // The bytes under the framing tell silence from a damaged or misaddressed reply.
      const bytes = this.received();
      if (bytes.length > 0 && this.transport.kind !== "tcp") {
        if (bytes[0] !== unit) return new ModbusError("wrong-unit", `reply from unit ${bytes[0]} instead of ${unit}`);
        return new ModbusError("truncated", `truncated reply (${bytes.length} bytes, then silence)`);
      }
      return new ModbusError("timeout", "no answer (timeout)");
    }
    if (/Port Not Open|ECONNRESET|EPIPE|closed|not open/i.test(msg) || err.code === "ECONNRESET") {
      this.client = null;
      this.port = null;
      return new ModbusError("disconnected", `connection lost (${msg})`);
    }
    return new ModbusError("other", msg);
  }
}

/** How long a late reply may still straggle in after a timeout, ms. */
const LATE_REPLY_MS = 30;

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
