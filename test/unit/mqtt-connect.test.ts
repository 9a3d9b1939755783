/**
 * connectMqtt: plain mqtt:// without MQTT.js's connect() (which loads its WebSocket, TLS and SOCKS
 * builders on first use), with the same client options connect() derives from the URL.
 */
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { describe, expect, it } from "vitest";
import { connectMqtt } from "../../src/uplink/connect.js";

const KEYS = ["protocol", "host", "username", "password", "clientId", "keepalive", "protocolVersion"] as const;

/** What reaches the broker; connect() leaves the port to its TCP builder (1883 by default). */
function picked(client: MqttClient): Record<string, unknown> {
  const o = client.options as Record<string, unknown>;
  return { ...Object.fromEntries(KEYS.map((k) => [k, o[k]])), port: o.port ?? 1883 };
}

describe("connectMqtt", () => {
  const options: IClientOptions = { clientId: "edge-agent-s-g", keepalive: 30, protocolVersion: 5, manualConnect: true, username: "from-options", password: "secret" };

  it.each([
    "mqtt://127.0.0.1:1883",
    "mqtt://broker.example",
    "tcp://10.0.0.9:2883",
    "mqtt://[::1]:1883",
    "mqtt://gw:r%40ght@127.0.0.1:1883",
    "mqtt://gw@127.0.0.1:1883",
    "mqtt://127.0.0.1:1883?clientId=from-url",
  ])("%s: the options MQTT.js's connect() would give its client", (url) => {
    // manualConnect: nothing is opened.
    const ours = connectMqtt(url, { ...options });
    const theirs = mqtt.connect(url, { ...options });
    expect(ours).toBeInstanceOf(mqtt.MqttClient);
    expect(picked(ours)).toEqual(picked(theirs));
  });

  it("leaves TLS, WebSockets and client certificates to connect()", () => {
    for (const [url, extra] of [
      ["mqtts://127.0.0.1:8883", {}],
      ["wss://broker.example/mqtt", {}],
      ["mqtt://127.0.0.1:1883", { cert: Buffer.from("c"), key: Buffer.from("k") }],
    ] as const) {
      const client = connectMqtt(url, { ...options, ...extra });
      expect(client.options.protocol).toBe(url.startsWith("wss") ? "wss" : "mqtts");
    }
  });
});
