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
import type { Outbox } from "../store/outbox.js";
import { Backoff } from "./backoff.js";
import { encodeTelemetry } from "./codec.js";
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
  now?: () => number;
}

interface Inflight {
  first: number;
  last: number;
  kind: "live" | "backlog";
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
  private readonly pendingAcks: Array<[number, number]> = [];
  private readonly inflight = new Map<number, Inflight>();
  private nextId = 0;
  private backlogInflight = 0;
  private idleWaiters: Array<() => void> = [];

  /** Readings with seq <= liveCursor have been handed to this connection (live part). */
  private liveCursor = 0;
  /** Backlog: seq in (backlogCursor, backlogEnd] still to send on this connection. */
  private backlogCursor = 0;
  private backlogEnd = 0;
  private liveSince: number | null = null;
  private tokens = 0;
  private tokensAt = 0;
  private lastLoggedError: string | null = null;

  private readonly counters = {
    connects: 0,
    messagesAcked: 0,
    readingsAcked: 0,
    publishFailures: 0,
    payloadBytes: 0,
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
  }

  get topicNames(): TopicNames {
    return this.topics;
  }

  /** Starts connecting; returns at once. An unreachable broker never stops the agent. */
  start(): void {
    if (this.state !== "stopped") return;
    this.stopping = false;
    this.clientOptions(); // Surface unreadable TLS files now, as a config error.
    this.connect();
  }

  /** Tells the uplink that new readings were stored. */
  notify(): void {
    if (this.liveSince === null) this.liveSince = this.now();
    this.pump();
  }

  stats(): UplinkStats {
    return {
      state: this.state,
      broker: redactUrl(this.url),
      ...this.counters,
      inflight: this.inflight.size,
      backlogRemaining: Math.max(0, this.backlogEnd - this.backlogCursor),
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
    this.backlogInflight = 0;
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

  private connect(): void {
    const gen = ++this.generation;
    this.state = "connecting";
    const client = mqtt.connect(this.url, this.clientOptions());
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
    // Everything stored until now is backlog; what is stored from now on is live.
    const last = this.outbox.lastSeq;
    const first = this.outbox.firstSeq();
    this.liveCursor = last;
    this.backlogEnd = last;
    this.backlogCursor = first === null ? last : first - 1;
    this.tokens = this.cfg.backlog.rate;
    this.tokensAt = this.now();
    if (this.backlogEnd > this.backlogCursor) {
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
    this.backlogInflight = 0;
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

  /** Fills the in-flight window: live readings first, then the backlog within its budget. */
  private pump(): void {
    const client = this.client;
    if (this.state !== "online" || !client) return;
    const max = this.cfg.batch.max_readings;
    while (this.inflight.size < this.cfg.max_inflight) {
      const live = this.outbox.readAfter(this.liveCursor, max);
      if (live.length > 0) {
        const waited = this.now() - (this.liveSince ?? this.now());
        if (live.length >= max || waited >= this.cfg.batch.linger || this.stopping) {
          this.send(client, live, "live");
          continue;
        }
        this.armLinger(this.cfg.batch.linger - waited);
      } else {
        this.liveSince = null;
      }
      if (!this.sendBacklog(client, max)) break;
    }
    if (this.stopping) this.resolveIdle();
  }

  /** Sends one backlog message if the budget allows; false when nothing was sent. */
  private sendBacklog(client: MqttClient, max: number): boolean {
    if (this.backlogCursor >= this.backlogEnd) return false;
    if (this.backlogInflight >= this.cfg.backlog.max_inflight) return false;
    let limit = max;
    const rate = this.cfg.backlog.rate;
    if (rate > 0) {
      const t = this.now();
      this.tokens = Math.min(rate, this.tokens + ((t - this.tokensAt) * rate) / 1000);
      this.tokensAt = t;
      if (this.tokens < 1) {
        this.armRate(Math.ceil(((1 - this.tokens) * 1000) / rate));
        return false;
      }
      limit = Math.max(1, Math.min(max, Math.floor(this.tokens)));
    }
    const rows = this.outbox.readAfter(this.backlogCursor, limit, this.backlogEnd);
    if (rows.length === 0) {
      this.backlogCursor = this.backlogEnd;
      this.log.info("backlog drained");
      return true;
    }
    const sent = this.send(client, rows, "backlog");
    if (rate > 0) this.tokens -= sent;
    return true;
  }

  private send(client: MqttClient, rows: StoredReading[], kind: Inflight["kind"]): number {
    const batch = encodeTelemetry(this.opts.gateway, rows, this.cfg.batch.max_bytes);
    if (!batch) return 0;
    if (kind === "live") {
      this.liveCursor = batch.last;
      this.liveSince = batch.count < rows.length ? this.liveSince : null;
    } else {
      this.backlogCursor = batch.last;
      this.backlogInflight++;
    }
    const id = ++this.nextId;
    const gen = this.generation;
    this.inflight.set(id, { first: batch.first, last: batch.last, kind });
    const bytes = batch.payload.length;
    withTimeout(client.publishAsync(this.topics.telemetry, batch.payload, { qos: 1 }), this.cfg.publish_timeout)
      .then(
        () => {
          // A PUBACK means the broker has it, even if that connection has since gone.
          this.pendingAcks.push([batch.first, batch.last]);
          this.counters.messagesAcked++;
          this.counters.readingsAcked += batch.count;
          this.counters.payloadBytes += bytes;
          this.scheduleAckFlush();
        },
        (err: unknown) => {
          if (gen !== this.generation) return;
          this.counters.publishFailures++;
          this.noteError(`publish of seq ${batch.first}..${batch.last} failed: ${errorMessage(err)}; reconnecting`);
          // Resend from the outbox on a fresh connection rather than guess what the broker has.
          this.client?.end(true);
        },
      )
      .finally(() => {
        if (gen !== this.generation) return;
        if (this.inflight.delete(id) && kind === "backlog") this.backlogInflight--;
        this.pump();
        if (this.inflight.size === 0) this.resolveIdle();
      });
    return batch.count;
  }

  private scheduleAckFlush(): void {
    if (this.pendingAcks.length >= ACK_FLUSH_RANGES) {
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
    if (this.pendingAcks.length === 0) return;
    const ranges = this.pendingAcks.splice(0);
    try {
      this.outbox.ack(ranges);
    } catch (err) {
      // The rows stay and are sent again: a duplicate, never a loss.
      this.log.error({ err: errorMessage(err) }, "could not delete acknowledged readings");
    }
  }

  private armLinger(ms: number): void {
    if (this.lingerTimer) return;
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = null;
      this.pump();
    }, Math.max(1, ms));
  }

  private armRate(ms: number): void {
    if (this.rateTimer) return;
    this.rateTimer = setTimeout(() => {
      this.rateTimer = null;
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
    return this.backlogCursor >= this.backlogEnd && this.liveCursor >= this.outbox.lastSeq;
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
