/**
 * A relay between the gateways' broker and the platform's, for tests that need messages removed
 * in transit: everything the gateways publish under `<root>/` goes across (retain flags kept),
 * except the messages `drop` picks; commands from the platform come back. The gateway got its
 * PUBACK from its own broker, so for it the message was delivered — the loss happens after.
 */
import mqtt, { type MqttClient } from "mqtt";

export interface Relay {
  /** Messages dropped so far, by topic. */
  dropped: Array<{ topic: string; payload: Buffer }>;
  close(): Promise<void>;
}

function connect(url: string, clientId: string): Promise<MqttClient> {
  const c = mqtt.connect(url, { protocolVersion: 5, clientId, clean: true, reconnectPeriod: 500 });
  return new Promise((resolve, reject) => {
    c.once("connect", () => resolve(c));
    c.once("error", reject);
  });
}

export async function startRelay(opts: { gatewaySide: string; platformSide: string; root: string; drop: (topic: string, payload: Buffer) => boolean }): Promise<Relay> {
  const id = `relay-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const [a, b] = await Promise.all([connect(opts.gatewaySide, `${id}-a`), connect(opts.platformSide, `${id}-b`)]);
  const dropped: Relay["dropped"] = [];
  a.on("message", (topic, payload, packet) => {
    if (topic.split("/")[3] === "cmd") return;
    if (opts.drop(topic, payload)) {
      dropped.push({ topic, payload });
      return;
    }
    b.publish(topic, payload, { qos: 1, retain: packet.retain });
  });
  b.on("message", (topic, payload) => {
    if (topic.split("/")[3] !== "cmd") return;
    a.publish(topic, payload, { qos: 1 });
  });
  await Promise.all([
    a.subscribeAsync(`${opts.root}/#`, { qos: 1, rap: true }),
    b.subscribeAsync(`${opts.root}/+/+/cmd/#`, { qos: 1 }),
  ]);
  return {
    dropped,
    close: async () => {
      await Promise.all([a.endAsync(), b.endAsync()]);
    },
  };
}
