/**
 * MQTT.js's connect() for plain `mqtt://` (and `tcp://`) without what connect() loads on its first
 * call: every stream builder it knows — WebSocket (the ws package), TLS (node:tls and OpenSSL's
 * setup) and SOCKS (socks, ip-address) — ~11 MB of resident memory that a gateway talking to its
 * broker over TCP never uses. The client is MQTT.js's own (MqttClient, given a TCP stream), with
 * the options connect() would derive from the URL. Anything else — mqtts, ws, wss, client
 * certificates (connect() then upgrades mqtt:// to TLS), a SOCKS proxy from MQTTJS_SOCKS_PROXY —
 * goes through mqtt.connect() as before.
 */
import { createConnection } from "node:net";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";

export function connectMqtt(url: string, options: IClientOptions): MqttClient {
  const plain = /^(mqtt|tcp):\/\//i.test(url) && !options.ca && !options.cert && !options.key && !process.env.MQTTJS_SOCKS_PROXY;
  if (!plain) return mqtt.connect(url, options);
  const u = new URL(url);
  // URL keeps the brackets of an IPv6 literal; a socket wants the address alone.
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1") || "localhost";
  const port = u.port ? Number(u.port) : 1883;
  const opts: IClientOptions = { protocol: u.protocol === "tcp:" ? "tcp" : "mqtt", host, port, ...options };
  // As connect(): credentials in the URL win over the options', a clientId in the query too.
  if (u.username) {
    opts.username = decodeURIComponent(u.username);
    if (u.password) opts.password = decodeURIComponent(u.password);
  }
  const clientId = u.searchParams.get("clientId");
  if (clientId !== null) opts.clientId = clientId;
  const client = new mqtt.MqttClient(() => createConnection({ host, port }), opts);
  // connect() adds this too: errors reach the caller's listener, and none is ever unhandled.
  client.on("error", () => {});
  return client;
}
