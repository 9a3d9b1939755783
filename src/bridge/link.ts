/**
 * Reliable delivery over one serial link (docs/firmware-bridge.md, sections 4 and 5), without
 * I/O: bytes come in through `receive`, go out through the `write` event, and time comes from an
 * injected clock, so the gateway and the TypeScript board simulator share it and tests run on
 * fake time.
 *
 * Session start: the board calls `reset()` before it sends a Hello (its REL frame 0 on channel 0).
 * On the gateway a REL frame 0 on channel 0 is a Hello and starts a new session, unless its payload
 * is the one that started the current session (a retransmission: acknowledged, not delivered).
 */
import { type DecoderStats, FrameDecoder } from "./decoder.js";
import { CHANNEL, FLAG, type Frame, FRAME_OVERHEAD, GATEWAY_MAX_FRAME, MIN_MAX_FRAME, encodeFrame } from "./frame.js";

/** The figures of section 4. */
export const LINK_TIMING = {
  /** A received REL frame is acknowledged within this, by a pure ack if nothing else goes out. */
  ackDelayMs: 20,
  rtoInitialMs: 300,
  rtoMaxMs: 3000,
  /** Timeouts in a row without progress that lose the session. */
  maxTimeouts: 8,
} as const;

export const MAX_WINDOW = 16;

export interface LinkClock {
  /** Milliseconds, monotonic. */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: LinkClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export type LinkRole = "gateway" | "board";

export interface LinkOptions {
  role: LinkRole;
  /** Largest frame this side accepts (its Hello/HelloReply offer). Default: gateway 1024, board 256. */
  maxFrame?: number;
  /** REL frames this side lets out unacknowledged, before the handshake narrows it. Default 8. */
  window?: number;
  /** REL frames that may wait for the window or for a busy peer; `send` refuses beyond. Default 32. */
  queueLimit?: number;
  clock?: LinkClock;
  /** Channels delivered; REL frames on others are acknowledged and counted `unknownChannel`. */
  channels?: readonly number[];
}

/** What the link tells its owner. Each call is isolated: a throwing handler goes to `error`. */
export interface LinkEvents {
  write(bytes: Uint8Array): void;
  deliver(chan: number, payload: Uint8Array, reliable: boolean): void;
  /** Gateway: a Hello started a new session (the Hello itself is delivered right after). */
  sessionStarted?(): void;
  /** Retransmissions went unanswered; everything unacknowledged is dropped. */
  sessionLost?(reason: string): void;
  /** The first discarded chunk of a burst, as text (often a boot banner or a crash message). */
  garbage?(text: string): void;
  peerBusy?(busy: boolean): void;
  /** `send` refused a frame ("full") earlier, and there is room again. */
  drained?(): void;
  error?(err: unknown): void;
}

export type SendResult = "sent" | "queued" | "full" | "too-large" | "no-session" | "closed";

export interface LinkStats extends DecoderStats {
  session: boolean;
  framesIn: number;
  framesOut: number;
  bytesOut: number;
  /** REL frames delivered (or taken on an unknown channel), each once. */
  relIn: number;
  /** REL frames sent for the first time. */
  relOut: number;
  retransmits: number;
  timeouts: number;
  naksSent: number;
  naksReceived: number;
  /** Chunks discarded for any reason: garbage, oversized, CRC error, bad version. */
  resyncs: number;
  /** REL frames received again (our acknowledgement was lost or late). */
  duplicates: number;
  /** REL frames received after a gap (not delivered; a NAK asks for the rest). */
  outOfOrder: number;
  unknownChannel: number;
  /** REL frames received with no session (gateway before a Hello, board before `reset()`). */
  outOfSession: number;
  /** REL frames not taken because this side was busy. */
  busyDrops: number;
  sessionsStarted: number;
  sessionsLost: number;
  rttSamples: number;
  srttMs: number | undefined;
  lastRttMs: number | undefined;
  rtoMs: number;
  inFlight: number;
  queued: number;
  window: number;
  maxFrame: number;
  peerBusy: boolean;
  localBusy: boolean;
  callbackErrors: number;
}

interface Pending {
  seq: number;
  chan: number;
  payload: Uint8Array;
  sentAt: number;
  resent: boolean;
}

/** `a` is after `b` in serial-number arithmetic (RFC 1982, 16 bits). */
export function seqAfter(a: number, b: number): boolean {
  const d = (a - b) & 0xffff;
  return d >= 1 && d <= 0x7fff;
}

const EMPTY = new Uint8Array(0);

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class Link {
  private readonly role: LinkRole;
  private readonly clock: LinkClock;
  private readonly events: LinkEvents;
  private readonly decoder: FrameDecoder;
  private readonly ownWindow: number;
  private readonly queueLimit: number;
  private readonly channels: ReadonlySet<number>;

  private active = false;
  private closed = false;
  private window: number;
  private maxFrame = MIN_MAX_FRAME;
  private sessionHello: Uint8Array | undefined;

  private sendNext = 0;
  private outstanding: Pending[] = [];
  private waiting: Pending[] = [];
  private refused = false;
  private recvNext = 0;
  private received = false;

  private ackDueAt: number | undefined;
  /** REL frames taken since the last frame that carried our ACK. */
  private unackedIn = 0;
  private rto: number = LINK_TIMING.rtoInitialMs;
  private rtoAt: number | undefined;
  private timeoutsInRow = 0;

  private peerBusyNow = false;
  private localBusy = false;
  private busyDropped = false;
  private nakSentAck = -1;
  private nakSentAt = -Infinity;
  private nakAnsweredAck = -1;
  private nakAnsweredAt = -Infinity;

  private afterDelimiter = false;
  private timer: unknown;
  private timerAt: number | undefined;
  private depth = 0;
  private backlog: Uint8Array[] = [];
  private crcSeen = 0;

  private readonly counts = {
    framesIn: 0,
    framesOut: 0,
    bytesOut: 0,
    relIn: 0,
    relOut: 0,
    retransmits: 0,
    timeouts: 0,
    naksSent: 0,
    naksReceived: 0,
    duplicates: 0,
    outOfOrder: 0,
    unknownChannel: 0,
    outOfSession: 0,
    busyDrops: 0,
    sessionsStarted: 0,
    sessionsLost: 0,
    rttSamples: 0,
    callbackErrors: 0,
  };
  private srtt: number | undefined;
  private rttvar = 0;
  private lastRtt: number | undefined;

  constructor(events: LinkEvents, options: LinkOptions) {
    this.events = events;
    this.role = options.role;
    this.clock = options.clock ?? systemClock;
    this.ownWindow = Math.min(MAX_WINDOW, Math.max(1, Math.floor(options.window ?? 8)));
    this.window = this.ownWindow;
    this.queueLimit = Math.max(0, options.queueLimit ?? 32);
    this.channels = new Set(options.channels ?? [CHANNEL.LINK, CHANNEL.TELEMETRY, CHANNEL.COMMANDS, CHANNEL.LOG, CHANNEL.MANAGEMENT]);
    const maxFrame = options.maxFrame ?? (this.role === "gateway" ? GATEWAY_MAX_FRAME : MIN_MAX_FRAME);
    this.decoder = new FrameDecoder({ maxFrame, onGarbage: (text) => this.call("garbage", () => this.events.garbage?.(text)) });
  }

  /** The largest payload one frame carries in this session. */
  get maxPayload(): number {
    return this.maxFrame - FRAME_OVERHEAD;
  }

  /** Valid frames received so far (without building a stats snapshot). */
  get framesIn(): number {
    return this.counts.framesIn;
  }

  /** Chunks discarded and frames on unknown channels so far: changes when something went wrong. */
  get problems(): number {
    return this.decoder.discarded + this.counts.unknownChannel;
  }

  /** A session is up: REL frames can be sent and are taken. */
  get inSession(): boolean {
    return this.active;
  }

  /** Bytes read from the port, in any chunking. Never throws. */
  receive(bytes: Uint8Array): void {
    if (this.closed) return;
    if (this.depth > 0) {
      // Called back from inside one of our own events (a peer wired synchronously): later.
      this.backlog.push(bytes.slice());
      return;
    }
    this.run(() => this.take(bytes));
  }

  /** A frame decoded elsewhere (the caller has its own decoder). */
  receiveFrame(frame: Frame): void {
    if (this.closed) return;
    this.run(() => this.handle(frame));
  }

  /**
   * Sends a payload on a channel. Reliable frames wait (bounded) while the window is full or the
   * peer is busy; "full" means the queue is too: try again after `drained`.
   */
  send(chan: number, payload: Uint8Array, options: { reliable: boolean }): SendResult {
    if (this.closed) return "closed";
    if (payload.length + FRAME_OVERHEAD > this.maxFrame) return "too-large";
    if (!options.reliable) {
      this.run(() => this.writeFrame(chan, this.flagsNow(0), 0, payload));
      return "sent";
    }
    if (!this.active) return "no-session";
    if (this.waiting.length > 0 || !this.canTransmit()) {
      if (this.waiting.length >= this.queueLimit) {
        this.refused = true;
        return "full";
      }
      this.waiting.push(this.pending(chan, payload));
      return "queued";
    }
    const p = this.pending(chan, payload);
    this.run(() => this.transmit(p));
    return "sent";
  }

  /**
   * Starts a new session: sequence numbers from 0 both ways, everything unacknowledged dropped,
   * window and frame size back to the pre-handshake values. The board calls it before each Hello.
   */
  reset(): void {
    this.clearSession();
    this.active = true;
    this.run(() => undefined);
  }

  /** Ends the session without the `sessionLost` event (a refused board, a port closed). */
  endSession(): void {
    this.clearSession();
    this.run(() => undefined);
  }

  /** The handshake's figures: the session's window (min of both sides) and max_frame (for sending). */
  setSession(params: { window?: number; maxFrame?: number }): void {
    if (params.window !== undefined) this.window = Math.min(this.ownWindow, MAX_WINDOW, Math.max(1, Math.floor(params.window)));
    if (params.maxFrame !== undefined) this.maxFrame = Math.max(MIN_MAX_FRAME, Math.floor(params.maxFrame));
    this.run(() => this.pump());
  }

  /** This side cannot take more REL frames now (section 4, "Busy"); the peer hears it at once. */
  setBusy(busy: boolean): void {
    if (this.closed || busy === this.localBusy) return;
    this.localBusy = busy;
    this.run(() => {
      if (!this.active) return;
      if (!busy && this.busyDropped) {
        // Frames were left untaken while busy: ask for them now rather than after an RTO.
        this.busyDropped = false;
        this.nakSentAt = -Infinity;
        this.sendNak();
      } else this.writeFrame(CHANNEL.LINK, this.flagsNow(0), 0, EMPTY);
    });
  }

  /** The last bytes written to the port were not ours (a simulator's log spam): next frame starts with 0x00. */
  noteForeignBytes(): void {
    this.afterDelimiter = false;
  }

  /** Stops the timer; the link does nothing more. */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = undefined;
  }

  stats(): LinkStats {
    const d = this.decoder.stats();
    return {
      ...d,
      ...this.counts,
      session: this.active,
      resyncs: d.garbage + d.oversized + d.crcErrors + d.badVersion,
      srttMs: this.srtt,
      lastRttMs: this.lastRtt,
      rtoMs: this.rto,
      inFlight: this.outstanding.length,
      queued: this.waiting.length,
      window: this.window,
      maxFrame: this.maxFrame,
      peerBusy: this.peerBusyNow,
      localBusy: this.localBusy,
    };
  }

  // ---- inside -------------------------------------------------------------------------------

  /** Runs `fn`, then what was received meanwhile, then re-arms the timer. */
  private run(fn: () => void): void {
    this.depth++;
    try {
      fn();
      while (this.depth === 1 && this.backlog.length > 0 && !this.closed) this.take(this.backlog.shift()!);
    } finally {
      this.depth--;
    }
    if (this.depth === 0) this.arm();
  }

  private take(bytes: Uint8Array): void {
    const frames = this.decoder.push(bytes);
    for (const f of frames) this.handle(f);
    const crc = this.decoder.stats().crcErrors;
    if (crc !== this.crcSeen) {
      this.crcSeen = crc;
      if (this.active && this.received && !this.localBusy) this.sendNak();
    }
  }

  private call(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.counts.callbackErrors++;
      if (what === "error") return;
      try {
        this.events.error?.(err);
      } catch {
        // The error handler failed too; counted above.
      }
    }
  }

  private pending(chan: number, payload: Uint8Array): Pending {
    const p: Pending = { seq: this.sendNext, chan, payload, sentAt: 0, resent: false };
    this.sendNext = (this.sendNext + 1) & 0xffff;
    return p;
  }

  private canTransmit(): boolean {
    return this.active && !this.peerBusyNow && this.outstanding.length < this.window;
  }

  private flagsNow(extra: number): number {
    return extra | (this.received ? FLAG.ACK : 0) | (this.localBusy ? FLAG.BUSY : 0);
  }

  private writeFrame(chan: number, flags: number, seq: number, payload: Uint8Array): void {
    const ack = flags & FLAG.ACK ? (this.recvNext - 1) & 0xffff : 0;
    const bytes = encodeFrame({ chan, flags, seq, ack, payload }, { afterDelimiter: this.afterDelimiter });
    this.afterDelimiter = true;
    if (flags & FLAG.ACK) {
      this.ackDueAt = undefined;
      this.unackedIn = 0;
    }
    this.counts.framesOut++;
    this.counts.bytesOut += bytes.length;
    this.call("write", () => this.events.write(bytes));
  }

  private transmit(p: Pending): void {
    const now = this.clock.now();
    p.sentAt = now;
    this.outstanding.push(p);
    this.counts.relOut++;
    if (this.rtoAt === undefined) this.rtoAt = now + this.rto;
    this.writeFrame(p.chan, this.flagsNow(FLAG.REL), p.seq, p.payload);
  }

  private pump(): void {
    while (this.waiting.length > 0 && this.canTransmit()) this.transmit(this.waiting.shift()!);
    if (this.refused && this.waiting.length < this.queueLimit) {
      this.refused = false;
      this.call("drained", () => this.events.drained?.());
    }
  }

  private resendOutstanding(): void {
    for (const p of [...this.outstanding]) {
      p.resent = true;
      this.counts.retransmits++;
      this.writeFrame(p.chan, this.flagsNow(FLAG.REL), p.seq, p.payload);
    }
  }

  private clearSession(): void {
    this.active = false;
    this.sessionHello = undefined;
    this.sendNext = 0;
    this.outstanding = [];
    this.waiting = [];
    this.recvNext = 0;
    this.received = false;
    this.ackDueAt = undefined;
    this.unackedIn = 0;
    this.rto = LINK_TIMING.rtoInitialMs;
    this.rtoAt = undefined;
    this.timeoutsInRow = 0;
    this.peerBusyNow = false;
    this.busyDropped = false;
    this.nakSentAck = -1;
    this.nakSentAt = -Infinity;
    this.nakAnsweredAck = -1;
    this.nakAnsweredAt = -Infinity;
    this.window = this.ownWindow;
    this.maxFrame = MIN_MAX_FRAME;
  }

  private handle(f: Frame): void {
    this.counts.framesIn++;
    const rel = (f.flags & FLAG.REL) !== 0;
    if (this.role === "gateway" && rel && f.chan === CHANNEL.LINK && f.seq === 0) {
      const repeat = this.active && this.sessionHello !== undefined && sameBytes(this.sessionHello, f.payload);
      if (!repeat) {
        this.clearSession();
        this.active = true;
        this.sessionHello = f.payload;
        this.counts.sessionsStarted++;
        this.call("sessionStarted", () => this.events.sessionStarted?.());
      }
    }
    const busy = (f.flags & FLAG.BUSY) !== 0;
    if (busy !== this.peerBusyNow) {
      this.peerBusyNow = busy;
      this.call("peerBusy", () => this.events.peerBusy?.(busy));
    }
    if (this.active && f.flags & FLAG.ACK) this.onAck(f.ack);
    if (this.active && f.flags & FLAG.NAK) this.onNak(f.ack);
    if (rel) this.onRel(f);
    else if (f.chan !== CHANNEL.LINK || f.payload.length > 0) {
      if (this.channels.has(f.chan)) this.call("deliver", () => this.events.deliver(f.chan, f.payload, false));
      else this.counts.unknownChannel++;
    }
    this.pump();
  }

  private onAck(ack: number): void {
    const n = this.outstanding.length;
    if (n === 0) return;
    const count = ((ack - this.outstanding[0]!.seq) & 0xffff) + 1;
    if (count > n) return; // stale (before our oldest) or beyond what we sent
    const now = this.clock.now();
    const acked = this.outstanding.splice(0, count);
    for (let i = acked.length - 1; i >= 0; i--) {
      const p = acked[i]!;
      if (p.resent) continue; // Karn: a resent frame's ack says nothing of the round trip
      const rtt = now - p.sentAt;
      this.lastRtt = rtt;
      // RFC 6298: a smoothed round trip and its variation.
      if (this.srtt === undefined) {
        this.srtt = rtt;
        this.rttvar = rtt / 2;
      } else {
        this.rttvar += (Math.abs(this.srtt - rtt) - this.rttvar) / 4;
        this.srtt += (rtt - this.srtt) / 8;
      }
      this.counts.rttSamples++;
      break;
    }
    // The timeout follows the measured round trips (a full window of long frames on a slow line
    // takes most of a second to go out), never below the spec's 300 ms nor above its 3 s.
    this.rto = this.srtt === undefined ? LINK_TIMING.rtoInitialMs : Math.min(LINK_TIMING.rtoMaxMs, Math.max(LINK_TIMING.rtoInitialMs, this.srtt + 4 * this.rttvar));
    this.timeoutsInRow = 0;
    this.rtoAt = this.outstanding.length > 0 ? now + this.rto : undefined;
  }

  private onNak(ack: number): void {
    this.counts.naksReceived++;
    const n = this.outstanding.length;
    if (n === 0) return;
    // After onAck, `ack` is just before our oldest, or older (stale): resend all; never beyond what we sent.
    const ahead = (ack - this.outstanding[0]!.seq) & 0xffff;
    if (ahead < 0x8000) return;
    const now = this.clock.now();
    if (ack === this.nakAnsweredAck && now - this.nakAnsweredAt < this.rto / 2) return;
    this.nakAnsweredAck = ack;
    this.nakAnsweredAt = now;
    this.resendOutstanding();
    this.rtoAt = now + this.rto;
  }

  private onRel(f: Frame): void {
    if (!this.active) {
      this.counts.outOfSession++;
      return;
    }
    const e = this.recvNext;
    if (f.seq === e) {
      if (this.localBusy && f.chan !== CHANNEL.LINK) {
        this.counts.busyDrops++;
        this.busyDropped = true;
        return;
      }
      this.recvNext = (e + 1) & 0xffff;
      this.received = true;
      this.counts.relIn++;
      if (this.ackDueAt === undefined) this.ackDueAt = this.clock.now() + LINK_TIMING.ackDelayMs;
      this.unackedIn++;
      if (this.channels.has(f.chan)) this.call("deliver", () => this.events.deliver(f.chan, f.payload, true));
      else this.counts.unknownChannel++;
      // Half the peer's window taken and not acknowledged (nothing of ours went out meanwhile):
      // acknowledge now, as TCP does every second segment, so a busy sender never waits the 20 ms.
      if (this.unackedIn >= Math.max(1, this.window >> 1)) this.writeFrame(CHANNEL.LINK, this.flagsNow(0), 0, EMPTY);
    } else if (seqAfter(e, f.seq)) {
      this.counts.duplicates++;
      if (this.received && this.ackDueAt === undefined) this.ackDueAt = this.clock.now() + LINK_TIMING.ackDelayMs;
    } else if (this.localBusy && f.chan !== CHANNEL.LINK) {
      // Not a gap to repair now: we would not take it anyway. Clearing busy asks for it.
      this.counts.busyDrops++;
      this.busyDropped = true;
    } else {
      this.counts.outOfOrder++;
      this.sendNak();
    }
  }

  /** NAK with ACK, ack = next expected − 1; at most once per value of ack until the RTO passes. */
  private sendNak(): void {
    const ack = (this.recvNext - 1) & 0xffff;
    const now = this.clock.now();
    if (ack === this.nakSentAck && now - this.nakSentAt < this.rto) return;
    this.nakSentAck = ack;
    this.nakSentAt = now;
    this.counts.naksSent++;
    this.writeFrame(CHANNEL.LINK, FLAG.ACK | FLAG.NAK | (this.localBusy ? FLAG.BUSY : 0), 0, EMPTY);
  }

  private onTimer(): void {
    if (this.closed) return;
    const now = this.clock.now();
    if (this.ackDueAt !== undefined && now >= this.ackDueAt) this.writeFrame(CHANNEL.LINK, this.flagsNow(0), 0, EMPTY);
    if (this.rtoAt !== undefined && now >= this.rtoAt) this.onTimeout(now);
  }

  private onTimeout(now: number): void {
    this.counts.timeouts++;
    // Waiting on a busy peer is not silence: those timeouts do not count towards losing the session.
    if (!this.peerBusyNow && ++this.timeoutsInRow >= LINK_TIMING.maxTimeouts) {
      this.clearSession();
      this.counts.sessionsLost++;
      this.call("sessionLost", () => this.events.sessionLost?.(`no acknowledgement after ${LINK_TIMING.maxTimeouts} retransmission timeouts`));
      return;
    }
    this.resendOutstanding();
    this.rto = Math.min(this.rto * 2, LINK_TIMING.rtoMaxMs);
    this.rtoAt = now + this.rto;
  }

  private arm(): void {
    if (this.closed) return;
    let next = this.ackDueAt;
    if (this.rtoAt !== undefined && (next === undefined || this.rtoAt < next)) next = this.rtoAt;
    if (next === this.timerAt) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = next;
    if (next === undefined) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.timerAt = undefined;
      this.run(() => this.onTimer());
    }, Math.max(0, next - this.clock.now()));
  }
}
