/**
 * What the ingest relies on from RabbitMQ 3.10's MQTT plugin, against one real node
 * (test/helpers/rabbitmq.ts): a gateway's MQTT 3.1.1 QoS 1 publish lands on `amq.topic` with `/`
 * turned into `.` and reaches a durable quorum queue bound with `edge.#` byte for byte; a message
 * not acknowledged before its channel closes goes to the next consumer marked redelivered; an AMQP
 * publish to `amq.topic` reaches the gateway's MQTT subscription. And two things to design around:
 * a `.` inside a topic level is not translated, so it splits the level; 1 MiB publishes pass.
 */
import { randomBytes } from "node:crypto";
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from "amqplib";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type RabbitCluster, startRabbit } from "../helpers/rabbitmq.js";
import { waitFor } from "../helpers/wait.js";

let rabbit: RabbitCluster | undefined;
let conn: ChannelModel;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  rabbit = await startRabbit({ nodes: 1, name: "edge-helper" });
  conn = await amqp.connect(rabbit.nodes[0]!.amqpUrl);
  cleanups.push(() => conn.close());
}, 150_000);

afterEach(async () => {
  for (const c of cleanups.splice(1).reverse()) await c();
});

afterAll(async () => {
  try {
    for (const c of cleanups.splice(0).reverse()) await c();
  } finally {
    await rabbit?.stop();
  }
});

function node() {
  return rabbit!.nodes[0]!;
}

/** A gateway (or a test subscriber): MQTT 3.1.1, clean session, no credentials. */
async function mqttClient(clientId: string): Promise<MqttClient> {
  const client = await mqtt.connectAsync(node().mqttUrl, { protocolVersion: 4, clientId, clean: true, reconnectPeriod: 0 });
  cleanups.push(() => client.endAsync());
  return client;
}

async function channel(): Promise<Channel> {
  const ch = await conn.createChannel();
  cleanups.push(() => ch.close().catch(() => undefined)); // a test may have closed it already
  return ch;
}

/** The ingest's queue: durable, quorum, bound to amq.topic; deleted after the test. */
async function ingestQueue(ch: Channel, name: string, ...keys: string[]): Promise<void> {
  await ch.assertQueue(name, { durable: true, arguments: { "x-queue-type": "quorum" } });
  for (const key of keys) await ch.bindQueue(name, "amq.topic", key);
  cleanups.push(async () => {
    const admin = await conn.createChannel();
    await admin.deleteQueue(name);
    await admin.close();
  });
}

/** Consumes with manual acks, collecting what arrives (acking is the test's business). */
async function consume(ch: Channel, queue: string, prefetch = 100): Promise<ConsumeMessage[]> {
  const got: ConsumeMessage[] = [];
  await ch.prefetch(prefetch);
  await ch.consume(queue, (m) => m && got.push(m), { noAck: false });
  return got;
}

/** Every byte value, then random bytes: a payload no text handling leaves alone. */
function binaryPayload(size: number): Buffer {
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  return Buffer.concat([all, randomBytes(Math.max(0, size - all.length))]).subarray(0, size);
}

describe("RabbitMQ 3.10 as the ingest's broker", () => {
  it("puts a gateway's MQTT QoS 1 publish on amq.topic with / turned into ., into a quorum queue bound with edge.#, byte for byte", async () => {
    const ch = await channel();
    await ingestQueue(ch, "ingest-route", "edge.#");
    const got = await consume(ch, "ingest-route");
    const gw = await mqttClient("gw-1");
    const payload = binaryPayload(4096);
    await gw.publishAsync("edge/site-a/gw-1/telemetry", payload, { qos: 1 }); // resolves on the PUBACK

    const [m] = await waitFor("the message in the quorum queue", () => got.length >= 1 && got);
    expect(m!.fields.exchange).toBe("amq.topic");
    expect(m!.fields.routingKey).toBe("edge.site-a.gw-1.telemetry");
    expect(m!.fields.redelivered).toBe(false);
    expect(Buffer.compare(m!.content, payload)).toBe(0);
    // QoS 1 arrives persistent, with the MQTT QoS as a header; QoS 0 would be deliveryMode 1.
    expect(m!.properties.deliveryMode).toBe(2);
    expect(m!.properties.headers).toMatchObject({ "x-mqtt-publish-qos": 1, "x-mqtt-dup": false });
    ch.ack(m!);
  });

  it("keeps a . inside a topic level: gw.2 becomes two words of the routing key (edge.* patterns miss it)", async () => {
    const ch = await channel();
    await ingestQueue(ch, "ingest-dots", "edge.#");
    // One word per level, as a binding that trusts the topic layout would be written.
    await ingestQueue(ch, "ingest-dots-levels", "edge.*.*.telemetry");
    const got = await consume(ch, "ingest-dots");
    const byLevels = await consume(await channel(), "ingest-dots-levels");
    const gw1 = await mqttClient("gw-1");
    const gw2 = await mqttClient("gw.2");
    const payload = binaryPayload(300);
    await gw2.publishAsync("edge/site-a/gw.2/telemetry", payload, { qos: 1 });
    await gw1.publishAsync("edge/site-a/gw-1/telemetry", payload, { qos: 1 });

    await waitFor("both messages via edge.#", () => got.length >= 2);
    expect(got.map((m) => m.fields.routingKey)).toEqual(["edge.site-a.gw.2.telemetry", "edge.site-a.gw-1.telemetry"]);
    for (const m of got) expect(Buffer.compare(m.content, payload)).toBe(0);
    await waitFor("gw-1's message via edge.*.*.telemetry", () => byLevels.length >= 1);
    // gw.2's message was routed before its PUBACK, so it would be here by now: it matched nothing.
    const levels = await ch.checkQueue("ingest-dots-levels");
    expect(levels.messageCount + byLevels.length).toBe(1);
    expect(byLevels[0]!.fields.routingKey).toBe("edge.site-a.gw-1.telemetry");
  });

  it("redelivers a message not acked before its channel closed to the next consumer, marked redelivered", async () => {
    const first = await channel();
    await ingestQueue(first, "ingest-redeliver", "edge.site-a.#");
    const taken = await consume(first, "ingest-redeliver");
    const gw = await mqttClient("gw-1");
    const payloads = [binaryPayload(100), binaryPayload(200), binaryPayload(300)];
    for (const p of payloads) await gw.publishAsync("edge/site-a/gw-1/telemetry", p, { qos: 1 });
    await waitFor("three messages at the first consumer", () => taken.length >= 3);
    first.ack(taken[0]!); // committed; the other two die with the channel
    await first.close();

    const again = await consume(await channel(), "ingest-redeliver");
    await waitFor("the two unacked messages at the next consumer", () => again.length >= 2);
    expect(again.map((m) => m.fields.redelivered)).toEqual([true, true]);
    const bySize = new Map(payloads.map((p) => [p.length, p]));
    expect(again.map((m) => m.content.length).sort()).toEqual([200, 300]);
    for (const m of again) expect(Buffer.compare(m.content, bySize.get(m.content.length)!)).toBe(0);
    expect(again.map((m) => m.fields.routingKey)).toEqual(["edge.site-a.gw-1.telemetry", "edge.site-a.gw-1.telemetry"]);
    // Quorum queues count returns in a header (a poison message can be recognised by it).
    expect(again.map((m) => m.properties.headers?.["x-delivery-count"])).toEqual([1, 1]);
  });

  it("delivers an AMQP publish to amq.topic (edge.site-a.gw-1.cmd.outbox) to the gateway's MQTT subscription", async () => {
    const gw = await mqttClient("gw-1");
    const received: Array<{ topic: string; payload: Buffer; qos: number }> = [];
    gw.on("message", (topic, payload, packet) => received.push({ topic, payload, qos: packet.qos }));
    await gw.subscribeAsync("edge/site-a/gw-1/cmd/outbox", { qos: 1 });
    const ch = await channel();
    const payload = binaryPayload(1000);
    ch.publish("amq.topic", "edge.site-a.gw-1.cmd.outbox", payload, { persistent: true });

    await waitFor("the command at the gateway", () => received.length >= 1);
    expect(received[0]!.topic).toBe("edge/site-a/gw-1/cmd/outbox");
    expect(received[0]!.qos).toBe(1);
    expect(Buffer.compare(received[0]!.payload, payload)).toBe(0);
  });

  it("turns every . of a routing key into /: a gateway subscribed as gw.2 gets its command under gw/2", async () => {
    const gw = await mqttClient("gw.2");
    const received: string[] = [];
    gw.on("message", (topic) => received.push(topic));
    await gw.subscribeAsync("edge/site-a/gw.2/cmd/outbox", { qos: 1 });
    const ch = await channel();
    ch.publish("amq.topic", "edge.site-a.gw.2.cmd.outbox", Buffer.from("x"), { persistent: true });
    await waitFor("the command at gw.2", () => received.length >= 1);
    expect(received).toEqual(["edge/site-a/gw/2/cmd/outbox"]);
  });

  it("takes a 1 MiB QoS 1 MQTT publish: PUBACK, and the whole message in the queue", async () => {
    const ch = await channel();
    await ingestQueue(ch, "ingest-big", "edge.#");
    const got = await consume(ch, "ingest-big");
    const gw = await mqttClient("gw-1");
    const payload = binaryPayload(1 << 20);
    await gw.publishAsync("edge/site-a/gw-1/telemetry", payload, { qos: 1 });
    await waitFor("the 1 MiB message", () => got.length >= 1);
    expect(got[0]!.content.length).toBe(1 << 20);
    expect(Buffer.compare(got[0]!.content, payload)).toBe(0);
    expect(gw.connected).toBe(true);
  });
});
