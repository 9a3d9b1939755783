/**
 * Gateways that speak the MQTT contract without being agents: for ingest tests and the ingest
 * benchmark, where 20 or 100 gateways must publish fast. Each reading's value is a function of
 * the gateway and its sequence number, so the database can be checked reading by reading.
 * No vitest import: scripts use it too.
 */
import mqtt, { type MqttClient } from "mqtt";

export const POINTS_PER_GATEWAY = 8;

/** The reading of `gw` with sequence number `seq`: [point, ts, value]. */
export function readingOf(gwIndex: number, seq: number, t0 = 1_764_547_200_000): [string, number, number] {
  return [`meter-${seq % 2}/p${seq % POINTS_PER_GATEWAY}`, t0 + seq * 1000, gwIndex * 1_000_000 + seq + 0.25];
}

export function telemetryPayload(gw: string, gwIndex: number, first: number, count: number): string {
  const r = [];
  for (let s = first; s < first + count; s++) r.push(readingOf(gwIndex, s));
  return JSON.stringify({ v: 1, gw, seq: [first, first + count - 1], r });
}

/** MQTT 5 unless told 4 (3.1.1: RabbitMQ 3.10's MQTT plugin). */
export function connectPublisher(url: string, clientId: string, protocolVersion: 4 | 5 = 5): Promise<MqttClient> {
  const c = mqtt.connect(url, { protocolVersion, clientId, clean: true, reconnectPeriod: 500 });
  return new Promise((resolve, reject) => {
    c.once("connect", () => resolve(c));
    c.once("error", reject);
  });
}

export function publish(c: MqttClient, topic: string, payload: string | Buffer, retain = false): Promise<void> {
  return new Promise((resolve, reject) => c.publish(topic, payload, { qos: 1, retain }, (err) => (err ? reject(err) : resolve())));
}

/**
 * Publishes `count` readings of each gateway in messages of `perMessage`, all gateways in turn,
 * with at most `window` messages unacknowledged per client. Gateways are `gw-<i>` in site `site-a`.
 */
export async function publishGateways(
  c: MqttClient,
  opts: { root: string; gateways: number; count: number; perMessage: number; window?: number; firstSeq?: number; skip?: (gw: number, first: number) => boolean },
): Promise<number> {
  const inflight = new Set<Promise<void>>();
  const window = opts.window ?? 64;
  let sent = 0;
  const first = opts.firstSeq ?? 1;
  for (let at = first; at < first + opts.count; at += opts.perMessage) {
    for (let g = 0; g < opts.gateways; g++) {
      const n = Math.min(opts.perMessage, first + opts.count - at);
      if (opts.skip?.(g, at)) continue;
      const p = publish(c, `${opts.root}/site-a/gw-${g}/telemetry`, telemetryPayload(`gw-${g}`, g, at, n)).finally(() => inflight.delete(p));
      inflight.add(p);
      sent += n;
      if (inflight.size >= window) await Promise.race(inflight);
    }
  }
  await Promise.all(inflight);
  return sent;
}
