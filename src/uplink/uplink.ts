/**
 * The MQTT uplink: reads the outbox, sends telemetry at QoS 1, and deletes rows only when the
 * broker's PUBACK arrived. MQTT.js's own offline queue and reconnect are not used (pitfalls.md):
 * every connection is a fresh client, the outbox is the only queue, and reconnects follow our
 * capped, jittered backoff (reset only once a connection has carried a message).
 *
 * After a reconnect, readings stored before the connection (the backlog) are drained in sequence
 * order under a budget, while readings stored since go first (live).
 *
 * The gateway does not send what the broker will not take: MQTT 5 by default (3.1.1 when the
 * broker refuses it), the broker's Maximum Packet Size and Receive Maximum honoured, and a message
 * the broker refuses split and retried, down to single readings set aside as dead letters
 * (refusals.ts). One bad message never blocks what follows it.
 */
import { readFileSync } from "node:fs";
import type { IClientOptions, IConnackPacket, IDisconnectPacket, MqttClient } from "mqtt";
import type { UplinkConfig } from "../config/schema.js";
import { UserError } from "../model/errors.js";
import type { StoredReading } from "../model/reading.js";
import type { UplinkState, UplinkStats } from "../model/status.js";

export type { UplinkState, UplinkStats };
import type { Logger } from "../model/logger.js";
import type { Outbox, StreamName, StreamStore } from "../store/outbox.js";
import { coalesce, type SeqRange, subtract } from "../model/seq-ranges.js";
import { Backoff } from "./backoff.js";
import { type EncodedBatch, encodeResult, encodeTelemetry } from "./codec.js";
import { encodeCompact } from "./compact.js";
import { DataBudget, publishBytes } from "./budget.js";
import { PointDictionary } from "./dictionary.js";
import { connectMqtt } from "./connect.js";
import { classifyPuback, disconnectBlamesMessage, isProtocolRefusal, pubackReason, type Refusal, refusesProtocolVersion } from "./refusals.js";
import { gatewayTopics, type TopicNames } from "./topics.js";
import { withTimeout } from "../model/timeout.js";



export interface UplinkOptions {
  config: UplinkConfig;
  site: string;
  gateway: string;
  version: string;
  outbox: Outbox;
  log: Logger;
  /** Broker URL override (the embedded broker's actual port). */
  url?: string;
  /** Called for each message on `<root>/<site>/<gateway>/cmd/<target>`. */
  onCommand?: (target: string, payload: Buffer) => void;
  now?: () => number;
  /** Where the point dictionary of compact payloads is kept (beside the outbox); null: in memory. */
  dictionaryPath?: string | null;
  /** Where the month's byte count of `uplink.budget` is kept; null: in memory. */
  budgetPath?: string | null;
  /** The month's forecast crossed the budget (over: true) or came back under it. */
  onBudget?: (snapshot: NonNullable<UplinkStats["budget"]>, over: boolean) => void;
}

/**
 * Rows the broker refused or is suspected of refusing: sent again no larger than maxCount rows
 * and maxBytes, halved at each strike; kept across connections (keyed by sequence numbers).
 */
interface Suspect {
  first: number;
  last: number;
  strikes: number;
  maxCount: number;
  maxBytes: number;
}

/** At most this many suspect ranges per stream (each is removed once its rows are delivered). */
const MAX_SUSPECTS = 256;
const RELAX_AFTER_MS = 10 * 60_000;
const RELAX_AFTER_ACKS = 20;
/** A connection that closes this soon after it came up, with messages in flight, is suspect. */
const SHORT_LIVED_MS = 5000;

/**
 * One outbox stream on the current connection. Everything stored before the connection came up
 * is backlog, sent oldest first under a budget; what is stored after is live and goes first.
 */
class Channel {
  /** Rows with seq <= liveCursor have been handed to this connection (live part). */
  liveCursor = 0;
  /** Backlog: seq in (backlogCursor, backlogEnd] still to send on this connection. */
  backlogCursor = 0;
  backlogEnd = 0;
  liveSince: number | null = null;
  backlogInflight = 0;
  tokens = 0;
  tokensAt = 0;
  readonly pendingAcks: Array<[number, number]> = [];
  /** Ranges to send again on this connection (refused, or dead letters given back), oldest first. */
  readonly resend: Array<[number, number]> = [];
  /** Ranges a replay put back below the backlog, sent like backlog (its budget), oldest first. */
  readonly replay: Array<[number, number]> = [];
  readonly suspects: Suspect[] = [];
  /** A refusal that says "later" (not authorized, quota): nothing is sent before this time. */
  pausedUntil = 0;
  pauses = 0;
  /**
   * Bytes a message may carry, learned from refusals: halved at each, so that a broker with an
   * unannounced size limit costs a few reconnects, not one per message; tried larger again
   * (doubled) only after RELAX_AFTER_MS without a refusal and RELAX_AFTER_ACKS deliveries.
   */
  learnedMaxBytes = Number.POSITIVE_INFINITY;
  learnedAt = 0;
  acksSinceLearned = 0;

  constructor(
    readonly store: StreamStore,
    readonly topic: string,
    /** Wait this long to fill a message with live rows (0: send at once); longer while saving data. */
    public linger: number,
    /** Backlog budget: messages in flight, and rows per second (0 = no rate limit). */
    readonly backlogInflightMax: number,
    readonly rate: number,
    readonly encode: (rows: StoredReading[], maxBytes: number) => EncodedBatch | null,
  ) {}

  reset(now: number): void {
    const last = this.store.lastSeq;
    const first = this.store.firstSeq();
    this.liveCursor = last;
    this.backlogEnd = last;
    this.backlogCursor = first === null ? last : first - 1;
    this.backlogInflight = 0;
    this.tokens = this.rate;
    this.tokensAt = now;
    // The backlog covers every stored row, those to resend or replay included.
    this.resend.length = 0;
    this.replay.length = 0;
  }

  get backlogRemaining(): number {
    let n = Math.max(0, this.backlogEnd - this.backlogCursor);
    for (const [first, last] of this.replay) n += last - first + 1;
    return n;
  }

  paused(now: number): boolean {
    return now < this.pausedUntil;
  }

  /** Nothing left that this connection will send (a paused stream waits for the next start). */
  idle(now: number): boolean {
    if (this.paused(now)) return true;
    return this.resend.length === 0 && this.replay.length === 0 && this.backlogCursor >= this.backlogEnd && this.liveCursor >= this.store.lastSeq;
  }

  addResend(first: number, last: number): void {
    this.resend.push([first, last]);
    this.resend.sort((a, b) => a[0] - b[0]);
  }

  /** Rows put back by a replay: those the backlog has still to reach go with it, the others on their own. */
  addReplay(ranges: readonly SeqRange[]): void {
    const ahead: SeqRange[] = this.backlogCursor < this.backlogEnd ? [[this.backlogCursor + 1, this.backlogEnd]] : [];
    this.replay.push(...subtract(coalesce(ranges), ahead));
    this.replay.splice(0, this.replay.length, ...coalesce(this.replay));
  }

  suspectAt(seq: number): Suspect | undefined {
    return this.suspects.find((s) => seq >= s.first && seq <= s.last);
  }

  /** Delivered rows are no longer suspect. */
  clearSuspects(first: number, last: number): void {
    for (let i = this.suspects.length - 1; i >= 0; i--) {
      const s = this.suspects[i]!;
      if (s.last < first || s.first > last) continue;
      if (s.first >= first && s.last <= last) this.suspects.splice(i, 1);
      else if (s.first >= first) s.first = last + 1;
      else if (s.last <= last) s.last = first - 1;
    }
  }
}

/** A message on its way: what it carries, and its place in the connection's sending order. */
interface Flight {
  channel: Channel;
  first: number;
  last: number;
  count: number;
  bytes: number;
  index: number;
  kind: "live" | "backlog" | "resend";
}

/** How long to collect acknowledgements before deleting their rows in one transaction. */
const ACK_FLUSH_MS = 25;
const ACK_FLUSH_RANGES = 64;

type TimerName = "reconnectTimer" | "lingerTimer" | "rateTimer" | "pauseTimer" | "ackTimer";

export class Uplink {
  private readonly cfg: UplinkConfig;
  private readonly topics: TopicNames;
  private readonly url: string;
  private readonly backoff: Backoff;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly outbox: Outbox;

  private client: MqttClient | null = null;
  private generation = 0;
  private state: UplinkState = "stopped";
  private stopping = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private lingerTimer: NodeJS.Timeout | null = null;
  private rateTimer: NodeJS.Timeout | null = null;
  private pauseTimer: NodeJS.Timeout | null = null;
  private ackTimer: NodeJS.Timeout | null = null;
  /** The batches published and not yet acknowledged, in sending order. */
  private readonly inflight = new Map<number, Flight>();
  private nextId = 0;
  /** Sending order on the current connection, and the latest message of it the broker acknowledged. */
  private sendIndex = 0;
  private highestAcked = 0;
  /** The connection has carried a message: the backoff starts again from its minimum. */
  private proven = false;
  private connectedAt = 0;
  /**
   * A message of a suspect range goes alone: sent only when nothing else is in flight, and
   * nothing follows it until it is settled, so that whatever the broker does next is its doing.
   */
  private probeId: number | null = null;
  private probeWanted = false;
  /** The connection is being ended: nothing more goes on it. */
  private closing = false;
  /** A message the broker broke the connection over; blamed when the connection closes. */
  private suspectOnClose: { flight: Flight; reason: string; weight?: number } | null = null;
  private idleWaiters: Array<() => void> = [];
  /** Events and command results first (small, and someone waits for them), then telemetry. */
  private readonly channels: Channel[];
  private readonly telemetry: Channel;
  private lastLoggedError: string | null = null;
  /** The MQTT version to ask for: 5 unless configured 3.1.1, or the broker refused 5 (auto). */
  private protocolVersion: 4 | 5;
  private retryAtOnce = false;
  /**
   * Connections that closed before any CONNACK while asking for MQTT 5 (auto): RabbitMQ 3.10 hangs
   * up on a version-5 CONNECT without a word. After two in a row the next attempt asks for 3.1.1,
   * tentatively — if that one closes before its CONNACK too, the broker was just down, and the
   * gateway goes back to 5.
   */
  private silentRefusals = 0;
  private tentative311 = false;
  /** The current attempt's TCP (or TLS) connection opened: a close before CONNACK is the broker's doing. */
  private socketOpened = false;
  private maxPacketSize: number | null = null;
  private receiveMaximum: number | null = null;

  private readonly counters = {
    connects: 0,
    messagesAcked: 0,
    readingsAcked: 0,
    publishFailures: 0,
    refused: 0,
    deadLettered: 0,
    payloadBytes: 0,
    /** Events and command results acknowledged. */
    otherAcked: 0,
  };
  private lastError: string | null = null;
  private dictionary: PointDictionary | null = null;
  private readonly budget: DataBudget | null;
  private budgetSaving_ = false;

  constructor(private readonly opts: UplinkOptions) {
    this.cfg = opts.config;
    this.url = opts.url ?? opts.config.url;
    this.topics = gatewayTopics(this.cfg.root, opts.site, opts.gateway);
    this.backoff = new Backoff(this.cfg.reconnect.min, this.cfg.reconnect.max);
    this.now = opts.now ?? Date.now;
    this.log = opts.log.child({ part: "uplink" });
    this.outbox = opts.outbox;
    this.protocolVersion = this.cfg.protocol === "3.1.1" ? 4 : 5;
    const cfg = this.cfg;
    this.budget = cfg.budget ? new DataBudget(cfg.budget.limit, opts.budgetPath ?? null, this.now) : null;
    let batches = (rows: StoredReading[], maxBytes: number): EncodedBatch | null => encodeTelemetry(opts.gateway, rows, maxBytes);
    if (cfg.encoding === "compact") {
      const dict = new PointDictionary(opts.dictionaryPath ?? null);
      this.dictionary = dict;
      batches = (rows, maxBytes) => {
        const b = encodeCompact(opts.gateway, rows, dict, { maxBytes });
        // New points: the dictionary is on disk and on its way to the broker before the message that needs it.
        if (dict.changed) {
          dict.save();
          this.publishDictionary();
        }
        return b;
      };
    }
    this.telemetry = new Channel(opts.outbox.stream("telemetry"), this.topics.telemetry, cfg.batch.linger, cfg.backlog.max_inflight, cfg.backlog.rate, batches);
    this.channels = [
      new Channel(opts.outbox.stream("results"), this.topics.results, 0, cfg.backlog.max_inflight, 0, (rows) => encodeResult(opts.gateway, rows)),
      new Channel(opts.outbox.stream("events"), this.topics.events, 0, cfg.backlog.max_inflight, 0, batches),
      this.telemetry,
    ];
  }

  get topicNames(): TopicNames {
    return this.topics;
  }

  /** The data budget's forecast is over now (the recorder asks at each store: no stats snapshot built). */
  get budgetSaving(): boolean {
    return this.budget?.saving ?? false;
  }

  /**
   * Counts a PUBLISH against the monthly budget; over the forecast, live telemetry lingers
   * `budget.saving_linger` to travel in fewer, larger messages (said once each way).
   */
  private spent(topic: string, payloadBytes: number): void {
    const budget = this.budget;
    if (!budget) return;
    budget.record(publishBytes(topic, payloadBytes));
    const snap = budget.snapshot();
    if (snap.saving === this.budgetSaving_) return;
    this.budgetSaving_ = snap.saving;
    this.telemetry.linger = snap.saving ? Math.max(this.cfg.batch.linger, this.cfg.budget!.saving_linger) : this.cfg.batch.linger;
    const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
    if (snap.saving) this.log.warn({ budget: snap }, `data budget: ${mb(snap.forecast)} forecast for ${snap.month} over the ${mb(snap.limit)} budget; live readings now wait up to ${this.telemetry.linger / 1000} s to travel together`);
    else this.log.info({ budget: snap }, `data budget: forecast ${mb(snap.forecast)} back under ${mb(snap.limit)}; live readings travel as configured`);
    try {
      this.opts.onBudget?.(snap, snap.saving);
    } catch {
      // a listener's problem stays its own
    }
  }

  /** The point dictionary (compact encoding), retained; in order before the messages that use it. */
  private publishDictionary(): void {
    const client = this.client;
    if (!this.dictionary || this.state !== "online" || !client) return;
    const payload = this.dictionary.payload(this.opts.gateway);
    this.spent(this.topics.dict, Buffer.byteLength(payload));
    withTimeout(client.publishAsync(this.topics.dict, payload, { qos: 1, retain: true }), this.cfg.publish_timeout, pubackTimeout(this.cfg.publish_timeout)).catch(() => {});
  }

  /** Starts connecting; returns at once. An unreachable broker never stops the agent. */
  start(): void {
    if (this.state !== "stopped") return;
    this.stopping = false;
    // Built here so that unreadable TLS files surface now, as a config error.
    this.connect(this.clientOptions());
  }

  /**
   * Publishes a snapshot that is not worth keeping (gateway health): only while online, QoS 1,
   * not through the outbox; the next snapshot replaces a lost one. False when offline.
   */
  publishSnapshot(topic: string, payload: string): boolean {
    const client = this.client;
    if (this.state !== "online" || !client) return false;
    this.spent(topic, Buffer.byteLength(payload));
    withTimeout(client.publishAsync(topic, payload, { qos: 1 }), this.cfg.publish_timeout, pubackTimeout(this.cfg.publish_timeout)).catch(() => {});
    return true;
  }

  /** Tells the uplink that new rows were stored in a stream. */
  notify(stream: StreamName = "telemetry"): void {
    const channel = this.channel(stream);
    if (channel && channel.liveSince === null) channel.liveSince = this.now();
    this.pump();
  }

  /**
   * Rows a replay put back into a stream (outbox.replay): sent again like backlog — under its
   * budget, after live rows, oldest first. Offline, the next connection's backlog covers them.
   */
  replay(stream: StreamName, ranges: readonly SeqRange[]): void {
    const c = this.channel(stream);
    if (!c || ranges.length === 0) return;
    for (const [first, last] of ranges) c.clearSuspects(first, last);
    if (this.state === "online") c.addReplay(ranges);
    this.pump();
  }

  /** Rows put back into a stream below what was already sent (dead letters given back): send them. */
  resend(stream: StreamName, ranges: ReadonlyArray<readonly [number, number]>): void {
    const c = this.channel(stream);
    if (!c) return;
    for (const [first, last] of ranges) {
      c.clearSuspects(first, last);
      if (this.state === "online") c.addResend(first, last);
    }
    this.pump();
  }

  stats(): UplinkStats {
    return {
      state: this.state,
      broker: redactUrl(this.url),
      protocol: this.protocolVersion === 5 ? "5" : "3.1.1",
      maxPacketSize: this.maxPacketSize,
      ...this.counters,
      inflight: this.inflight.size,
      ...(this.budget ? { budget: this.budget.snapshot() } : {}),
      backlogRemaining: this.telemetry.backlogRemaining,
      lastError: this.lastError,
    };
  }

  /**
   * Sends what is pending (live readings and backlog) for up to `flushMs`, deletes what was
   * acknowledged, publishes the offline status and disconnects — all within about `flushMs`, so
   * a broker that takes messages and never answers cannot hold a stopping gateway.
   */
  async stop(flushMs = 5000): Promise<void> {
    if (this.state === "stopped") return;
    this.budget?.save();
    const deadline = this.now() + flushMs;
    const left = () => Math.max(200, deadline - this.now());
    this.stopping = true;
    for (const t of ["reconnectTimer", "lingerTimer", "rateTimer", "pauseTimer"] as const) this.clearTimer(t);
    const client = this.client;
    if (client && this.state === "online") {
      this.pump();
      await this.waitIdle(flushMs);
      try {
        const ms = Math.min(2000, left());
        await withTimeout(client.publishAsync(this.topics.status, this.statusPayload("offline"), { qos: 1, retain: true }), ms, pubackTimeout(ms));
      } catch {
        // The last will says offline anyway.
      }
    }
    this.generation++;
    this.client = null;
    this.state = "stopped";
    const endMs = Math.min(1000, left());
    if (client) await withTimeout(client.endAsync(), endMs, pubackTimeout(endMs)).catch(() => client.end(true));
    // PUBACKs that came while the connection ended count too; after this, no timer is left.
    this.flushAcks();
    this.inflight.clear();
    this.resolveIdle();
  }

  private channel(stream: StreamName): Channel | undefined {
    return this.channels.find((c) => c.store.name === stream);
  }

  // --- connection -------------------------------------------------------------------------

  private clientOptions(): IClientOptions {
    const cfg = this.cfg;
    const options: IClientOptions = {
      clientId: cfg.client_id ?? `edge-agent-${this.opts.site}-${this.opts.gateway}`,
      protocolVersion: this.protocolVersion,
      clean: true,
      keepalive: Math.round(cfg.keepalive / 1000),
      connectTimeout: cfg.connect_timeout,
      reconnectPeriod: 0,
      queueQoSZero: false,
      // MQTT.js otherwise pre-builds 65,536 two-byte Buffers for packet ids and lengths on its
      // first write: ~7 MB of heap kept for the life of the process, a tenth of a Pi's budget.
      writeCache: false,
      will: {
        topic: this.topics.status,
        payload: Buffer.from(this.statusPayload("offline")),
        qos: 1,
        retain: true,
      },
    };
    if (cfg.username !== undefined) options.username = cfg.username;
    if (cfg.password !== undefined) options.password = cfg.password;
    if (cfg.tls) {
      const read = (what: string, file: string | undefined) => {
        if (!file) return undefined;
        try {
          return readFileSync(file);
        } catch (err) {
          throw new UserError(`uplink.tls.${what}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
        }
      };
      options.ca = read("ca", cfg.tls.ca);
      options.cert = read("cert", cfg.tls.cert);
      options.key = read("key", cfg.tls.key);
      options.rejectUnauthorized = cfg.tls.reject_unauthorized;
    }
    return options;
  }

  private connect(options?: IClientOptions): void {
    const gen = ++this.generation;
    this.state = "connecting";
    if (!options) {
      try {
        options = this.clientOptions(); // TLS files read anew: a renewed certificate is picked up
      } catch (err) {
        // A file gone or unreadable since the start: say so and retry like an unreachable broker.
        this.noteError((err as Error).message);
        this.onClose();
        return;
      }
    }
    const client = connectMqtt(this.url, options);
    this.client = client;
    this.socketOpened = false;
    client.stream?.once("connect", () => {
      if (gen === this.generation) this.socketOpened = true;
    });
    client.on("connect", (connack: IConnackPacket) => {
      if (gen === this.generation) this.onConnect(client, connack);
    });
    client.on("error", (err) => {
      if (gen === this.generation) this.onClientError(client, err);
    });
    client.on("disconnect", (packet: IDisconnectPacket) => {
      if (gen !== this.generation) return;
      const blame = disconnectBlamesMessage(packet.reasonCode);
      if (blame) this.blameOldest(blame);
      else if (packet.reasonCode) this.noteError(`the broker disconnected (reason 0x${packet.reasonCode.toString(16)})`);
    });
    client.on("close", () => {
      if (gen === this.generation) this.onClose();
    });
  }

  private onClientError(client: MqttClient, err: Error & { code?: string | number }): void {
    if (this.cfg.protocol === "auto" && this.protocolVersion === 5 && refusesProtocolVersion(err)) {
      // An MQTT 3.1.1 broker (aedes, RabbitMQ 3.10, NATS): speak its version from now on.
      this.protocolVersion = 4;
      this.retryAtOnce = true;
      this.log.warn(
        `uplink: ${redactUrl(this.url)} does not speak MQTT 5; using 3.1.1 (a message the broker refuses cannot be seen over 3.1.1: keep uplink.batch.max_bytes under its limit)`,
      );
      return;
    }
    if (this.state === "online" && isProtocolRefusal(err)) {
      // The broker's answer to a message could not be read (Mosquitto 2.0 answers a message over
      // its message_size_limit with a code MQTT.js refuses): that message is the suspect, and the
      // connection is past saving.
      this.blameOldest(`the broker's answer could not be read (${err.message})`);
      this.dropConnection();
      return;
    }
    this.noteError(describeMqttError(err, this.url));
  }

  /** The oldest message not acknowledged is blamed when the connection closes. */
  private blameOldest(reason: string): void {
    if (this.suspectOnClose) return;
    const oldest = this.inflight.values().next();
    if (!oldest.done) this.suspectOnClose = { flight: oldest.value, reason };
    else this.noteError(reason);
  }

  private onConnect(client: MqttClient, connack: IConnackPacket): void {
    this.state = "online";
    this.counters.connects++;
    this.silentRefusals = 0;
    if (this.tentative311) {
      this.tentative311 = false;
      this.log.warn(
        `uplink: ${redactUrl(this.url)} hangs up on MQTT 5 and takes 3.1.1; using 3.1.1 (a message the broker refuses cannot be seen over 3.1.1: keep uplink.batch.max_bytes under its limit)`,
      );
    }
    this.proven = false;
    this.connectedAt = this.now();
    this.closing = false;
    this.probeId = null;
    this.probeWanted = false;
    this.sendIndex = 0;
    this.highestAcked = 0;
    this.suspectOnClose = null;
    this.lastError = null;
    this.lastLoggedError = null;
    const props = connack.properties;
    this.maxPacketSize = props?.maximumPacketSize ?? null;
    this.receiveMaximum = props?.receiveMaximum ?? null;
    this.log.info(
      { broker: redactUrl(this.url), protocol: this.protocolVersion === 5 ? "5" : "3.1.1", ...(this.maxPacketSize ? { maxPacketSize: this.maxPacketSize } : {}) },
      "connected to broker",
    );
    client.publishAsync(this.topics.status, this.statusPayload("online"), { qos: 1, retain: true }).then(
      () => this.markProven(),
      () => {},
    );
    // A broker without persistence may have lost the retained dictionary: it goes again first.
    this.publishDictionary();
    if (this.opts.onCommand) {
      const onCommand = this.opts.onCommand;
      const prefix = `${this.topics.commands}/`;
      client.on("message", (topic, payload) => {
        if (topic.startsWith(prefix)) onCommand(topic.slice(prefix.length), payload);
      });
      client.subscribeAsync(`${prefix}+`, { qos: 1 }).catch((err: unknown) => this.noteError(`cannot subscribe to commands: ${errorMessage(err)}`));
    }
    // Everything stored until now is backlog; what is stored from now on is live.
    for (const c of this.channels) c.reset(this.now());
    if (this.telemetry.backlogRemaining > 0) {
      this.log.info({ readings: this.outbox.depth }, "draining backlog");
    }
    this.pump();
  }

  /**
   * Ends the connection; nothing more is sent on it. MQTT.js fails every publish in flight at
   * once, and each of those would pump again on the ending client (failing at once too): without
   * this, the cursors would run through the whole backlog before the close event comes.
   */
  private dropConnection(): void {
    this.closing = true;
    this.client?.end(true);
  }

  private markProven(): void {
    if (this.proven) return;
    this.proven = true;
    this.backoff.reset();
  }

  /** A connection attempt closed before its CONNACK (see silentRefusals). */
  private noteSilentRefusal(): void {
    if (this.protocolVersion === 4 && this.tentative311) {
      this.protocolVersion = 5;
      this.tentative311 = false;
      this.silentRefusals = 0;
      return;
    }
    if (this.protocolVersion !== 5 || ++this.silentRefusals < 2) return;
    this.protocolVersion = 4;
    this.tentative311 = true;
    this.retryAtOnce = true;
  }

  private onClose(): void {
    const wasOnline = this.state === "online";
    if (this.cfg.protocol === "auto" && this.state === "connecting" && this.socketOpened) this.noteSilentRefusal();
    this.socketOpened = false;
    this.client?.end(true);
    this.client = null;
    let blamed = this.suspectOnClose;
    this.suspectOnClose = null;
    const oldest = this.inflight.values().next();
    if (!blamed && wasOnline && this.proven && !oldest.done) {
      // A connection that carried messages, gone while this one was the oldest in flight: maybe
      // the network, maybe this message (Mosquitto closes the connection after refusing one over
      // message_size_limit, and the reset can swallow its PUBACK). A weak suspicion: smaller
      // messages next time, and a dead letter only if a single reading keeps doing it.
      blamed = { flight: oldest.value, reason: "the broker closed the connection each time it was sent", weight: 3 };
    }
    if (blamed) this.refused(blamed.flight, { kind: "message", reason: blamed.reason, strikesToSetAside: blamed.weight ?? 2 });
    // Whatever was in flight is resent from the outbox by the next connection.
    this.inflight.clear();
    this.closing = false;
    this.state = "offline";
    this.resolveIdle();
    if (this.stopping) return;
    if (wasOnline && !blamed) this.log.warn({ broker: redactUrl(this.url) }, "lost the broker; buffering readings");
    const delay = this.retryAtOnce ? 0 : this.backoff.next();
    this.retryAtOnce = false;
    this.log.debug({ delay }, "reconnecting");
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.stopping) this.connect();
    }, delay);
  }

  private noteError(message: string): void {
    this.lastError = message;
    // One line per distinct problem, not one per retry.
    if (message !== this.lastLoggedError) {
      this.lastLoggedError = message;
      this.log.warn(`uplink: ${message}`);
    }
  }

  private statusPayload(state: "online" | "offline"): string {
    return JSON.stringify({ state, ts: this.now(), version: this.opts.version });
  }

  // --- sending ----------------------------------------------------------------------------

  /** Messages that may await their PUBACK at once: ours, within the broker's Receive Maximum (less room for status and health). */
  private maxInflight(): number {
    const broker = this.receiveMaximum;
    return broker ? Math.max(1, Math.min(this.cfg.max_inflight, broker - 2)) : this.cfg.max_inflight;
  }

  /** The most payload a message on `c` can carry under the broker's Maximum Packet Size, or null without one. */
  private brokerPayloadLimit(c: Channel): number | null {
    if (this.maxPacketSize === null) return null;
    // PUBLISH: fixed header (1 + up to 4 length bytes), topic (2 + its bytes), packet id 2, properties length 1.
    return this.maxPacketSize - (10 + Buffer.byteLength(c.topic));
  }

  /** Fills the in-flight window: per channel in priority order, resends, live rows, then backlog within its budget. */
  private pump(): void {
    const client = this.client;
    if (this.state !== "online" || !client || this.closing) return;
    const max = this.cfg.batch.max_readings;
    const now = this.now();
    let progress = true;
    while (progress && this.mayPublish()) {
      progress = false;
      for (const c of this.channels) {
        if (!this.mayPublish()) break;
        if (c.paused(now)) {
          this.armPump("pauseTimer", c.pausedUntil - now);
          continue;
        }
        if (this.sendResend(client, c, max) || this.sendLive(client, c, max) || this.sendBacklog(client, c, max)) progress = true;
      }
    }
    if (this.stopping) this.resolveIdle();
  }

  /** Sends the next part of a range to send again; false when there is none. */
  private sendResend(client: MqttClient, c: Channel, max: number): boolean {
    return c.resend.length > 0 && this.sendQueued(client, c, c.resend, max, "resend").progress;
  }

  /**
   * Sends the next message of the first range in `queue` (to resend, or replayed) and moves the
   * range on; a range whose rows are gone (dropped, acknowledged since) is done. `sent` is what
   * went, if anything did.
   */
  private sendQueued(client: MqttClient, c: Channel, queue: Array<[number, number]>, max: number, kind: Flight["kind"]): { progress: boolean; sent: { count: number; published: boolean } | null } {
    const range = queue[0]!;
    const { rows, maxBytes, suspect } = this.batchRows(c, range[0] - 1, range[1], max);
    if (suspect && !this.mayProbe()) return { progress: false, sent: null };
    if (rows.length === 0) {
      queue.shift();
      return { progress: true, sent: null };
    }
    const sent = this.send(client, c, rows, maxBytes, kind);
    range[0] = sent.last + 1;
    if (range[0] > range[1]) queue.shift();
    return { progress: true, sent };
  }

  /** A backlog message went: it takes a place among the backlog's in flight, and its rows from the rate. */
  private spendBacklog(c: Channel, sent: { count: number; published: boolean }): void {
    if (sent.published) c.backlogInflight++;
    if (c.rate > 0) c.tokens -= sent.count;
  }

  /** Sends one message of live rows if there are enough, or they waited long enough. */
  private sendLive(client: MqttClient, c: Channel, max: number): boolean {
    // Decide from the sequence numbers; read the rows only to send them (the pump runs on every
    // stored tick and every PUBACK, for every stream).
    const pending = c.store.lastSeq - c.liveCursor;
    if (pending <= 0) {
      c.liveSince = null;
      return false;
    }
    const waited = this.now() - (c.liveSince ?? this.now());
    if (pending < max && waited < c.linger && !this.stopping) {
      this.armPump("lingerTimer", c.linger - waited);
      return false;
    }
    const { rows, maxBytes, suspect } = this.batchRows(c, c.liveCursor, c.store.lastSeq, max);
    if (suspect && !this.mayProbe()) return false;
    if (rows.length === 0) {
      // Dropped by the quota (or set aside) before they could be sent.
      c.liveCursor = c.store.lastSeq;
      c.liveSince = null;
      return false;
    }
    const sent = this.send(client, c, rows, maxBytes, "live");
    c.liveCursor = sent.last;
    c.liveSince = sent.count < rows.length ? c.liveSince : null;
    return true;
  }

  /** Sends one backlog message (replayed rows first: the oldest) if the channel's budget allows; false when nothing was sent. */
  private sendBacklog(client: MqttClient, c: Channel, max: number): boolean {
    const replay = c.replay[0];
    if (!replay && c.backlogCursor >= c.backlogEnd) return false;
    if (c.backlogInflight >= c.backlogInflightMax) return false;
    let limit = max;
    if (c.rate > 0) {
      const t = this.now();
      c.tokens = Math.min(c.rate, c.tokens + ((t - c.tokensAt) * c.rate) / 1000);
      c.tokensAt = t;
      if (c.tokens < 1) {
        this.armPump("rateTimer", Math.ceil(((1 - c.tokens) * 1000) / c.rate));
        return false;
      }
      limit = Math.max(1, Math.min(max, Math.floor(c.tokens)));
    }
    if (replay && (replay[0] <= c.backlogCursor || c.backlogCursor >= c.backlogEnd)) {
      const { progress, sent } = this.sendQueued(client, c, c.replay, limit, "backlog");
      if (sent) this.spendBacklog(c, sent);
      return progress;
    }
    const { rows, maxBytes, suspect } = this.batchRows(c, c.backlogCursor, c.backlogEnd, limit);
    if (suspect && !this.mayProbe()) return false;
    if (rows.length === 0) {
      c.backlogCursor = c.backlogEnd;
      if (c === this.telemetry) this.log.info("backlog drained");
      return true;
    }
    const sent = this.send(client, c, rows, maxBytes, "backlog");
    c.backlogCursor = sent.last;
    this.spendBacklog(c, sent);
    return true;
  }

  /**
   * The rows of the next message after `after` (up to `upTo`) and its byte budget: a suspect
   * range is sent on its own, in the smaller parts its strikes ask for.
   */
  private batchRows(c: Channel, after: number, upTo: number, max: number): { rows: StoredReading[]; maxBytes: number; suspect: boolean } {
    let maxBytes = Math.min(this.cfg.batch.max_bytes, c.learnedMaxBytes);
    const hard = this.brokerPayloadLimit(c);
    if (hard !== null) maxBytes = Math.min(maxBytes, hard);
    let rows = c.store.readAfter(after, max, upTo);
    if (rows.length === 0 || c.suspects.length === 0) return { rows, maxBytes, suspect: false };
    const head = rows[0]!.seq;
    const suspect = c.suspectAt(head);
    if (suspect) {
      rows = rows.filter((r) => r.seq <= suspect.last).slice(0, suspect.maxCount);
      return { rows, maxBytes: Math.min(maxBytes, suspect.maxBytes), suspect: true };
    }
    const next = Math.min(...c.suspects.filter((s) => s.first > head).map((s) => s.first));
    if (Number.isFinite(next)) rows = rows.filter((r) => r.seq < next);
    return { rows, maxBytes, suspect: false };
  }

  /** Room in the window, and no suspect message alone on the line (nor one waiting for the line to empty). */
  private mayPublish(): boolean {
    if (this.probeId !== null || (this.probeWanted && this.inflight.size > 0)) return false;
    return this.inflight.size < this.maxInflight();
  }

  /** A suspect message may go only alone: until the messages in flight are settled, nothing new goes. */
  private mayProbe(): boolean {
    if (this.inflight.size === 0) return true;
    this.probeWanted = true;
    return false;
  }

  /** Encodes and publishes a prefix of `rows`; returns how far it went. */
  private send(client: MqttClient, c: Channel, rows: StoredReading[], maxBytes: number, kind: Flight["kind"]): { last: number; count: number; published: boolean } {
    const batch = c.encode(rows, maxBytes)!;
    const bytes = Buffer.byteLength(batch.payload);
    const hard = this.brokerPayloadLimit(c);
    if (hard !== null && bytes > hard) {
      // Even alone it is larger than the broker takes: it can never go as it is.
      this.counters.refused++;
      this.setAside(c, batch.first, batch.last, `larger than the broker's maximum packet size (${bytes} bytes of payload, at most ${hard})`);
      return { last: batch.last, count: batch.count, published: false };
    }
    const id = ++this.nextId;
    const gen = this.generation;
    const flight: Flight = { channel: c, first: batch.first, last: batch.last, count: batch.count, bytes, index: ++this.sendIndex, kind };
    this.inflight.set(id, flight);
    if (this.probeWanted || c.suspectAt(batch.first)) {
      this.probeId = id;
      this.probeWanted = false;
    }
    this.spent(c.topic, bytes);
    withTimeout(client.publishAsync(c.topic, batch.payload, { qos: 1 }), this.cfg.publish_timeout, pubackTimeout(this.cfg.publish_timeout))
      .then(
        () => {
          // A PUBACK means the broker has it, even if that connection has since gone.
          c.pendingAcks.push([batch.first, batch.last]);
          c.clearSuspects(batch.first, batch.last);
          if (c === this.telemetry) {
            this.counters.messagesAcked++;
            this.counters.readingsAcked += batch.count;
            this.counters.payloadBytes += bytes;
          } else this.counters.otherAcked += batch.count;
          this.scheduleAckFlush();
          if (gen !== this.generation) return;
          this.highestAcked = Math.max(this.highestAcked, flight.index);
          c.pauses = 0;
          this.relax(c);
          this.markProven();
        },
        (err: unknown) => {
          if (gen !== this.generation) return;
          const code = pubackReason(err);
          if (code !== null) {
            // The broker said no to this message; the connection is fine.
            this.refused(flight, classifyPuback(code));
            return;
          }
          if (!(err instanceof PubackTimeout)) {
            // The connection went (and took every message in flight with it): the close handler
            // says so once, and the next connection sends these rows again from the outbox.
            return;
          }
          if (this.highestAcked > flight.index) {
            this.refused(flight, { kind: "message", reason: "no PUBACK while later messages were acknowledged (the broker dropped it)", strikesToSetAside: 2 });
            return;
          }
          this.counters.publishFailures++;
          this.noteError(`publish of ${c.store.name} seq ${batch.first}..${batch.last} failed: ${errorMessage(err)}; reconnecting`);
          // Resend from the outbox on a fresh connection rather than guess what the broker has.
          this.dropConnection();
        },
      )
      .finally(() => {
        if (gen !== this.generation) return;
        if (this.inflight.delete(id) && kind === "backlog") c.backlogInflight--;
        if (this.probeId === id) this.probeId = null;
        this.pump();
        if (this.inflight.size === 0) this.resolveIdle();
      });
    return { last: batch.last, count: batch.count, published: true };
  }

  /**
   * A message the broker refused (or is blamed for): retried later unchanged, split, or — one
   * reading refused for certain, or suspected twice — set aside as a dead letter.
   */
  private refused(f: Flight, refusal: Refusal): void {
    const c = f.channel;
    this.counters.refused++;
    const what = `${c.store.name} seq ${f.first}..${f.last}`;
    if (refusal.kind === "retry-later") {
      c.addResend(f.first, f.last);
      c.pauses++;
      const wait = Math.min(this.cfg.reconnect.max, this.cfg.reconnect.min * 2 ** Math.min(c.pauses, 20));
      c.pausedUntil = this.now() + wait;
      this.noteError(`${what}: ${refusal.reason}; kept, and tried again in ${Math.round(wait / 1000)} s`);
      return;
    }
    // Whatever the broker objects to, smaller messages find it faster and are more likely to pass.
    // A weak suspicion (the connection just closed) teaches the whole stream only when the
    // connection died young, as it does when each large message kills it; a broker restart does not.
    if (refusal.strikesToSetAside < 3 || this.now() - this.connectedAt < SHORT_LIVED_MS) {
      c.learnedMaxBytes = Math.max(1, Math.min(c.learnedMaxBytes, Math.floor(f.bytes / 2)));
      c.learnedAt = this.now();
      c.acksSinceLearned = 0;
    }
    const strikes = (c.suspectAt(f.first)?.strikes ?? 0) + 1;
    if (f.count === 1 && strikes >= refusal.strikesToSetAside) {
      this.setAside(c, f.first, f.last, refusal.reason);
      return;
    }
    c.clearSuspects(f.first, f.last);
    if (c.suspects.length >= MAX_SUSPECTS) c.suspects.shift();
    c.suspects.push({ first: f.first, last: f.last, strikes, maxCount: Math.max(1, Math.ceil(f.count / 2)), maxBytes: Math.max(1, Math.floor(f.bytes / 2)) });
    if (this.state === "online") c.addResend(f.first, f.last);
    this.log.warn(`uplink: ${what}: ${refusal.reason}; sending it again in smaller parts`);
  }

  /** After a long enough quiet spell, tries messages twice as large again (up to batch.max_bytes). */
  private relax(c: Channel): void {
    if (!Number.isFinite(c.learnedMaxBytes)) return;
    if (++c.acksSinceLearned < RELAX_AFTER_ACKS || this.now() - c.learnedAt < RELAX_AFTER_MS) return;
    c.learnedMaxBytes *= 2;
    c.learnedAt = this.now();
    c.acksSinceLearned = 0;
    if (c.learnedMaxBytes >= this.cfg.batch.max_bytes) c.learnedMaxBytes = Number.POSITIVE_INFINITY;
  }

  /** Moves rows to the dead letters: kept and counted, out of the way of what follows. */
  private setAside(c: Channel, first: number, last: number, reason: string): void {
    c.clearSuspects(first, last);
    try {
      const n = this.outbox.deadLetter(c.store.name, first, last, reason);
      this.counters.deadLettered += n;
      this.log.error(`uplink: ${c.store.name} seq ${first}..${last} set aside as a dead letter: ${reason} (edge-agent buffer dead-letters lists, resends or purges them)`);
    } catch (err) {
      // The rows stay where they are and will be tried again: never a loss.
      this.log.error({ err: errorMessage(err) }, `could not set aside ${c.store.name} seq ${first}..${last}`);
    }
  }

  private scheduleAckFlush(): void {
    if (this.channels.reduce((n, c) => n + c.pendingAcks.length, 0) >= ACK_FLUSH_RANGES) {
      this.flushAcks();
      return;
    }
    this.ackTimer ??= setTimeout(() => {
      this.ackTimer = null;
      this.flushAcks();
    }, ACK_FLUSH_MS);
  }

  private flushAcks(): void {
    this.clearTimer("ackTimer");
    for (const c of this.channels) {
      if (c.pendingAcks.length === 0) continue;
      const ranges = c.pendingAcks.splice(0);
      try {
        c.store.ack(ranges);
      } catch (err) {
        // The rows stay and are sent again: a duplicate, never a loss.
        this.log.error({ err: errorMessage(err) }, `could not delete acknowledged ${c.store.name}`);
      }
    }
  }

  /** Pumps again in `ms` (a batch lingering for company, the backlog's rate, a paused stream), unless already due. */
  private armPump(name: "lingerTimer" | "rateTimer" | "pauseTimer", ms: number): void {
    if (this[name]) return;
    this[name] = setTimeout(() => {
      this[name] = null;
      this.pump();
    }, Math.max(1, ms));
  }

  private clearTimer(name: TimerName): void {
    const t = this[name];
    if (t) clearTimeout(t);
    this[name] = null;
  }

  private isIdle(): boolean {
    if (this.state !== "online") return true;
    if (this.inflight.size > 0) return false;
    const now = this.now();
    return this.channels.every((c) => c.idle(now));
  }

  private waitIdle(ms: number): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.idleWaiters.push(done);
    });
  }

  private resolveIdle(): void {
    if (this.idleWaiters.length === 0 || !this.isIdle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}

/** No PUBACK in time: told apart from a refusal the broker stated. */
class PubackTimeout extends Error {}
const pubackTimeout = (ms: number) => () => new PubackTimeout(`no PUBACK within ${ms} ms`);

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Removes credentials from a URL before it is shown or logged. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, "//[redacted]@");
}

/** One line a technician can act on, for the errors a broker connection typically meets. */
export function describeMqttError(err: Error & { code?: string | number }, url: string): string {
  const where = redactUrl(url);
  const code = err.code;
  const msg = err.message;
  if (code === "ECONNREFUSED") return `${where}: connection refused (is the broker running and the port right?)`;
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return `${where}: cannot resolve the host name`;
  if (code === "ETIMEDOUT" || code === "EHOSTUNREACH" || code === "ENETUNREACH") return `${where}: broker unreachable (${code})`;
  const tlsUrl = /^(mqtts|tls|wss):/.test(url);
  if (code === "ECONNRESET" && tlsUrl) {
    return `${where}: TLS handshake failed: connection reset (is that port a TLS listener? plain MQTT uses mqtt://)`;
  }
  if (code === "ECONNRESET") return `${where}: connection reset by the broker`;
  // CONNACK refusals: 4/5 in MQTT 3.1.1, 134/135 in MQTT 5.
  if (code === 4 || code === 134) return `${where}: broker refused the credentials (bad username or password; check uplink.username and uplink.password)`;
  if (code === 5 || code === 135) return `${where}: broker says not authorized (check uplink.username, uplink.password and the broker's ACL)`;
  if (code === 2 || code === 133) return `${where}: broker rejected the client id (check uplink.client_id)`;
  if (typeof code === "number") return `${where}: broker refused the connection: ${msg}`;
  if (typeof code === "string" && /CERT|SSL|TLS|EPROTO|SELF_SIGNED|UNABLE_TO_VERIFY/i.test(code)) {
    return `${where}: TLS handshake failed: ${msg} (check uplink.tls.ca, cert and key, and the broker's name in the URL)`;
  }
  if (/connack timeout|connect timeout/i.test(msg)) return `${where}: no answer to CONNECT (wrong port, or TLS expected?)`;
  return `${where}: ${msg}`;
}
