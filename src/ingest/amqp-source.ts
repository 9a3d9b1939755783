/**
 * The ingest's RabbitMQ side (docs/ingest.md "RabbitMQ"): gateways publish MQTT to any node of a
 * cluster; the MQTT plugin puts each message on the `amq.topic` exchange with the topic's `/`
 * turned into `.`; a durable **quorum** queue (replicated on the cluster's nodes) is bound there
 * for everything under the root, and every ingest process consumes it over AMQP with manual acks —
 * competing consumers, a message acknowledged only after its batch committed. A consumer that
 * dies leaves its unacknowledged messages to the others (redelivered, harmless thanks to the
 * ledger); a node that dies hands the queue's leadership to another replica.
 *
 * Commands to gateways (replays) go back through `amq.topic`, where the MQTT plugin delivers them
 * to the gateway's subscription.
 */
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from "amqplib";
import type { Logger } from "../model/logger.js";
import type { Incoming } from "./message.js";

export interface AmqpSourceOptions {
  /** One or more amqp:// URLs (nodes of a cluster, tried in turn). */
  urls: string[];
  root: string;
  queue: string;
  /** Unacknowledged messages a process holds at once (also its largest batch in messages). */
  prefetch: number;
  log: Logger;
  onMessage: (m: Incoming) => Promise<void>;
}

const LEAVES = ["telemetry", "events", "result", "status", "dict"];

/**
 * MQTT topic → AMQP routing key as RabbitMQ's MQTT plugin (3.10) maps it: `/` becomes `.`, and a
 * `.` stays a `.` (so `edge/site-a/gw.2/telemetry` is `edge.site-a.gw.2.telemetry`). The other
 * way, every `.` becomes `/`: a command to a gateway whose id holds a dot cannot reach it.
 */
export function routingKeyOf(topic: string): string {
  return topic.replace(/\//g, ".");
}

/**
 * The topic a routing key came from, or null for one the ingest does not read (commands, health).
 * A dot inside the site or gateway id makes the key ambiguous (`edge.a.b.c.telemetry`: site `a.b`
 * or gateway `b.c`?). The payload could say, but a payload is not to be trusted with where it is
 * stored: such a key keeps its ambiguous form and the message is quarantined (message.ts: AMBIGUOUS_DOTS).
 */
export function topicOf(root: string, key: string): string | null {
  if (!key.startsWith(`${root}.`)) return null;
  const rest = key.slice(root.length + 1);
  const dot = rest.lastIndexOf(".");
  const leaf = rest.slice(dot + 1);
  if (dot < 0 || !LEAVES.includes(leaf)) return null;
  const parts = rest.slice(0, dot).split(".");
  if (parts.length === 2) return `${root}/${parts[0]}/${parts[1]}/${leaf}`;
  return `${root}/${parts.join(".")}/${leaf}`;
}

export class AmqpSource {
  private conn: ChannelModel | null = null;
  private channel: Channel | null = null;
  private stopped = false;
  private next = 0;
  private retry: NodeJS.Timeout | null = null;

  constructor(private readonly opts: AmqpSourceOptions) {}

  async start(): Promise<void> {
    await this.connect(true);
  }

  private async connect(first: boolean): Promise<void> {
    const o = this.opts;
    let lastErr: Error | null = null;
    for (let i = 0; i < o.urls.length; i++) {
      const url = o.urls[(this.next + i) % o.urls.length]!;
      let conn: ChannelModel | null = null;
      try {
        conn = await amqp.connect(url, { timeout: 10_000 });
        conn.on("error", (err: Error) => o.log.warn({ err: err.message }, `AMQP ${url}: ${err.message}`));
        const ch = await conn.createChannel();
        // A channel the server closes (consumer_timeout while the database was down, a queue
        // deleted) takes its connection with it, so the close handler below reconnects.
        ch.on("error", (err: Error) => o.log.warn({ err: err.message }, `AMQP channel on ${url}: ${err.message}`));
        ch.on("close", () => {
          if (!this.stopped) conn?.close().catch(() => undefined);
        });
        await ch.assertQueue(o.queue, { durable: true, arguments: { "x-queue-type": "quorum" } });
        // Everything under the root: a per-level binding (root.*.*.telemetry) would leave a gateway
        // whose id holds a dot unrouted — lost without a trace; this way it is read or quarantined.
        await ch.bindQueue(o.queue, "amq.topic", `${o.root}.#`);
        await ch.prefetch(o.prefetch);
        conn.on("close", () => {
          this.conn = null;
          this.channel = null;
          if (!this.stopped) {
            o.log.warn(`AMQP connection to ${url} closed; reconnecting`);
            this.next++;
            this.scheduleReconnect();
          }
        });
        await ch.consume(o.queue, (m) => this.deliver(ch, m), { noAck: false });
        this.conn = conn;
        this.channel = ch;
        this.next = (this.next + i) % o.urls.length;
        o.log.info(`consuming queue '${o.queue}' on ${url}`);
        return;
      } catch (err) {
        lastErr = err as Error;
        await conn?.close().catch(() => undefined);
      }
    }
    if (first) throw new Error(`cannot reach RabbitMQ (${o.urls.join(", ")}): ${lastErr?.message}`);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      void this.connect(false);
    }, 1000);
  }

  private deliver(ch: Channel, m: ConsumeMessage | null): void {
    if (!m) {
      // The server cancelled the consumer (the queue was deleted, or its node went away): start over.
      this.opts.log.warn(`RabbitMQ cancelled the consumer of '${this.opts.queue}'; reconnecting`);
      this.conn?.close().catch(() => undefined);
      return;
    }
    const topic = topicOf(this.opts.root, m.fields.routingKey);
    if (topic === null) {
      ch.ack(m); // a command or health message: not the ingest's
      return;
    }
    const incoming: Incoming = { topic, payload: m.content, at: Date.now(), redelivered: m.fields.redelivered };
    this.opts.onMessage(incoming).then(
      () => {
        try {
          ch.ack(m);
        } catch {
          // The channel closed after the commit: the message comes again and the ledger drops it.
        }
      },
      () => undefined, // not stored: left unacknowledged, redelivered when this channel closes
    );
  }

  /** Publishes a command to a gateway's MQTT topic through amq.topic. */
  async publish(topic: string, payload: string): Promise<void> {
    const ch = this.channel;
    if (!ch) throw new Error("not connected to RabbitMQ");
    ch.publish("amq.topic", routingKeyOf(topic), Buffer.from(payload), { deliveryMode: 2 });
  }

  get connected(): boolean {
    return this.channel !== null;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    const c = this.conn;
    this.conn = null;
    this.channel = null;
    if (c) await c.close().catch(() => undefined);
  }
}
