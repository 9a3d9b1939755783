/**
 * A Modbus slave that serves simulated devices over Modbus TCP, RTU on a serial device (a real
 * port or one end of a socat pty pair) and RTU over TCP. We frame the bytes ourselves (not
 * modbus-serial's ServerTCP/ServerSerial) so faults can be injected at frame level: silence,
 * exceptions, bad CRCs, slow, truncated and misaddressed replies.
 *
 * Nothing listens until listenTcp / listenRtuOverTcp / openSerial is called; each returns a
 * listener to close, and close() closes them all.
 */
import type { LinkFault } from "../../buses/modbus/sim-link.js";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { SerialPort } from "serialport";
import {
  checkRtuFrame,
  exceptionPdu,
  mbapFrame,
  MAX_RTU_FRAME,
  parseMbap,
  parseRtuRequest,
  rtuFrame,
  type RtuRequest,
} from "../../buses/modbus/frames.js";
import type { SimDevice } from "./device.js";

/** A fault a simulated unit answers with: the same kinds the in-memory link (buses) injects. */
export type Fault = LinkFault;

export type FaultKind = Fault["kind"];

/** "no-answer", "exception:2", "slow:800" … → Fault; throws an Error naming what is wrong. */
export function parseFault(text: string): Fault {
  const [kind, arg, ...extra] = text.trim().split(":");
  const noArg = (k: "none" | "no-answer" | "bad-crc" | "truncated" | "wrong-unit"): Fault => {
    if (arg !== undefined) throw new Error(`fault '${k}' takes no argument`);
    return { kind: k };
  };
  if (extra.length > 0) throw new Error(`fault '${text}': expected KIND or KIND:ARG`);
  switch (kind) {
    case "none":
    case "no-answer":
    case "bad-crc":
    case "truncated":
    case "wrong-unit":
      return noArg(kind);
    case "exception": {
      const code = arg === undefined ? 4 : Number(arg.startsWith("0x") ? Number.parseInt(arg.slice(2), 16) : arg);
      if (!Number.isInteger(code) || code < 1 || code > 255) throw new Error(`fault 'exception:${arg}': code must be 1–255 (2 = illegal data address)`);
      return { kind: "exception", code };
    }
    case "slow": {
      const ms = Number(arg);
      if (arg === undefined || !Number.isFinite(ms) || ms < 0 || ms > 60_000) throw new Error(`fault 'slow:${arg ?? ""}': expected a delay in milliseconds, 0–60000`);
      return { kind: "slow", ms };
    }
    default:
      throw new Error(`unknown fault '${kind}' (known: no-answer, exception:CODE, bad-crc, slow:MS, truncated, wrong-unit, none)`);
  }
}

export function formatFault(f: Fault): string {
  switch (f.kind) {
    case "exception":
      return `exception:${f.code}`;
    case "slow":
      return `slow:${f.ms}`;
    default:
      return f.kind;
  }
}

export interface SimCounters {
  /** Requests framed correctly (any unit, broadcasts included). */
  requests: number;
  /** Replies sent, mangled ones included. */
  replies: number;
  /** Replies that were exceptions (injected or not). */
  exceptions: number;
  /** Requests per function code. */
  byFc: Record<number, number>;
  /** Faults injected, per kind. */
  faults: Record<Exclude<FaultKind, "none">, number>;
  /** Requests to units that are not configured (not answered). */
  otherUnits: number;
  broadcasts: number;
  /** RTU bytes dropped while resynchronising (bad CRC, noise, unknown function code). */
  garbageBytes: number;
  /** RTU requests dropped because a reply was still pending on the line. */
  busyDropped: number;
  /** MBAP frames that were not Modbus TCP (the connection was closed). */
  invalidMbap: number;
}

function newCounters(): SimCounters {
  return {
    requests: 0,
    replies: 0,
    exceptions: 0,
    byFc: {},
    faults: { "no-answer": 0, exception: 0, "bad-crc": 0, slow: 0, truncated: 0, "wrong-unit": 0 },
    otherUnits: 0,
    broadcasts: 0,
    garbageBytes: 0,
    busyDropped: 0,
    invalidMbap: 0,
  };
}

export interface TcpListenOptions {
  host: string;
  /** 0 picks a free port; the listener reports the bound one. */
  port: number;
}

export interface RtuOverTcpOptions extends TcpListenOptions {
  /**
   * Silence after which a partial frame is dropped; default 100 ms: TCP has no character time,
   * and a sender with Nagle on holds a second small segment until the first is acknowledged
   * (Linux delayed ACK: 40 ms or more).
   */
  silenceMs?: number;
}

export interface SerialOptions {
  path: string;
  baudRate: number;
  parity?: "none" | "even" | "odd";
  dataBits?: 7 | 8;
  stopBits?: 1 | 2;
  /** Inter-frame silence; default 3.5 character times, 1.75 ms above 19200 baud (MBSL §2.5.1.1). */
  silenceMs?: number;
  /**
   * Delay replies by the time the request and the reply would take on a real line, plus t3.5,
   * so a client over a pty sees real-world poll times; default true.
   */
  lineTiming?: boolean;
}

export type SimListener =
  | { transport: "tcp" | "rtu-over-tcp"; host: string; port: number; close(): Promise<void> }
  | {
      transport: "rtu";
      path: string;
      baudRate: number;
      parity: "none" | "even" | "odd";
      dataBits: 7 | 8;
      stopBits: 1 | 2;
      close(): Promise<void>;
    };

export interface SimulatorOptions {
  /** Time between a request and its reply; default 2 ms. */
  turnaroundMs?: number;
  /** How often devices move while a listener is open; default 200 ms. */
  tickMs?: number;
}

/** What to do with one request. */
export type ReplyPlan = { answer: false } | { answer: true; unit: number; pdu: Buffer; delayMs: number; mangle?: "bad-crc" | "truncated" };

const WRITE_FCS = new Set([5, 6, 15, 16]);

/** Bits on the line per character: start, data, parity, stop. */
function bitsPerChar(o: Required<Pick<SerialOptions, "parity" | "dataBits" | "stopBits">>): number {
  return 1 + o.dataBits + (o.parity === "none" ? 0 : 1) + o.stopBits;
}

export class ModbusSimulator {
  readonly counters: SimCounters = newCounters();
  private readonly units = new Map<number, SimDevice>();
  private readonly faults = new Map<number, Fault>();
  private readonly listeners = new Set<SimListener>();
  private readonly turnaroundMs: number;
  private readonly tickMs: number;
  private ticker: NodeJS.Timeout | undefined;

  constructor(opts: SimulatorOptions = {}) {
    this.turnaroundMs = opts.turnaroundMs ?? 2;
    this.tickMs = opts.tickMs ?? 200;
  }

  /** Serves `device` as unit `id` (1–247). */
  addUnit(id: number, device: SimDevice): this {
    if (!Number.isInteger(id) || id < 1 || id > 247) throw new RangeError(`unit id ${id} is outside 1–247`);
    this.units.set(id, device);
    return this;
  }

  device(id: number): SimDevice | undefined {
    return this.units.get(id);
  }

  unitIds(): number[] {
    return [...this.units.keys()].sort((a, b) => a - b);
  }

  /** Changes how a unit misbehaves, effective from the next request. */
  setFault(id: number, fault: Fault): void {
    if (fault.kind === "none") this.faults.delete(id);
    else this.faults.set(id, fault);
  }

  fault(id: number): Fault {
    return this.faults.get(id) ?? { kind: "none" };
  }

  /** Moves every device to `nowMs` (the running timer calls this). */
  tick(nowMs: number): void {
    for (const d of this.units.values()) d.tick(nowMs);
  }

  openListeners(): SimListener[] {
    return [...this.listeners];
  }

  /** Modbus TCP (MBAP). */
  async listenTcp(opts: TcpListenOptions): Promise<SimListener> {
    return this.listenSocket("tcp", opts, (socket) => this.serveMbap(socket));
  }

  /** RTU frames (with CRC) over a TCP stream, as serial-to-Ethernet converters pass them. */
  async listenRtuOverTcp(opts: RtuOverTcpOptions): Promise<SimListener> {
    return this.listenSocket("rtu-over-tcp", opts, (socket) => {
      // One line per connection, as each converter port is its own RS-485 line.
      const link = new RtuLink(this, (b) => writeSocket(socket, b), { silenceMs: opts.silenceMs ?? 100, byteMs: 0 });
      socket.on("data", (chunk: Buffer) => link.onData(chunk));
      socket.on("close", () => link.close());
    });
  }

  /** RTU on a serial device; a pty from socat works. */
  async openSerial(opts: SerialOptions): Promise<SimListener> {
    const line = { parity: opts.parity ?? "none", dataBits: opts.dataBits ?? 8, stopBits: opts.stopBits ?? 1 } as const;
    const charMs = (bitsPerChar(line) * 1000) / opts.baudRate;
    // MBSL §2.5.1.1: above 19200 baud t3.5 is fixed at 1.75 ms.
    const silenceMs = opts.silenceMs ?? (opts.baudRate > 19200 ? 1.75 : 3.5 * charMs);
    const port = new SerialPort({ path: opts.path, baudRate: opts.baudRate, ...line, autoOpen: false });
    await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
    port.on("error", () => {
      // A vanished pty or unplugged adapter: the port closes; nothing to answer any more.
    });
    const link = new RtuLink(
      this,
      (b) =>
        new Promise<void>((resolve) => {
          if (!port.isOpen) return resolve();
          port.write(b, () => port.drain(() => resolve()));
        }),
      { silenceMs, byteMs: opts.lineTiming === false ? 0 : charMs },
    );
    port.on("data", (chunk: Buffer) => link.onData(chunk));
    const listener: SimListener = {
      transport: "rtu",
      path: opts.path,
      baudRate: opts.baudRate,
      ...line,
      close: async () => {
        if (!this.listeners.delete(listener)) return;
        link.close();
        this.updateTicker();
        if (port.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
      },
    };
    this.listeners.add(listener);
    this.updateTicker();
    return listener;
  }

  /** Closes every listener and stops the tick timer. */
  async close(): Promise<void> {
    await Promise.all([...this.listeners].map((l) => l.close()));
    this.updateTicker();
  }

  /**
   * Decides the reply to one request, applying the unit's fault. Exposed for transports we do
   * not have yet and for tests; the PDU is the function code and data.
   */
  plan(unit: number, pdu: Buffer): ReplyPlan {
    const c = this.counters;
    c.requests++;
    const fc = pdu[0] ?? 0;
    c.byFc[fc] = (c.byFc[fc] ?? 0) + 1;
    if (unit === 0) {
      // Broadcast: every device executes writes, nobody answers (MBSL §2.1).
      c.broadcasts++;
      if (WRITE_FCS.has(fc)) {
        for (const [id, d] of this.units) if (this.fault(id).kind !== "no-answer") d.handlePdu(pdu);
      }
      return { answer: false };
    }
    const device = this.units.get(unit);
    if (!device) {
      c.otherUnits++;
      return { answer: false };
    }
    const fault = this.fault(unit);
    if (fault.kind !== "none") c.faults[fault.kind]++;
    if (fault.kind === "no-answer") return { answer: false };
    const reply = fault.kind === "exception" ? exceptionPdu(fc, fault.code) : device.handlePdu(pdu);
    return {
      answer: true,
      unit: fault.kind === "wrong-unit" ? (unit === 247 ? 246 : unit + 1) : unit,
      pdu: reply,
      delayMs: this.turnaroundMs + (fault.kind === "slow" ? fault.ms : 0),
      ...(fault.kind === "bad-crc" || fault.kind === "truncated" ? { mangle: fault.kind } : {}),
    };
  }

  /** Counts a reply that is about to leave. */
  countReply(pdu: Buffer): void {
    this.counters.replies++;
    if ((pdu[0] ?? 0) & 0x80) this.counters.exceptions++;
  }

  private async listenSocket(
    transport: "tcp" | "rtu-over-tcp",
    opts: TcpListenOptions,
    serve: (socket: Socket) => void,
  ): Promise<SimListener> {
    const sockets = new Set<Socket>();
    const server: Server = createServer((socket) => {
      sockets.add(socket);
      socket.setNoDelay(true);
      socket.on("error", () => socket.destroy());
      socket.on("close", () => sockets.delete(socket));
      serve(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: opts.host, port: opts.port }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", () => {
      // After listening, errors concern single connections; those sockets handle their own.
    });
    const bound = server.address() as AddressInfo;
    const listener: SimListener = {
      transport,
      host: bound.address,
      port: bound.port,
      close: async () => {
        if (!this.listeners.delete(listener)) return;
        this.updateTicker();
        // Destroying a socket closes its RTU line or cancels its pending MBAP replies.
        for (const s of sockets) s.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
    this.listeners.add(listener);
    this.updateTicker();
    return listener;
  }

  private serveMbap(socket: Socket): void {
    let buf: Buffer = Buffer.alloc(0);
    const timers = new Set<NodeJS.Timeout>();
    socket.on("close", () => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
    });
    socket.on("data", (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      for (;;) {
        const r = parseMbap(buf);
        if ("need" in r) return;
        if ("invalid" in r) {
          this.counters.invalidMbap++;
          socket.destroy();
          return;
        }
        buf = r.rest;
        const { txId, unit, pdu } = r.frame;
        const plan = this.plan(unit, pdu);
        if (!plan.answer) continue;
        // Requests on one connection are answered independently, as a TCP gateway with
        // several devices behind it does: a slow unit does not hold up the others.
        const t = setTimeout(() => {
          timers.delete(t);
          if (socket.destroyed) return;
          let frame: Buffer = mbapFrame(txId, plan.unit, plan.pdu);
          // No CRC in MBAP: both byte-level faults become a frame cut short of its length.
          if (plan.mangle) frame = frame.subarray(0, Math.max(8, frame.length - Math.ceil(plan.pdu.length / 2)));
          this.countReply(plan.pdu);
          void writeSocket(socket, frame);
        }, plan.delayMs);
        timers.add(t);
      }
    });
  }

  private updateTicker(): void {
    if (this.listeners.size > 0 && !this.ticker) {
      this.ticker = setInterval(() => this.tick(Date.now()), this.tickMs);
      this.ticker.unref();
    } else if (this.listeners.size === 0 && this.ticker) {
      clearInterval(this.ticker);
      this.ticker = undefined;
    }
  }
}

function writeSocket(socket: Socket, b: Buffer): Promise<void> {
  return new Promise<void>((resolve) => {
    if (socket.destroyed || !socket.writable) return resolve();
    socket.write(b, () => resolve());
  });
}

interface RtuTiming {
  /** Inter-frame silence (t3.5). */
  silenceMs: number;
  /** Wire time of one character; 0 = do not emulate line time. */
  byteMs: number;
}

/**
 * One RTU line as the slave sees it: bytes in, frames by length and CRC, resync on garbage and
 * silence, one reply at a time (half duplex: a request that arrives while a reply is pending is
 * dropped, as on a real RS-485 line).
 */
class RtuLink {
  private buf: Buffer = Buffer.alloc(0);
  private lastRx = 0;
  /** Bytes of a frame with an unknown function code: kept until silence ends it. */
  private untilSilence = false;
  private busy = false;
  private closed = false;
  private silenceTimer: NodeJS.Timeout | undefined;
  private replyTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly sim: ModbusSimulator,
    private readonly write: (b: Buffer) => Promise<void>,
    private readonly timing: RtuTiming,
  ) {}

  onData(chunk: Buffer): void {
    if (this.closed) return;
    const now = performance.now();
    // The silence timer may not have run yet: a gap seen here still ends the previous frame.
    if ((this.buf.length > 0 || this.untilSilence) && now - this.lastRx >= this.timing.silenceMs) this.silence();
    this.lastRx = now;
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (!this.untilSilence) this.drain();
    if (this.buf.length > MAX_RTU_FRAME) {
      this.sim.counters.garbageBytes += this.buf.length - MAX_RTU_FRAME;
      this.buf = this.buf.subarray(this.buf.length - MAX_RTU_FRAME);
    }
    clearTimeout(this.silenceTimer);
    this.silenceTimer = undefined;
    if (this.buf.length > 0 || this.untilSilence) {
      // Timers have 1 ms granularity: wait at least 2 ms so a gap is really a gap.
      this.silenceTimer = setTimeout(() => this.silence(), Math.max(2, Math.ceil(this.timing.silenceMs)));
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.silenceTimer);
    clearTimeout(this.replyTimer);
  }

  private drain(): void {
    for (;;) {
      const r = parseRtuRequest(this.buf);
      if ("need" in r) return;
      if ("frame" in r) {
        this.buf = r.rest;
        this.dispatch(r.frame);
        continue;
      }
      if (r.untilSilence) {
        this.untilSilence = true;
        return;
      }
      this.sim.counters.garbageBytes += r.garbage;
      this.buf = this.buf.subarray(r.garbage);
    }
  }

  /** The line went quiet: a frame with an unknown function code is complete; a partial one is dropped. */
  private silence(): void {
    clearTimeout(this.silenceTimer);
    this.silenceTimer = undefined;
    const frame = this.buf;
    this.buf = Buffer.alloc(0);
    if (this.untilSilence) {
      this.untilSilence = false;
      const f = checkRtuFrame(frame);
      if (f) {
        // Addressed to us with a function we lack: the device answers "illegal function".
        this.dispatch({ unit: f.unit, fc: f.pdu[0]!, pdu: f.pdu, raw: frame });
        return;
      }
    }
    this.sim.counters.garbageBytes += frame.length;
  }

  private dispatch(req: RtuRequest): void {
    if (this.busy) {
      this.sim.counters.busyDropped++;
      return;
    }
    const plan = this.sim.plan(req.unit, req.pdu);
    if (!plan.answer) return;
    let frame: Buffer = rtuFrame(plan.unit, plan.pdu);
    if (plan.mangle === "bad-crc") frame[frame.length - 1]! ^= 0xff;
    if (plan.mangle === "truncated") frame = frame.subarray(0, Math.ceil(frame.length / 2));
    // Request still on the wire, t3.5 to see its end, turnaround, then the reply on the wire.
    const lineMs = this.timing.byteMs > 0 ? this.timing.byteMs * (req.raw.length + frame.length) + this.timing.silenceMs : 0;
    this.busy = true;
    this.replyTimer = setTimeout(() => {
      this.replyTimer = undefined;
      if (this.closed) return;
      this.sim.countReply(plan.pdu);
      // Free as soon as the reply is handed to the port, as a device is once it has sent it: the
      // write's callback can come after the client already has the reply and sent its next
      // request (seen on a loaded machine: that request was dropped as "busy" and timed out).
      this.busy = false;
      void this.write(frame);
    }, plan.delayMs + lineMs);
  }
}
