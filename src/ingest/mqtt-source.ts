/**
 * The ingest's MQTT side: N connections to the broker, each a member of the MQTT 5 shared
 * subscription `$share/<group>/<root>/+/+/(telemetry|events|result)`, so N connections in each of
 * M processes split the gateways' messages between them (docs/ingest.md "Scaling out").
 *
 * A message is acknowledged (PUBACK) only after its batch committed: MQTT.js sends the PUBACK
 * when `handleMessage` calls back, and handles one packet per connection at a time, so each
 * connection contributes one message to a batch — which is why there are several.
 *
 * Sessions are persistent (clean start off, a session expiry longer than a restart, stable client
 * ids `<client-id>-<i>`): Mosquitto keeps a member's share while it is away and sends it again
 * when it returns; the ledger makes that redelivery harmless. Status and dictionaries are retained
 * and read by every process on its first connection (not shared).
 */
import mqtt, { type IPublishPacket, type MqttClient } from "mqtt";
import type { Logger } from "../model/logger.js";
import type { Incoming } from "./message.js";

export interface MqttSourceOptions {
  url: string;
  root: string;
  group: string;
  clientId: string;
  connections: number;
  /** Seconds the broker keeps a member's session while it is away. */
  sessionExpiry: number;
  username?: string;
  password?: string;
  log: Logger;
  onMessage: (m: Incoming) => Promise<void>;
}

export class MqttSource {
  private clients: MqttClient[] = [];

  constructor(private readonly opts: MqttSourceOptions) {}

  async start(): Promise<void> {
    const o = this.opts;
    const shared = ["telemetry", "events", "result"].map((leaf) => `$share/${o.group}/${o.root}/+/+/${leaf}`);
    const plain = ["status", "dict"].map((leaf) => `${o.root}/+/+/${leaf}`);
    for (let i = 0; i < o.connections; i++) {
      const client = mqtt.connect(o.url, {
        protocolVersion: 5,
        clientId: `${o.clientId}-${i}`,
        clean: false,
        keepalive: 60,
        reconnectPeriod: 1000,
        connectTimeout: 10_000,
        properties: { sessionExpiryInterval: o.sessionExpiry },
        ...(o.username !== undefined ? { username: o.username } : {}),
        ...(o.password !== undefined ? { password: o.password } : {}),
      });
      client.handleMessage = (packet: IPublishPacket, callback: (err?: Error) => void) => {
        const payload = typeof packet.payload === "string" ? Buffer.from(packet.payload) : Buffer.from(packet.payload);
        o.onMessage({ topic: packet.topic, payload, at: Date.now(), redelivered: packet.dup === true }).then(
          () => callback(),
          (err: Error) => callback(err),
        );
      };
      let reported = "";
      client.on("error", (err) => {
        if (err.message !== reported) o.log.warn({ client: i, err: err.message }, `broker ${o.url}: ${err.message}`);
        reported = err.message;
      });
      client.on("connect", (ack) => {
        reported = "";
        // A resumed session still has its subscriptions; subscribing again is harmless and covers a new one.
        if (!ack.sessionPresent || i === 0) {
          client.subscribe(i === 0 ? [...shared, ...plain] : shared, { qos: 1 }, (err) => {
            if (err) o.log.error({ err: err.message }, `subscribe failed: ${err.message}`);
          });
        }
      });
      this.clients.push(client);
    }
    await Promise.all(
      this.clients.map(
        (c) =>
          new Promise<void>((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`cannot reach the broker at ${o.url} within 30 s`)), 30_000);
            c.once("connect", () => {
              clearTimeout(t);
              resolve();
            });
          }),
      ),
    );
  }

  /** Publishes a command (QoS 1) on the first connection. */
  publish(topic: string, payload: string): Promise<void> {
    const c = this.clients[0];
    if (!c) return Promise.reject(new Error("not connected"));
    return new Promise((resolve, reject) => c.publish(topic, payload, { qos: 1 }, (err) => (err ? reject(err) : resolve())));
  }

  get connected(): boolean {
    return this.clients.length > 0 && this.clients.every((c) => c.connected);
  }

  async stop(): Promise<void> {
    const clients = this.clients.splice(0);
    // Not forced: the PUBACKs of the last committed batch go out first.
    await Promise.all(
      clients.map(
        (c) =>
          new Promise<void>((r) => {
            const t = setTimeout(() => c.end(true, {}, () => r()), 2000);
            c.end(false, {}, () => {
              clearTimeout(t);
              r();
            });
          }),
      ),
    );
  }
}
