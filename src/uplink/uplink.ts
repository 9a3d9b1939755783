/**
 * The MQTT uplink: reads the outbox, sends telemetry at QoS 1, and deletes rows only when the
 * broker's PUBACK arrived. MQTT.js's own offline queue and reconnect are not used (pitfalls.md):
 * every connection is a fresh client, the outbox is the only queue, and reconnects follow our
 * capped, jittered backoff.
 *
 * After a reconnect, readings stored before the connection (the backlog) are drained in sequence
 * order under a budget, while readings stored since go first (live).
 */
import { readFileSync } from "node:fs";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import type { UplinkConfig } from "../config/schema.js";
import { UserError } from "../model/errors.js";
import type { StoredReading } from "../model/reading.js";
import type { Logger } from "../ops/logger.js";
import type { Outbox, StreamName, StreamStore } from "../store/outbox.js";
import { Backoff } from "./backoff.js";
import { type EncodedBatch, encodeResult, encodeTelemetry } from "./codec.js";
import { gatewayTopics, type TopicNames } from "./topics.js";

export type UplinkState = "stopped" | "connecting" | "online" | "offline";

export interface UplinkStats {
  state: UplinkState;
  broker: string;
  connects: number;
  /** Telemetry messages acknowledged by the broker. */
  messagesAcked: number;
  /** Readings acknowledged by the broker (a reading sent twice counts twice). */
  readingsAcked: number;
  publishFailures: number;
  inflight: number;
  backlogRemaining: number;
  lastError: string | null;
  /** Bytes of telemetry payload acknowledged. */
  payloadBytes: number;
  /** Events and command results acknowledged. */
  otherAcked: number;
}

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
}

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

  constructor(
    readonly store: StreamStore,
    readonly topic: string,
    /** Wait this long to fill a message with live rows (0: send at once). */
    readonly linger: number,
    /** Backlog budget: messages in flight, and rows per second (0 = no rate limit). */
    readonly backlogInflightMax: number,
    readonly rate: number,
    readonly encode: (rows: StoredReading[]) => EncodedBatch | null,
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
  }

  get backlogRemaining(): number {
    return Math.max(0, this.backlogEnd - this.backlogCursor);
  }

  idle(): boolean {
    return this.backlogCursor >= this.backlogEnd && this.liveCursor >= this.store.lastSeq;
  }
}

/** How long to collect acknowledgements before deleting their rows in one transaction. */
const ACK_FLUSH_MS = 25;
const ACK_FLUSH_RANGES = 64;

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
  private ackTimer: NodeJS.Timeout | null = null;
  /** Packet ids of the batches published and not yet acknowledged. */
  private readonly inflight = new Set<number>();
  private nextId = 0;
  private idleWaiters: Array<() => void> = [];
  /** Events and command results first (small, and someone waits for them), then telemetry. */
  private readonly channels: Channel[];
  private readonly telemetry: Channel;
  private lastLoggedError: string | null = null;

  private readonly counters = {
    connects: 0,
    messagesAcked: 0,
    readingsAcked: 0,
    publishFailures: 0,
    payloadBytes: 0,
    /** Events and command results acknowledged. */
    otherAcked: 0,
  };
  private lastError: string | null = null;

  constructor(private readonly opts: UplinkOptions) {
    this.cfg = opts.config;
    this.url = opts.url ?? opts.config.url;
    this.topics = gatewayTopics(this.cfg.root, opts.site, opts.gateway);
    this.backoff = new Backoff(this.cfg.reconnect.min, this.cfg.reconnect.max);
    this.now = opts.now ?? Date.now;
    this.log = opts.log.child({ part: "uplink" });
    this.outbox = opts.outbox;
    const cfg = this.cfg;
    const batches = (rows: StoredReading[]) => encodeTelemetry(opts.gateway, rows, cfg.batch.max_bytes);
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
    withTimeout(client.publishAsync(topic, payload, { qos: 1 }), this.cfg.publish_timeout).catch(() => {});
    return true;
  }

  /** Tells the uplink that new rows were stored in a stream. */
  notify(stream: StreamName = "telemetry"): void {
    const channel = this.channels.find((c) => c.store.name === stream);
    if (channel && channel.liveSince === null) channel.liveSince = this.now();
    this.pump();
  }

  stats(): UplinkStats {
    return {
      state: this.state,
      broker: redactUrl(this.url),
      ...this.counters,
      inflight: this.inflight.size,
      backlogRemaining: this.telemetry.backlogRemaining,
      lastError: this.lastError,
    };
  }

  /**
   * Sends what is pending (live readings and backlog) for up to `flushMs`, deletes what was
   * acknowledged, publishes the offline status and disconnects.
   */
  async stop(flushMs = 5000): Promise<void> {
    if (this.state === "stopped") return;
    this.stopping = true;
    this.clearTimer("reconnectTimer");
    this.clearTimer("lingerTimer");
    this.clearTimer("rateTimer");
    const client = this.client;
    if (client && this.state === "online") {
      this.pump();
      await this.waitIdle(flushMs);
      try {
        await withTimeout(
          client.publishAsync(this.topics.status, this.statusPayload("offline"), { qos: 1, retain: true }),
          Math.min(2000, flushMs),
        );
      } catch {
        // The last will says offline anyway.
      }
    }
    this.flushAcks();
    this.generation++;
    this.client = null;
    this.state = "stopped";
    if (client) await withTimeout(client.endAsync(), 2000).catch(() => client.end(true));
    this.inflight.clear();
    this.resolveIdle();
  }

  // --- connection -------------------------------------------------------------------------

  private clientOptions(): IClientOptions {
    const cfg = this.cfg;
    const options: IClientOptions = {
      clientId: cfg.client_id ?? `edge-agent-${this.opts.site}-${this.opts.gateway}`,
      protocolVersion: cfg.protocol === "5" ? 5 : 4,
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
    const client = mqtt.connect(this.url, options);
    this.client = client;
    client.on("connect", () => {
      if (gen === this.generation) this.onConnect(client);
    });
    client.on("error", (err) => {
      if (gen === this.generation) this.noteError(describeMqttError(err, this.url));
    });
    client.on("close", () => {
      if (gen === this.generation) this.onClose();
    });
  }

  private onConnect(client: MqttClient): void {
    this.state = "online";
    this.counters.connects++;
    this.backoff.reset();
    this.lastError = null;
    this.lastLoggedError = null;
    this.log.info({ broker: redactUrl(this.url) }, "connected to broker");
    client.publishAsync(this.topics.status, this.statusPayload("online"), { qos: 1, retain: true }).catch(() => {});
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

  private onClose(): void {
    const wasOnline = this.state === "online";
    this.client?.end(true);
    this.client = null;
    // Whatever was in flight is resent from the outbox by the next connection.
    this.inflight.clear();
    this.resolveIdle();
    if (this.stopping) return;
    this.state = "offline";
    if (wasOnline) this.log.warn({ broker: redactUrl(this.url) }, "lost the broker; buffering readings");
    const delay = this.backoff.next();
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

  /** Fills the in-flight window: per channel in priority order, live rows first, then backlog within its budget. */
  private pump(): void {
    const client = this.client;
    if (this.state !== "online" || !client) return;
    const max = this.cfg.batch.max_readings;
    let progress = true;
    while (progress && this.inflight.size < this.cfg.max_inflight) {
      progress = false;
      for (const c of this.channels) {
        if (this.inflight.size >= this.cfg.max_inflight) break;
        if (this.sendLive(client, c, max) || this.sendBacklog(client, c, max)) progress = true;
      }
    }
    if (this.stopping) this.resolveIdle();
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
    const live = c.store.readAfter(c.liveCursor, max);
    if (live.length === 0) {
      // Dropped by the quota before they could be sent.
      c.liveCursor = c.store.lastSeq;
      c.liveSince = null;
      return false;
    }
    this.send(client, c, live, "live");
    return true;
  }

  /** Sends one backlog message if the channel's budget allows; false when nothing was sent. */
  private sendBacklog(client: MqttClient, c: Channel, max: number): boolean {
    if (c.backlogCursor >= c.backlogEnd) return false;
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
    const rows = c.store.readAfter(c.backlogCursor, limit, c.backlogEnd);
    if (rows.length === 0) {
      c.backlogCursor = c.backlogEnd;
      if (c === this.telemetry) this.log.info("backlog drained");
      return true;
    }
    const sent = this.send(client, c, rows, "backlog");
    if (c.rate > 0) c.tokens -= sent;
    return true;
  }

  private send(client: MqttClient, c: Channel, rows: StoredReading[], kind: "live" | "backlog"): number {
    const batch = c.encode(rows);
    if (!batch) return 0;
    if (kind === "live") {
      c.liveCursor = batch.last;
      c.liveSince = batch.count < rows.length ? c.liveSince : null;
    } else {
      c.backlogCursor = batch.last;
      c.backlogInflight++;
    }
    const id = ++this.nextId;
    const gen = this.generation;
    this.inflight.add(id);
    const bytes = batch.payload.length;
    withTimeout(client.publishAsync(c.topic, batch.payload, { qos: 1 }), this.cfg.publish_timeout)
      .then(
        () => {
          // A PUBACK means the broker has it, even if that connection has since gone.
          c.pendingAcks.push([batch.first, batch.last]);
          if (c === this.telemetry) {
            this.counters.messagesAcked++;
            this.counters.readingsAcked += batch.count;
            this.counters.payloadBytes += bytes;
          } else this.counters.otherAcked += batch.count;
          this.scheduleAckFlush();
        },
        (err: unknown) => {
          if (gen !== this.generation) return;
          this.counters.publishFailures++;
          this.noteError(`publish of ${c.store.name} seq ${batch.first}..${batch.last} failed: ${errorMessage(err)}; reconnecting`);
          // Resend from the outbox on a fresh connection rather than guess what the broker has.
          this.client?.end(true);
        },
      )
      .finally(() => {
        if (gen !== this.generation) return;
        if (this.inflight.delete(id) && kind === "backlog") c.backlogInflight--;
        this.pump();
        if (this.inflight.size === 0) this.resolveIdle();
      });
    return batch.count;
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

  /** Pumps again in `ms` (a batch lingering for company, or the backlog's rate), unless already due. */
  private armPump(name: "lingerTimer" | "rateTimer", ms: number): void {
    if (this[name]) return;
    this[name] = setTimeout(() => {
      this[name] = null;
      this.pump();
    }, Math.max(1, ms));
  }

  private clearTimer(name: "reconnectTimer" | "lingerTimer" | "rateTimer" | "ackTimer"): void {
    const t = this[name];
    if (t) clearTimeout(t);
    this[name] = null;
  }

  private isIdle(): boolean {
    if (this.state !== "online") return true;
    if (this.inflight.size > 0) return false;
    return this.channels.every((c) => c.idle());
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

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no PUBACK within ${ms} ms`)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

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
