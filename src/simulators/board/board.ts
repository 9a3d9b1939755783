/**
 * A simulated bridge board: the board role of docs/firmware-bridge.md over any ByteLink (one end
 * of a MemoryPipe, or a serial port such as one end of a socat pty pair). It does what the C
 * reference firmware does — Hello, Describe (children included), readings kept in a ring until
 * the gateway's ReadingsAck, resent after a new session, heartbeats, time replies, commands with
 * read-back, log lines — and misbehaves on request (bit flips, lost and doubled frames, short
 * writes, log text between frames, resets mid-frame, DTR reboots, wrong baud, another schema, a
 * child that vanishes, a flood), so the gateway can be tested without hardware.
 *
 * Every random choice comes from PRNGs seeded by `seed` (values, faults and ids each their own,
 * so turning a fault on does not change the values), and time from an injected clock, so a run
 * is reproducible and tests run on fake timers.
 */
import { createHash } from "node:crypto";
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import type { ByteLink } from "../../buses/serial/byte-link.js";
import { CHANNEL, encodeFrame, FRAME_OVERHEAD, MIN_MAX_FRAME } from "../../bridge/frame.js";
import { Link, type LinkClock, type LinkStats, systemClock } from "../../bridge/link.js";
import {
  Capability,
  CommandStatus,
  decodeCommands,
  decodeLink,
  decodeTelemetry,
  encodeCommands,
  encodeLink,
  encodeLog,
  encodeTelemetry,
  type Command,
  type HelloReply,
  LogLevel,
  type PointInfoSchema,
  PointType,
  Quality,
  ReadingSchema,
  type Reading,
  ResetReason,
} from "../../bridge/messages.js";
import { SCHEMA_HASH } from "../../bridge/schema.js";
import { prng } from "../prng.js";
import { TwoSlotFlash } from "./flash.js";
import { type BoardProfile, ROOM_NODE, type SimPointSpec, type Waveform } from "./profiles.js";

export { ResetReason, CommandStatus } from "../../bridge/messages.js";

/** Faults that apply continuously while set; the one-shot ones are methods of SimBoard. */
export interface SimBoardFaults {
  /** Probability, per byte written, that one of its bits is flipped. */
  bitFlip?: number;
  /** Probability, per frame, that it is not written at all. */
  drop?: number;
  /** Probability, per frame, that it is written twice. */
  duplicate?: number;
  /** Writes go out in random chunks of 1–8 bytes with 0–2 ms between them (a USB-serial chip's short writes). */
  shortWrites?: boolean;
  /** Raw log text (not framed) written between frames this often, ms; 0 = never. */
  spamEveryMs?: number;
  /** Readings made as fast as the link takes them (throughput tests) instead of every interval. */
  flood?: boolean;
}

export interface SimBoardOptions {
  /** The board's byte stream. Opened by start() unless already open; closed by stop() only if start() opened it. */
  port: ByteLink;
  profile?: BoardProfile;
  /** Board unique id, hex, 4–16 bytes (e.g. an ESP32 eFuse MAC). Default: 8 bytes derived from the seed. */
  boardId?: string;
  /** Seeds every random choice. Default 1. */
  seed?: number;
  /** A reading of each measured point this often, ms. Default 1000. */
  intervalMs?: number;
  /** Readings the ring holds; when full the oldest is overwritten and counted. Default 1000. */
  ringCapacity?: number;
  /** The ring survives a reset, with the readings' old boot id (CAP_PERSISTENT_RING). */
  persistent?: boolean;
  /** Schema hash sent in Hello; another value simulates a board built from another bridge.proto. Default SCHEMA_HASH. */
  schemaHash?: number;
  /** Largest frame the board accepts (Hello.max_frame). Default 256. */
  maxFrame?: number;
  /** REL frames in flight (Hello.window). Default 8. */
  window?: number;
  /** Reset reason of the first boot. Default RESET_POWER_ON. */
  resetReason?: ResetReason;
  /** The board's crystal: its monotonic clock starts at this many µs… */
  clockOffsetUs?: number;
  /** …and runs this many parts per million fast (negative: slow). */
  clockDriftPpm?: number;
  /** A log line on channel 3 this often, ms; 0 = never. Default 10 000. */
  logEveryMs?: number;
  /** Text written raw (as a ROM bootloader prints it) at each reboot before the first frame. Default none. */
  bootBanner?: string;
  faults?: SimBoardFaults;
  /** Time; default the system clock. Tests pass one on fake timers. */
  clock?: LinkClock;
  /**
   * Two image slots and a bootloader (flash.ts): the board answers SMP on the management channel
   * and runs the image in slot 0 — its version is the firmware it reports, its SHA-256 the image
   * hash, and a test image's behaviour (`crash`, `silent`) is acted out. Default none (no updates).
   */
  flash?: TwoSlotFlash;
  /** Called after anything changed the flash (an SMP write, a boot): where a board process persists it. */
  flashChanged?: () => void;
}

export type SimBoardState = "off" | "hello" | "session" | "refused";

export interface SimBoardEvents {
  /** A Hello went out (a new session attempt; repeats of the same Hello are not reported). */
  hello: { bootId: number; resetReason: ResetReason; schemaHash: number };
  session: { maxFrame: number; window: number; heartbeatMs: number; utcUs: bigint };
  refused: { reason: string };
  sessionLost: { reason: string };
  acked: { bootId: number; uptoSeq: number; removed: number; ringUsed: number };
  command: { id: number; point: string; value: number | boolean | string | undefined; status: CommandStatus; message: string };
  reboot: { bootId: number; reason: ResetReason };
  /** What the bootloader did and which image runs now (boards with a flash only). */
  image: { version: string; hash: string; boot: TwoSlotFlash["boots"][number] };
  child: { child: string; present: boolean };
  time: { t1Us: bigint; t2Us: bigint; t3Us: bigint };
  wrongBaud: { active: boolean };
  /** The port closed by itself (the other end went away). */
  closed: { reason: string };
  error: { error: unknown };
}

export interface SimBoardStats {
  state: SimBoardState;
  bootId: number;
  boots: number;
  /** Sessions accepted by the gateway. */
  sessions: number;
  refusals: number;
  hellos: number;
  readingsMade: number;
  /** Readings removed from the ring by a ReadingsAck. */
  readingsAcked: number;
  /** Readings handed to the link again after a new session. */
  readingsResent: number;
  /** Readings overwritten in a full ring (all boots). */
  readingsDropped: number;
  /** Readings lost with a reset of a board without a persistent ring. */
  readingsLostInReset: number;
  ringUsed: number;
  /** This boot's overwritten readings (Heartbeat.ring_dropped). */
  ringDropped: number;
  commands: number;
  commandsRefused: number;
  timeReplies: number;
  logLines: number;
  framesDropped: number;
  framesDuplicated: number;
  bitsFlipped: number;
  spamBytes: number;
  garbledBytes: number;
  /** The current boot's link figures. */
  link: LinkStats;
}

interface PointState {
  id: number;
  spec: SimPointSpec;
  child: string;
  phase: number;
  value: number | boolean;
}

interface RingEntry {
  bootId: number;
  seq: number;
  reading: Reading;
  /** Encoded size of `reading`. */
  size: number;
  /** Handed to the link in this session. */
  sent: boolean;
  /** Handed to the link in any session (a later send is a resend). */
  everSent: boolean;
}

type Listener<K extends keyof SimBoardEvents> = (e: SimBoardEvents[K]) => void;

const HELLO_RETRY_MS = 1000;
const DEFAULT_HEARTBEAT_MS = 1000;
/** A board that hears nothing valid for this many heartbeats says Hello again (spec section 5). */
const SILENT_HEARTBEATS = 3;
/** A crashing test image lives this long after its boot. */
const CRASH_AFTER_MS = 300;
/** An SMP reset waits this long for its response to leave. */
const SMP_RESET_DELAY_MS = 50;

function varintLen(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

/** `0a1b…` → bytes; undefined unless an even number of hex digits. */
export function parseHex(text: string): Uint8Array | undefined {
  const t = text.trim().replace(/^0x/i, "").replace(/[:\s-]/g, "");
  if (t.length === 0 || t.length % 2 !== 0 || !/^[0-9a-f]+$/i.test(t)) return undefined;
  return Uint8Array.from(t.match(/../g)!.map((h) => parseInt(h, 16)));
}

export function toHex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export const RESET_REASON_NAMES: ReadonlyMap<ResetReason, string> = new Map([
  [ResetReason.RESET_UNKNOWN, "unknown"],
  [ResetReason.RESET_POWER_ON, "power-on"],
  [ResetReason.RESET_PIN, "reset pin / DTR"],
  [ResetReason.RESET_SOFTWARE, "software"],
  [ResetReason.RESET_WATCHDOG, "watchdog"],
  [ResetReason.RESET_BROWNOUT, "brownout"],
  [ResetReason.RESET_CRASH, "crash"],
  [ResetReason.RESET_UPDATE, "firmware update"],
]);

function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

export class SimBoard {
  readonly boardId: Uint8Array;
  readonly profile: BoardProfile;
  private readonly port: ByteLink;
  private readonly clock: LinkClock;
  private readonly intervalMs: number;
  private paused = false;
  private acksLost = false;
  private readonly capacity: number;
  private readonly persistent: boolean;
  private readonly maxFrame: number;
  private readonly window: number;
  private readonly offsetUs: number;
  private readonly driftPpm: number;
  private readonly logEveryMs: number;
  private readonly bootBanner: string | undefined;
  private imageHash: Uint8Array;
  private firmware: string;
  readonly flash: TwoSlotFlash | undefined;
  private readonly flashChanged: () => void;
  private schemaHash: number;
  private faults: SimBoardFaults;

  private readonly values: () => number;
  private readonly chance: () => number;
  private readonly ids: () => number;

  private readonly points: PointState[] = [];
  private readonly byId = new Map<number, PointState>();
  private readonly absent = new Set<string>();
  private readonly listeners = new Map<keyof SimBoardEvents, Set<(e: never) => void>>();

  private link: Link | undefined;
  private state: SimBoardState = "off";
  private ownsPort = false;
  private subscribed = false;
  private bootId = 0;
  private bootAtMs = 0;
  private resetReason: ResetReason;
  private nextSeq = 1;
  private ring: RingEntry[] = [];
  private helloPayload: Uint8Array | undefined;
  private heartbeatMs = DEFAULT_HEARTBEAT_MS;
  private lastHeardAt = 0;
  private framesHeard = 0;
  private wrongBaudUntil: number | undefined;
  private out: Uint8Array[] = [];
  private writing = false;
  private readonly timers = new Map<string, unknown>();

  private readonly counts = {
    boots: 0,
    sessions: 0,
    refusals: 0,
    hellos: 0,
    readingsMade: 0,
    readingsAcked: 0,
    readingsResent: 0,
    readingsDropped: 0,
    readingsLostInReset: 0,
    ringDropped: 0,
    commands: 0,
    commandsRefused: 0,
    smpRequests: 0,
    timeReplies: 0,
    logLines: 0,
    framesDropped: 0,
    framesDuplicated: 0,
    bitsFlipped: 0,
    spamBytes: 0,
    garbledBytes: 0,
  };

  constructor(options: SimBoardOptions) {
    this.port = options.port;
    this.profile = options.profile ?? ROOM_NODE;
    this.clock = options.clock ?? systemClock;
    const seed = options.seed ?? 1;
    this.values = prng(seed);
    this.chance = prng(seed ^ 0x0fa17);
    this.ids = prng(seed ^ 0xb0071d);
    this.intervalMs = Math.max(1, options.intervalMs ?? 1000);
    this.capacity = Math.max(1, Math.floor(options.ringCapacity ?? 1000));
    this.persistent = options.persistent ?? false;
    this.maxFrame = Math.max(MIN_MAX_FRAME, Math.floor(options.maxFrame ?? MIN_MAX_FRAME));
    this.window = Math.min(16, Math.max(1, Math.floor(options.window ?? 8)));
    this.offsetUs = options.clockOffsetUs ?? 0;
    this.driftPpm = options.clockDriftPpm ?? 0;
    this.logEveryMs = options.logEveryMs ?? 10_000;
    this.bootBanner = options.bootBanner;
    this.schemaHash = (options.schemaHash ?? SCHEMA_HASH) >>> 0;
    this.resetReason = options.resetReason ?? ResetReason.RESET_POWER_ON;
    this.faults = { ...options.faults };
    if (options.boardId !== undefined) {
      const id = parseHex(options.boardId);
      if (!id || id.length < 4 || id.length > 16) throw new RangeError(`board id '${options.boardId}': expected 4 to 16 bytes in hex, e.g. 24:0a:c4:5f:9e:10`);
      this.boardId = id;
    } else {
      this.boardId = Uint8Array.from({ length: 8 }, () => Math.floor(this.ids() * 256));
    }
    this.imageHash = createHash("sha256").update(`${this.profile.hardware} ${this.profile.firmware}`).digest();
    this.firmware = this.profile.firmware;
    this.flash = options.flash;
    this.flashChanged = options.flashChanged ?? (() => undefined);
    let id = 1;
    const add = (spec: SimPointSpec, child: string) => {
      const p: PointState = { id: id++, spec, child, phase: this.values() * 2 * Math.PI, value: spec.writable?.initial ?? (spec.type === "bool" ? false : 0) };
      this.points.push(p);
      this.byId.set(p.id, p);
    };
    for (const spec of this.profile.points) add(spec, "");
    for (const c of this.profile.children) for (const spec of c.points) add(spec, c.id);
  }

  // ---- life -------------------------------------------------------------------------------

  /** Opens the port if needed and boots (reset reason from the options): Hello every second until the gateway answers. */
  async start(): Promise<void> {
    if (this.state !== "off") return;
    if (!this.port.isOpen) {
      await this.port.open();
      this.ownsPort = true;
    }
    if (!this.subscribed) {
      this.subscribed = true;
      this.port.onData((chunk) => this.onData(chunk));
      this.port.onClose((reason) => {
        if (this.state === "off") return;
        this.emit("closed", { reason });
      });
    }
    this.boot(this.resetReason);
  }

  /** Stops every timer and the link; closes the port if start() opened it. */
  async stop(): Promise<void> {
    if (this.state === "off") return;
    this.state = "off";
    for (const t of this.timers.values()) this.clock.clearTimeout(t);
    this.timers.clear();
    this.link?.close();
    this.link = undefined;
    this.out = [];
    if (this.ownsPort) {
      this.ownsPort = false;
      await this.port.close();
    }
  }

  on<K extends keyof SimBoardEvents>(event: K, listener: Listener<K>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as (e: never) => void);
    return () => set.delete(listener as (e: never) => void);
  }

  get sessionUp(): boolean {
    return this.state === "session";
  }

  get currentBootId(): number {
    return this.bootId;
  }

  /** The board's monotonic clock, µs since boot (with the crystal's offset and drift). */
  boardTimeUs(): number {
    const elapsedUs = (this.clock.now() - this.bootAtMs) * 1000;
    return Math.max(0, Math.round(this.offsetUs + elapsedUs * (1 + this.driftPpm * 1e-6)));
  }

  /** The point's current value (writable points: what was last written). */
  value(name: string, child = ""): number | boolean | undefined {
    return this.points.find((p) => p.spec.name === name && p.child === child)?.value;
  }

  /** Point ids as described: `temperature`, `sensor-a/battery`. */
  pointIds(): Map<string, number> {
    return new Map(this.points.map((p) => [p.child ? `${p.child}/${p.spec.name}` : p.spec.name, p.id]));
  }

  stats(): SimBoardStats {
    const link = this.link?.stats() ?? new Link({ write: () => undefined, deliver: () => undefined }, { role: "board" }).stats();
    return { ...this.counts, state: this.state, bootId: this.bootId, ringUsed: this.ring.length, link };
  }

  // ---- faults and scripted events ---------------------------------------------------------

  /** Changes the continuous faults (merged with the current ones). */
  /** The gateway's ReadingsAck are lost on the way while true (the board keeps what it sent, and resends it after its next session). */
  loseAcks(lost = true): void {
    this.acksLost = lost;
  }

  /** Stops (true) or resumes measuring; the link, heartbeats and resends go on (tests count what was made). */
  pause(paused = true): void {
    this.paused = paused;
  }

  setFaults(faults: SimBoardFaults): void {
    const spamBefore = this.faults.spamEveryMs;
    const floodBefore = this.faults.flood;
    this.faults = { ...this.faults, ...faults };
    if (this.state === "off") return;
    if (this.faults.spamEveryMs !== spamBefore) this.scheduleSpam();
    if (this.faults.flood && !floodBefore) this.pump();
  }

  /** Writes raw text between frames, as a stray printf would. */
  spam(text = this.spamLine()): void {
    const bytes = new TextEncoder().encode(text.replace(/\0/g, ""));
    this.counts.spamBytes += bytes.length;
    this.enqueue(bytes);
    this.link?.noteForeignBytes();
  }

  /** Reboots now: new boot id, Hello with `reason`; the ring survives only if persistent. */
  reboot(reason: ResetReason = ResetReason.RESET_SOFTWARE): void {
    if (this.state === "off") return;
    // A reset ends whatever the UART was still sending.
    this.out = [];
    this.boot(reason);
  }

  /** Resets as if the DTR line (or the reset button) pulled the reset pin. */
  dtrReboot(): void {
    this.reboot(ResetReason.RESET_PIN);
  }

  /** Writes half a frame, then resets (a watchdog in the middle of a write). */
  resetMidFrame(reason: ResetReason = ResetReason.RESET_WATCHDOG): void {
    if (this.state === "off") return;
    const frame = encodeFrame({ chan: CHANNEL.LINK, flags: 0, seq: 0, ack: 0, payload: this.heartbeatPayload() }, { afterDelimiter: true });
    // Cut before the closing delimiter, so the receiver holds an unfinished chunk.
    const half = frame.subarray(0, Math.max(1, Math.floor((frame.length - 1) / 2)));
    this.out = [];
    this.enqueue(half.slice());
    this.boot(reason);
  }

  /** For `ms`, bytes go out as a receiver at another baud rate would see them (no valid frame), and nothing is understood. */
  wrongBaud(ms: number): void {
    if (this.state === "off") return;
    this.wrongBaudUntil = this.clock.now() + ms;
    this.emit("wrongBaud", { active: true });
    this.timer("wrongBaud", ms, () => {
      this.wrongBaudUntil = undefined;
      this.emit("wrongBaud", { active: false });
    });
  }

  /** Reflashed with firmware built from another bridge.proto: reboots (RESET_UPDATE) and says Hello with that hash. */
  wrongSchema(hash = 0x0badf00d): void {
    this.schemaHash = hash >>> 0;
    this.reboot(ResetReason.RESET_UPDATE);
  }

  /** Reflashed with firmware built from our bridge.proto: reboots (RESET_UPDATE) and says Hello with SCHEMA_HASH. */
  restoreSchema(): void {
    this.wrongSchema(SCHEMA_HASH);
  }

  /** A relayed child node leaves (false) or comes back (true): ChildEvent, and its Describe on return. */
  setChildPresent(child: string, present: boolean): void {
    if (!this.profile.children.some((c) => c.id === child)) throw new RangeError(`no child '${child}' on ${this.profile.name}`);
    if (present === !this.absent.has(child)) return;
    if (present) this.absent.delete(child);
    else this.absent.add(child);
    this.emit("child", { child, present });
    if (this.state !== "session") return;
    this.sendReliable(CHANNEL.TELEMETRY, encodeTelemetry({ body: { case: "child", value: { child, present } } }));
    if (present) this.sendDescribe(child);
  }

  // ---- boot and handshake -----------------------------------------------------------------

  private boot(reason: ResetReason): void {
    const old = this.bootId;
    this.state = "hello";
    this.link?.close();
    for (const [name, t] of this.timers) {
      if (name === "wrongBaud") continue;
      this.clock.clearTimeout(t);
      this.timers.delete(name);
    }
    do this.bootId = Math.floor(this.ids() * 0x1_0000_0000) >>> 0;
    while (this.bootId === 0 || this.bootId === old);
    this.bootAtMs = this.clock.now();
    this.resetReason = reason;
    this.nextSeq = 1;
    this.counts.ringDropped = 0;
    this.counts.boots++;
    if (this.persistent) for (const e of this.ring) e.sent = false;
    else {
      this.counts.readingsLostInReset += this.ring.length;
      this.ring = [];
    }
    const link = new Link(
      {
        write: (bytes) => {
          if (this.link === link) this.writeFrame(bytes);
        },
        deliver: (chan, payload) => {
          if (this.link === link) this.onDeliver(chan, payload);
        },
        sessionLost: (why) => {
          if (this.link !== link || this.state === "off") return;
          this.emit("sessionLost", { reason: why });
          this.sayHello();
        },
        drained: () => {
          if (this.link === link) this.pump();
        },
        error: (error) => this.emit("error", { error }),
      },
      { role: "board", maxFrame: this.maxFrame, window: this.window, clock: this.clock },
    );
    this.link = link;
    this.framesHeard = 0;
    if (this.counts.boots > 1) this.emit("reboot", { bootId: this.bootId, reason });
    if (this.bootBanner) this.spam(this.bootBanner);
    let behaviour = "ok";
    if (this.flash) {
      this.flash.boot();
      this.flashChanged();
      this.firmware = this.flash.running.version;
      this.imageHash = this.flash.running.hash;
      behaviour = this.flash.behaviour;
      this.emit("image", { version: this.firmware, hash: toHex(this.imageHash), boot: this.flash.boots.at(-1)! });
    }
    // A test image that crashes at boot: it says hello, then the watchdog resets the board.
    if (behaviour === "crash") this.timer("crash", CRASH_AFTER_MS, () => this.reboot(ResetReason.RESET_CRASH));
    // The writable points report their state once per boot, so the gateway knows it.
    if (behaviour !== "silent") for (const p of this.points) if (p.spec.writable) this.record(p);
    if (behaviour !== "silent") this.every("readings", this.intervalMs, () => this.measure());
    this.scheduleSpam();
    if (this.logEveryMs > 0) this.every("log", this.logEveryMs, () => this.logLine());
    this.sayHello();
  }

  /** A new session attempt: link reset, a fresh Hello, repeated as is every second until answered. */
  private sayHello(): void {
    this.state = "hello";
    this.clearTimer("heartbeat");
    const uptime = BigInt(this.boardTimeUs());
    this.helloPayload = encodeLink({
      body: {
        case: "hello",
        value: {
          protocol: 1,
          schemaHash: this.schemaHash,
          boardId: this.boardId,
          hardware: this.profile.hardware,
          firmware: this.firmware,
          imageHash: this.imageHash,
          bootId: this.bootId,
          resetReason: this.resetReason,
          capabilities:
            Capability.CAP_TIME |
            Capability.CAP_CHILDREN |
            Capability.CAP_COMMANDS |
            (this.persistent ? Capability.CAP_PERSISTENT_RING : 0) |
            (this.flash ? Capability.CAP_MANAGEMENT : 0),
          maxFrame: this.maxFrame,
          window: this.window,
          uptimeUs: uptime,
        },
      },
    });
    this.counts.hellos++;
    this.emit("hello", { bootId: this.bootId, resetReason: this.resetReason, schemaHash: this.schemaHash });
    this.sendHello();
  }

  private sendHello(): void {
    const link = this.link;
    if (!link || !this.helloPayload) return;
    for (const e of this.ring) e.sent = false;
    link.reset();
    link.send(CHANNEL.LINK, this.helloPayload, { reliable: true });
    this.timer("hello", HELLO_RETRY_MS, () => {
      if (this.state === "hello") this.sendHello();
    });
  }

  private onHelloReply(reply: HelloReply): void {
    if (this.state !== "hello") return;
    this.clearTimer("hello");
    if (!reply.accepted) {
      // Quiet until the next HelloRequest; the link stays up only to acknowledge the reply.
      this.state = "refused";
      this.counts.refusals++;
      this.emit("refused", { reason: reply.reason });
      return;
    }
    this.state = "session";
    this.counts.sessions++;
    this.heartbeatMs = reply.heartbeatMs > 0 ? reply.heartbeatMs : DEFAULT_HEARTBEAT_MS;
    this.link!.setSession({ window: reply.window || this.window, maxFrame: reply.maxFrame || MIN_MAX_FRAME });
    this.lastHeardAt = this.clock.now();
    const s = this.link!.stats();
    this.emit("session", { maxFrame: s.maxFrame, window: s.window, heartbeatMs: this.heartbeatMs, utcUs: reply.utcUs });
    this.sendDescribe("");
    for (const c of this.profile.children) if (!this.absent.has(c.id)) this.sendDescribe(c.id);
    this.every("heartbeat", this.heartbeatMs, () => this.heartbeat());
    this.pump();
  }

  private heartbeatPayload(): Uint8Array {
    return encodeLink({
      body: { case: "heartbeat", value: { uptimeUs: BigInt(this.boardTimeUs()), ringUsed: this.ring.length, ringDropped: this.counts.ringDropped } },
    });
  }

  private heartbeat(): void {
    if (this.state !== "session" || !this.link) return;
    if (this.clock.now() - this.lastHeardAt >= SILENT_HEARTBEATS * this.heartbeatMs) {
      this.emit("sessionLost", { reason: `nothing valid heard for ${SILENT_HEARTBEATS * this.heartbeatMs} ms` });
      this.sayHello();
      return;
    }
    this.link.send(CHANNEL.LINK, this.heartbeatPayload(), { reliable: false });
  }

  // ---- receiving --------------------------------------------------------------------------

  private onData(chunk: Uint8Array): void {
    const link = this.link;
    if (!link || this.state === "off") return;
    if (this.wrongBaudUntil !== undefined) return; // at the wrong baud nothing the gateway says makes sense
    link.receive(chunk);
    if (this.link !== link) return;
    const heard = link.stats().framesIn;
    if (heard !== this.framesHeard) {
      this.framesHeard = heard;
      this.lastHeardAt = this.clock.now();
      // Acks free window slots, and a busy gateway says when it is no longer: the next frames are built now.
      this.pump();
    }
  }

  private onDeliver(chan: number, payload: Uint8Array): void {
    if (chan === CHANNEL.LINK) {
      const r = decodeLink(payload);
      if (!r.ok) return;
      const body = r.message.body;
      switch (body.case) {
        case "helloRequest":
          // Waiting for a reply: the same Hello again (new bytes would start yet another session).
          if (this.state === "hello") this.sendHello();
          else this.sayHello();
          return;
        case "helloReply":
          this.onHelloReply(body.value);
          return;
        case "timeRequest": {
          const t2 = BigInt(this.boardTimeUs());
          if (this.state === "refused") return;
          const t3 = BigInt(this.boardTimeUs());
          this.counts.timeReplies++;
          this.link?.send(CHANNEL.LINK, encodeLink({ body: { case: "timeReply", value: { t1Us: body.value.t1Us, t2Us: t2, t3Us: t3 } } }), { reliable: false });
          this.emit("time", { t1Us: body.value.t1Us, t2Us: t2, t3Us: t3 });
          return;
        }
        default:
          return;
      }
    }
    if (this.state !== "session") return;
    if (chan === CHANNEL.TELEMETRY) {
      const r = decodeTelemetry(payload);
      if (r.ok && r.message.body.case === "ack" && !this.acksLost) this.onAck(r.message.body.value.bootId, r.message.body.value.uptoSeq);
    } else if (chan === CHANNEL.COMMANDS) {
      const r = decodeCommands(payload);
      if (r.ok && r.message.body.case === "command") this.onCommand(r.message.body.value);
    } else if (chan === CHANNEL.MANAGEMENT && this.flash) {
      const { response, reset } = this.flash.handle(payload);
      this.counts.smpRequests++;
      if (response) this.flashChanged();
      if (response) this.sendReliable(CHANNEL.MANAGEMENT, response);
      // As MCUmgr: the reset comes a moment after its response has left.
      if (reset) this.timer("smpReset", SMP_RESET_DELAY_MS, () => this.reboot(ResetReason.RESET_SOFTWARE));
    }
  }

  private onAck(bootId: number, upto: number): void {
    const covered = (e: RingEntry) => e.bootId === bootId && e.seq <= upto;
    let n = 0;
    while (n < this.ring.length && covered(this.ring[n]!)) n++;
    let removed = n;
    this.ring.splice(0, n);
    if (this.ring.some(covered)) {
      // Not at the front (another boot's readings before them): rare, so a plain filter.
      const before = this.ring.length;
      this.ring = this.ring.filter((e) => !covered(e));
      removed += before - this.ring.length;
    }
    this.counts.readingsAcked += removed;
    this.emit("acked", { bootId, uptoSeq: upto, removed, ringUsed: this.ring.length });
    if (this.faults.flood) this.pump();
  }

  private onCommand(cmd: Command): void {
    this.counts.commands++;
    const p = this.byId.get(cmd.point);
    const v = cmd.value;
    const given = v.case === undefined ? undefined : v.value;
    const name = p ? (p.child ? `${p.child}/${p.spec.name}` : p.spec.name) : `#${cmd.point}`;
    const reply = (status: CommandStatus, message: string) => {
      if (status !== CommandStatus.COMMAND_OK) this.counts.commandsRefused++;
      const readback = p && status !== CommandStatus.COMMAND_UNKNOWN_POINT ? this.readingOf(p) : undefined;
      this.sendReliable(
        CHANNEL.COMMANDS,
        encodeCommands({ body: { case: "result", value: { id: cmd.id, status, message, ...(readback ? { readback } : {}) } } }),
      );
      this.emit("command", { id: cmd.id, point: name, value: given, status, message });
    };
    if (!p) return reply(CommandStatus.COMMAND_UNKNOWN_POINT, `no point ${cmd.point} on this board`);
    const w = p.spec.writable;
    if (!w) return reply(CommandStatus.COMMAND_REFUSED, `${name} is not writable`);
    if (p.spec.type === "number") {
      if (v.case !== "number" || !Number.isFinite(v.value)) return reply(CommandStatus.COMMAND_REFUSED, `${name} takes a number`);
      if ((w.min !== undefined && v.value < w.min) || (w.max !== undefined && v.value > w.max)) {
        return reply(CommandStatus.COMMAND_REFUSED, `${name} ${v.value} is out of bounds ${w.min ?? "-∞"}…${w.max ?? "∞"}`);
      }
      p.value = v.value;
    } else {
      if (v.case !== "flag") return reply(CommandStatus.COMMAND_REFUSED, `${name} takes true or false`);
      p.value = v.value;
    }
    this.record(p);
    this.log(LogLevel.LOG_INFO, `${name} ${String(p.value)}${p.spec.unit ? ` ${p.spec.unit}` : ""} from gateway`);
    reply(CommandStatus.COMMAND_OK, "");
    this.pump();
  }

  // ---- measuring and sending --------------------------------------------------------------

  private waveValue(w: Waveform, phase: number): number {
    const t = this.boardTimeUs() / 1e6;
    const v = w.mean + w.amplitude * Math.sin((2 * Math.PI * t) / w.periodS + phase) + ((w.driftPerHour ?? 0) * t) / 3600 + w.noise * (this.values() * 2 - 1);
    const k = 10 ** w.decimals;
    return Math.round(v * k) / k;
  }

  private readingOf(p: PointState): Reading {
    const value = typeof p.value === "boolean" ? { case: "flag" as const, value: p.value } : { case: "number" as const, value: p.value };
    return create(ReadingSchema, { point: p.id, tUs: BigInt(this.boardTimeUs()), value, quality: Quality.GOOD });
  }

  /** Puts a reading of `p` (its current value) in the ring. */
  private record(p: PointState): void {
    const reading = this.readingOf(p);
    if (this.ring.length >= this.capacity) {
      this.ring.shift();
      this.counts.readingsDropped++;
      this.counts.ringDropped++;
    }
    this.ring.push({ bootId: this.bootId, seq: this.nextSeq++, reading, size: toBinary(ReadingSchema, reading).length, sent: false, everSent: false });
    this.counts.readingsMade++;
  }

  /** One reading of each measured point of the board and of each present child. */
  private measure(): void {
    if (this.paused) return;
    if (this.faults.flood && this.state === "session") return; // the flood measures as it sends
    this.measureAll();
    this.pump();
  }

  private measureAll(): void {
    for (const p of this.points) {
      if (!p.spec.wave || (p.child && this.absent.has(p.child))) continue;
      p.value = this.waveValue(p.spec.wave, p.phase);
      this.record(p);
    }
  }

  /** Points measureAll() reads now (a flood measures only when the ring has room for all of them). */
  private measuredNow(): number {
    let n = 0;
    for (const p of this.points) if (p.spec.wave && !(p.child && this.absent.has(p.child))) n++;
    return n;
  }

  /** The flood may measure a round now: on, not paused, and the ring has room (a flood never overwrites unacknowledged readings). */
  private floodMayMeasure(): boolean {
    if (!this.faults.flood || this.paused) return false;
    const n = this.measuredNow();
    return n > 0 && this.ring.length + n <= this.capacity;
  }

  /**
   * Sends readings while the link can put a frame on the wire now (a window slot free, nothing
   * queued, the gateway not busy): each frame is built at that moment, from the oldest unsent
   * readings, filled up to the session's max_frame — so readings that piled up while the window
   * was full leave in full frames. A flood measures as it fills (never past the ring's capacity).
   * Called when readings are made, and whenever the link may have room again (bytes received:
   * acks, a busy gateway clearing; `drained`).
   */
  private pump(): void {
    const link = this.link;
    if (!link || this.state !== "session") return;
    for (;;) {
      const s = link.stats();
      if (!s.session || s.peerBusy || s.queued > 0 || s.inFlight >= s.window) return;
      const batch = this.nextBatch(s.maxFrame - FRAME_OVERHEAD);
      if (batch.length === 0) return;
      const first = batch[0]!;
      const payload = encodeTelemetry({ body: { case: "readings", value: { bootId: first.bootId, firstSeq: first.seq, readings: batch.map((e) => e.reading) } } });
      const r = link.send(CHANNEL.TELEMETRY, payload, { reliable: true });
      if (r !== "sent" && r !== "queued") return; // "full": `drained` calls again
      for (const e of batch) {
        if (e.everSent) this.counts.readingsResent++;
        e.sent = true;
        e.everSent = true;
      }
    }
  }

  /** The oldest unsent readings of one boot with consecutive sequences, as many as fit `limit` payload bytes. */
  private nextBatch(limit: number): RingEntry[] {
    let start = this.ring.findIndex((e) => !e.sent);
    if (start < 0) {
      if (!this.floodMayMeasure()) return [];
      start = this.ring.length;
      this.measureAll();
    }
    const first = this.ring[start];
    if (!first) return [];
    // Readings: boot_id (fixed32: 5) and first_seq; then each reading, length-delimited; the
    // whole inside Telemetry as field 2, length-delimited.
    let inner = 5 + 1 + varintLen(first.seq);
    let end = start;
    for (;;) {
      while (end < this.ring.length) {
        const e = this.ring[end]!;
        if (e.sent || e.bootId !== first.bootId || e.seq !== first.seq + (end - start)) return this.ring.slice(start, end);
        const add = 1 + varintLen(e.size) + e.size;
        if (1 + varintLen(inner + add) + inner + add > limit) return this.ring.slice(start, end);
        inner += add;
        end++;
      }
      // Every unsent reading fits: a flood measures more to fill the frame.
      if (first.bootId !== this.bootId || !this.floodMayMeasure()) return this.ring.slice(start, end);
      this.measureAll();
    }
  }

  /** Describe of the board's own points (child "") or of one child, split to fit the frames; the last with `complete`. */
  private sendDescribe(child: string): void {
    const link = this.link;
    if (!link) return;
    const limit = link.stats().maxFrame - FRAME_OVERHEAD;
    const infos: Array<MessageInitShape<typeof PointInfoSchema>> = this.points
      .filter((p) => p.child === child)
      .map((p) => ({
        id: p.id,
        name: p.spec.name,
        unit: p.spec.unit,
        type: p.spec.type === "bool" ? PointType.POINT_BOOL : PointType.POINT_NUMBER,
        writable: p.spec.writable !== undefined,
        min: p.spec.writable?.min ?? 0,
        max: p.spec.writable?.max ?? 0,
        child,
      }));
    const encode = (points: typeof infos, complete: boolean) => encodeTelemetry({ body: { case: "describe", value: { points, complete, child } } });
    let batch: typeof infos = [];
    for (const info of infos) {
      if (batch.length > 0 && encode([...batch, info], false).length > limit) {
        this.sendReliable(CHANNEL.TELEMETRY, encode(batch, false));
        batch = [];
      }
      batch.push(info);
    }
    this.sendReliable(CHANNEL.TELEMETRY, encode(batch, true));
  }

  private sendReliable(chan: number, payload: Uint8Array): void {
    this.link?.send(chan, payload, { reliable: true });
  }

  private logLine(): void {
    const t = this.value("temperature");
    this.log(LogLevel.LOG_INFO, `temperature ${String(t)} °C, ring ${this.ring.length}/${this.capacity}, ${this.absent.size === 0 ? "all children present" : `absent: ${[...this.absent].join(", ")}`}`);
  }

  private log(level: LogLevel, text: string): void {
    if (this.state !== "session" || !this.link) return;
    this.counts.logLines++;
    this.link.send(CHANNEL.LOG, encodeLog({ level, tUs: BigInt(this.boardTimeUs()), text: text.slice(0, 200) }), { reliable: false });
  }

  private spamLine(): string {
    const ms = Math.floor(this.boardTimeUs() / 1000);
    const lines = ["I (%) wifi: station mode, channel 6\r\n", "W (%) i2c: sensor-b timeout, retrying\r\n", "E (%) radio: CRC mismatch on rx, dropped\r\n", "D (%) ring: 0x3ffb2a10 used\r\n"];
    return lines[Math.floor(this.chance() * lines.length)]!.replace("%", String(ms));
  }

  private scheduleSpam(): void {
    const every = this.faults.spamEveryMs ?? 0;
    if (every > 0) this.every("spam", every, () => this.spam());
    else this.clearTimer("spam");
  }

  // ---- writing, with the faults -----------------------------------------------------------

  /** One frame from the link: dropped, doubled, flipped or garbled as the faults say. */
  private writeFrame(bytes: Uint8Array): void {
    if (this.wrongBaudUntil !== undefined) {
      // A receiver at another baud rate sees framing errors: bytes with no relation to ours.
      const g = Uint8Array.from(bytes, () => Math.floor(this.chance() * 256));
      this.counts.garbledBytes += g.length;
      this.enqueue(g);
      return;
    }
    const f = this.faults;
    if (f.drop && this.chance() < f.drop) {
      this.counts.framesDropped++;
      return;
    }
    let b = bytes;
    if (f.bitFlip) {
      for (let i = 0; i < b.length; i++) {
        if (this.chance() >= f.bitFlip) continue;
        if (b === bytes) b = bytes.slice();
        b[i]! ^= 1 << Math.floor(this.chance() * 8);
        this.counts.bitsFlipped++;
      }
    }
    this.enqueue(b);
    if (f.duplicate && this.chance() < f.duplicate) {
      this.counts.framesDuplicated++;
      this.enqueue(b);
    }
  }

  private enqueue(bytes: Uint8Array): void {
    if (this.state === "off" && !this.link) return;
    this.out.push(bytes);
    if (!this.writing) void this.flush();
  }

  /** Writes in order, one write at a time: all that is waiting at once, or in short chunks. */
  private async flush(): Promise<void> {
    this.writing = true;
    try {
      while (this.out.length > 0 && this.state !== "off") {
        if (!this.faults.shortWrites) {
          await this.port.write(concat(this.out.splice(0)));
          continue;
        }
        const b = this.out.shift()!;
        for (let at = 0; at < b.length; ) {
          const n = 1 + Math.floor(this.chance() * 8);
          await this.port.write(b.subarray(at, at + n));
          at += n;
          const pause = Math.floor(this.chance() * 3);
          if (pause > 0) await new Promise<void>((r) => this.clock.setTimeout(r, pause));
        }
      }
    } catch (error) {
      this.emit("error", { error });
    } finally {
      this.writing = false;
    }
  }

  // ---- timers and events ------------------------------------------------------------------

  private timer(name: string, ms: number, fn: () => void): void {
    this.clearTimer(name);
    this.timers.set(
      name,
      this.clock.setTimeout(() => {
        this.timers.delete(name);
        if (this.state === "off") return;
        try {
          fn();
        } catch (error) {
          this.emit("error", { error });
        }
      }, ms),
    );
  }

  private every(name: string, ms: number, fn: () => void): void {
    this.timer(name, ms, () => {
      this.every(name, ms, fn);
      fn();
    });
  }

  private clearTimer(name: string): void {
    const t = this.timers.get(name);
    if (t === undefined) return;
    this.clock.clearTimeout(t);
    this.timers.delete(name);
  }

  private emit<K extends keyof SimBoardEvents>(event: K, e: SimBoardEvents[K]): void {
    for (const l of this.listeners.get(event) ?? []) {
      try {
        (l as Listener<K>)(e);
      } catch (error) {
        if (event !== "error") this.emit("error", { error });
      }
    }
  }
}
