/**
 * The port under our modbus-serial client: we hand `new ModbusRTU(port)` this object (its
 * documented way to bring a port of one's own) instead of letting it build a serial or TCP
 * port itself, because we need two things its ports keep private:
 * - every byte received during a transaction, to explain a timeout (a truncated frame, or a
 *   reply from another unit, rather than silence);
 * - dropping what is left in the receive buffer after a lost exchange, so a late or partial
 *   reply is neither glued to the next one nor taken for it.
 * The port owns the serial port or the socket, frames replies itself (RTU by the expected
 * length, as modbus-serial's buffered port does; Modbus TCP by its MBAP header) and passes
 * modbus-serial each reply as an RTU frame (unit, PDU, CRC), which is what its client parses.
 *
 * What modbus-serial asks of a port (index.js): open(cb), close(cb), isOpen, write(frame),
 * "data"/"close" events, and the transaction ids `_transactionIdWrite` (under which it files
 * the request it is about to write) and `_transactionIdRead` (under which it looks the reply
 * up). Both stay 1: modbus-serial keeps every transaction it filed, with its reply, until the
 * id is used again (with an id per MBAP transaction id, 256 per connection, ~1 KB each); the
 * port matches an MBAP reply to the request in progress by its transaction id itself.
 */
import { EventEmitter } from "node:events";
import { Socket } from "node:net";
import type { SerialPort } from "serialport";
import { crc16, findRtuReply, MAX_RTU_FRAME, mbapFrame, parseMbap, rtuReplyLength } from "./frames.js";
import type { ModbusTransport } from "./link.js";

/** Bytes kept to explain a timeout; a babbling device cannot make it grow further. */
const SEEN_LIMIT = 2 * MAX_RTU_FRAME;

/** A byte stream: a serial port or a TCP connection. */
interface Stream {
  readonly isOpen: boolean;
  open(onData: (chunk: Buffer) => void, onClose: () => void): Promise<void>;
  write(bytes: Buffer): void;
  /** Resolves once the port or socket is really closed (a reopen must wait for it). */
  close(): Promise<void>;
}

type Callback = (err?: Error | null) => void;

export class ModbusClientPort extends EventEmitter {
  /** modbus-serial's port contract (see the file comment): one transaction at a time. */
  readonly _transactionIdRead = 1;
  readonly _transactionIdWrite = 1;
  /** The next MBAP transaction id (1, 2, … 255, 0, 1…), and the one of the request in progress. */
  private nextTxId = 1;
  private pendingTxId: number | null = null;
  private readonly stream: Stream;
  private readonly framing: "rtu" | "mbap";
  /** Received and not yet framed. */
  private rx: Buffer = Buffer.alloc(0);
  /** Everything received since the last request. */
  private seen: Buffer[] = [];
  private seenBytes = 0;
  /** The reply the RTU framing waits for; null once it came (a duplicate is not passed on). */
  private expected: { unit: number; fc: number; length: number | undefined } | null = null;

  constructor(readonly transport: ModbusTransport) {
    super();
    this.framing = transport.kind === "tcp" ? "mbap" : "rtu";
    this.stream = transport.kind === "rtu" ? serialStream(transport) : socketStream(transport.host, transport.port);
  }

  get isOpen(): boolean {
    return this.stream.isOpen;
  }

  open(callback: Callback): void {
    this.stream.open(
      (chunk) => this.receive(chunk),
      () => this.emit("close"),
    ).then(
      () => callback(null),
      (err: unknown) => callback(err as Error),
    );
  }

  close(callback?: Callback): void {
    void this.stream.close().then(() => callback?.(null));
  }

  /** A request from modbus-serial: an RTU frame (unit, PDU, CRC). */
  write(frame: Buffer): void {
    // Half duplex: nothing that came before the request can be its answer.
    this.discard();
    if (this.framing === "mbap") {
      // MBAP carries no CRC. 256 ids, as modbus-serial's own TCP port uses.
      this.pendingTxId = this.nextTxId;
      this.nextTxId = (this.nextTxId + 1) % 256;
      this.stream.write(mbapFrame(this.pendingTxId, frame[0]!, frame.subarray(1, frame.length - 2)));
      return;
    }
    this.expected = { unit: frame[0]!, fc: frame[1]!, length: rtuReplyLength(frame) };
    this.stream.write(frame);
  }

  /** Everything received since the last request was written. */
  received(): Buffer {
    return Buffer.concat(this.seen);
  }

  /** Drops what is left of a lost exchange; a late reply to it is not passed on either. */
  discard(): void {
    this.rx = Buffer.alloc(0);
    this.seen = [];
    this.seenBytes = 0;
    this.expected = null;
    this.pendingTxId = null;
  }

  private receive(chunk: Buffer): void {
    if (this.seenBytes < SEEN_LIMIT) {
      this.seen.push(chunk);
      this.seenBytes += chunk.length;
    }
    if (this.framing === "mbap") return this.receiveMbap(chunk);
    const want = this.expected;
    if (!want) return; // nobody asked: stray bytes on the line
    this.rx = this.rx.length === 0 ? chunk : Buffer.concat([this.rx, chunk]);
    const r = findRtuReply(this.rx, want.unit, want.fc, want.length);
    if ("need" in r) {
      if (this.rx.length > 2 * MAX_RTU_FRAME) this.rx = this.rx.subarray(this.rx.length - MAX_RTU_FRAME);
      return;
    }
    this.rx = Buffer.from(r.rest);
    this.expected = null;
    this.emit("data", Buffer.from(r.frame));
  }

  private receiveMbap(chunk: Buffer): void {
    this.rx = this.rx.length === 0 ? chunk : Buffer.concat([this.rx, chunk]);
    for (;;) {
      const r = parseMbap(this.rx);
      if ("need" in r) return;
      if ("invalid" in r) {
        // Not Modbus TCP: nothing in it can be trusted; the request times out and the link reconnects.
        this.rx = Buffer.alloc(0);
        return;
      }
      this.rx = r.rest;
      const { txId, unit, pdu } = r.frame;
      // A reply to an earlier request, or a second one to this request: not this request's answer.
      if (txId !== this.pendingTxId) continue;
      this.pendingTxId = null;
      const frame = Buffer.alloc(pdu.length + 3);
      frame[0] = unit;
      pdu.copy(frame, 1);
      frame.writeUInt16LE(crc16(frame.subarray(0, frame.length - 2)), frame.length - 2);
      this.emit("data", frame);
    }
  }
}

function serialStream(t: Extract<ModbusTransport, { kind: "rtu" }>): Stream {
  let port: SerialPort | null = null;
  return {
    get isOpen() {
      return port?.isOpen ?? false;
    },
    async open(onData, onClose) {
      // Loaded on first use: a gateway with TCP devices only never pays for the native binding.
      const { SerialPort } = await import("serialport");
      const p = new SerialPort({ path: t.device, baudRate: t.baud, parity: t.parity, dataBits: t.dataBits, stopBits: t.stopBits, autoOpen: false });
      await new Promise<void>((resolve, reject) => p.open((err) => (err ? reject(err) : resolve())));
      port = p;
      p.on("data", onData);
      p.on("error", () => {
        // An unplugged adapter: the port closes, and the failing request says so.
      });
      p.on("close", onClose);
    },
    write(bytes) {
      port?.write(bytes);
    },
    async close() {
      const p = port;
      port = null;
      if (!p) return;
      p.removeAllListeners("data");
      p.removeAllListeners("close");
      // Closing by itself (the adapter went away): wait until it is done, so a reopen finds the port free.
      if (p.closing) {
        await new Promise<void>((resolve) => {
          p.once("close", () => resolve());
          p.once("error", () => resolve()); // a failed close ends in an error, not a close
        });
      }
      if (!p.isOpen) return;
      await new Promise<void>((resolve) => p.close(() => resolve()));
    },
  };
}

function socketStream(host: string, portNumber: number): Stream {
  let socket: Socket | null = null;
  return {
    get isOpen() {
      return socket !== null && !socket.destroyed && socket.readyState === "open";
    },
    async open(onData, onClose) {
      const s = new Socket();
      await new Promise<void>((resolve, reject) => {
        s.once("error", reject);
        s.connect({ host, port: portNumber }, () => {
          s.off("error", reject);
          resolve();
        });
      });
      socket = s;
      s.setNoDelay(true);
      s.on("data", onData);
      s.on("error", () => {
        // A reset by the converter: "close" follows.
      });
      s.on("close", onClose);
    },
    write(bytes) {
      socket?.write(bytes);
    },
    async close() {
      const s = socket;
      socket = null;
      if (!s) return;
      s.removeAllListeners("data");
      s.removeAllListeners("close");
      if (s.destroyed) return;
      await new Promise<void>((resolve) => {
        s.once("close", () => resolve());
        s.destroy();
      });
    },
  };
}
