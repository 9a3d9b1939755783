/**
 * A minimal gateway for bridge tests: the gateway role of the Link, the handshake (refusing
 * another schema hash), readings recorded by (boot id, board seq) and acknowledged, heartbeats,
 * and a few requests (HelloRequest, TimeRequest, Command). It is what a test needs to talk to a
 * board, not the gateway (src/sources/bridge).
 */
import type { ByteLink } from "../../src/buses/serial/byte-link.js";
import { CHANNEL } from "../../src/bridge/frame.js";
import { Link, type LinkClock, systemClock } from "../../src/bridge/link.js";
import {
  type CommandResult,
  type Describe,
  decodeCommands,
  decodeLink,
  decodeLog,
  decodeTelemetry,
  encodeCommands,
  encodeLink,
  encodeTelemetry,
  type Heartbeat,
  type Hello,
  type Reading,
  type TimeReply,
} from "../../src/bridge/messages.js";
import { formatSchemaHash, SCHEMA_HASH } from "../../src/bridge/schema.js";

export interface GatewayPeerOptions {
  clock?: LinkClock;
  heartbeatMs?: number;
  /** Acknowledge readings as they come (the store "committed" them at once). Default true. */
  autoAck?: boolean;
  maxFrame?: number;
  window?: number;
}

export interface Received {
  bootId: number;
  seq: number;
  reading: Reading;
}

export class GatewayPeer {
  link: Link;
  readonly hellos: Hello[] = [];
  readonly describes: Describe[] = [];
  readonly childEvents: Array<{ child: string; present: boolean }> = [];
  readonly heartbeats: Heartbeat[] = [];
  readonly results: CommandResult[] = [];
  readonly timeReplies: TimeReply[] = [];
  readonly logs: string[] = [];
  /** The text of the first discarded chunk of each burst (the link's `garbage` event). */
  readonly garbageTexts: string[] = [];
  /** Each (boot id, seq) once, in arrival order. */
  readonly readings: Received[] = [];
  /** Every reading as it came, repeats included; a test may empty it. */
  arrivals: Received[] = [];
  /** Readings that came again after they were recorded (a resend). */
  repeats = 0;
  /** Readings batches received (REL frames delivered). */
  batches = 0;
  autoAck: boolean;
  private readonly seen = new Set<string>();
  private readonly clock: LinkClock;
  private readonly heartbeatMs: number;
  private readonly maxFrame: number;
  private readonly window: number;
  private hb: unknown;

  constructor(
    private readonly port: ByteLink,
    opts: GatewayPeerOptions = {},
  ) {
    this.clock = opts.clock ?? systemClock;
    this.heartbeatMs = opts.heartbeatMs ?? 1000;
    this.autoAck = opts.autoAck ?? true;
    this.maxFrame = opts.maxFrame ?? 1024;
    this.window = opts.window ?? 8;
    this.link = this.newLink();
    port.onData((chunk) => this.link.receive(chunk));
  }

  async start(): Promise<void> {
    if (!this.port.isOpen) await this.port.open();
    this.beat();
  }

  async stop(): Promise<void> {
    if (this.hb !== undefined) this.clock.clearTimeout(this.hb);
    this.hb = undefined;
    this.link.close();
    await this.port.close();
  }

  /** A gateway restart: a new link (no session) and a HelloRequest. */
  restart(): void {
    this.link.close();
    this.link = this.newLink();
    this.helloRequest();
  }

  helloRequest(): void {
    this.link.send(CHANNEL.LINK, encodeLink({ body: { case: "helloRequest", value: { protocol: 1 } } }), { reliable: false });
  }

  timeRequest(t1Us: bigint): void {
    this.link.send(CHANNEL.LINK, encodeLink({ body: { case: "timeRequest", value: { t1Us } } }), { reliable: false });
  }

  command(id: number, point: number, value: { case: "number"; value: number } | { case: "flag"; value: boolean }): void {
    this.link.send(CHANNEL.COMMANDS, encodeCommands({ body: { case: "command", value: { id, point, value } } }), { reliable: true });
  }

  ack(bootId: number, uptoSeq: number): void {
    this.link.send(CHANNEL.TELEMETRY, encodeTelemetry({ body: { case: "ack", value: { bootId, uptoSeq } } }), { reliable: true });
  }

  /** Seqs received of one boot, sorted. */
  seqs(bootId: number): number[] {
    return this.readings
      .filter((r) => r.bootId === bootId)
      .map((r) => r.seq)
      .sort((a, b) => a - b);
  }

  private beat(): void {
    this.hb = this.clock.setTimeout(() => {
      if (this.link.inSession) this.link.send(CHANNEL.LINK, encodeLink({ body: { case: "heartbeat", value: { uptimeUs: 1n } } }), { reliable: false });
      this.beat();
    }, this.heartbeatMs);
  }

  private newLink(): Link {
    const link: Link = new Link(
      {
        write: (bytes) => {
          if (this.link === link) void this.port.write(bytes);
        },
        deliver: (chan, payload) => {
          if (this.link === link) this.deliver(chan, payload);
        },
        garbage: (text) => this.garbageTexts.push(text),
      },
      { role: "gateway", clock: this.clock, maxFrame: this.maxFrame, window: this.window },
    );
    return link;
  }

  private deliver(chan: number, payload: Uint8Array): void {
    if (chan === CHANNEL.LINK) {
      const r = decodeLink(payload);
      if (!r.ok) return;
      const b = r.message.body;
      if (b.case === "hello") {
        this.hellos.push(b.value);
        const ok = b.value.schemaHash === SCHEMA_HASH;
        const reason = ok ? "" : `schema ${formatSchemaHash(b.value.schemaHash)} differs from the gateway's ${formatSchemaHash(SCHEMA_HASH)}`;
        const maxFrame = Math.min(this.maxFrame, b.value.maxFrame);
        const window = Math.min(this.window, b.value.window);
        this.link.send(
          CHANNEL.LINK,
          encodeLink({ body: { case: "helloReply", value: { accepted: ok, reason, utcUs: BigInt(Date.now()) * 1000n, maxFrame, window, heartbeatMs: this.heartbeatMs } } }),
          { reliable: true },
        );
        if (ok) this.link.setSession({ maxFrame, window });
        else this.link.endSession();
      } else if (b.case === "heartbeat") this.heartbeats.push(b.value);
      else if (b.case === "timeReply") this.timeReplies.push(b.value);
      return;
    }
    if (chan === CHANNEL.TELEMETRY) {
      const r = decodeTelemetry(payload);
      if (!r.ok) return;
      const b = r.message.body;
      if (b.case === "describe") this.describes.push(b.value);
      else if (b.case === "child") this.childEvents.push({ child: b.value.child, present: b.value.present });
      else if (b.case === "readings") {
        this.batches++;
        const { bootId, firstSeq } = b.value;
        b.value.readings.forEach((reading, i) => {
          const key = `${bootId}:${firstSeq + i}`;
          this.arrivals.push({ bootId, seq: firstSeq + i, reading });
          if (this.seen.has(key)) {
            this.repeats++;
            return;
          }
          this.seen.add(key);
          this.readings.push({ bootId, seq: firstSeq + i, reading });
        });
        if (this.autoAck && b.value.readings.length > 0) this.ack(bootId, firstSeq + b.value.readings.length - 1);
      }
      return;
    }
    if (chan === CHANNEL.COMMANDS) {
      const r = decodeCommands(payload);
      if (r.ok && r.message.body.case === "result") this.results.push(r.message.body.value);
      return;
    }
    if (chan === CHANNEL.LOG) {
      const r = decodeLog(payload);
      if (r.ok) this.logs.push(r.message.text);
    }
  }
}
