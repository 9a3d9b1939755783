import mqtt, { type MqttClient } from "mqtt";
import { decodeTelemetry, type TelemetryMessage } from "../../src/uplink/codec.js";
import { SeqTracker } from "../../src/uplink/seq-tracker.js";

/** Collects telemetry (and any other message) from a broker, as the central platform would. */
export class Collector {
  readonly messages: TelemetryMessage[] = [];
  readonly other: Array<{ topic: string; payload: string; retain: boolean }> = [];
  readonly seq = new SeqTracker();
  /** Sequence number → [point, ts, value] as first received, to check a number is never reused. */
  readonly bySeq = new Map<number, string>();
  reused = 0;
  private constructor(readonly client: MqttClient) {}

  static async connect(url: string, filter: string | string[], opts: { clientId?: string; clean?: boolean } = {}): Promise<Collector> {
    const client = await mqtt.connectAsync(url, { reconnectPeriod: 200, clean: true, ...opts });
    const c = new Collector(client);
    client.on("message", (topic, payload, packet) => {
      if (topic.endsWith("/telemetry")) {
        const d = decodeTelemetry(payload);
        if (!d.ok) throw new Error(`malformed telemetry: ${d.reason}`);
        c.messages.push(d.msg);
        c.seq.add(d.msg.seq[0], d.msg.seq[1]);
        d.msg.r.forEach((r, i) => {
          const key = JSON.stringify(r.slice(0, 3));
          const seq = d.msg.seq[0] + i;
          const prev = c.bySeq.get(seq);
          if (prev !== undefined && prev !== key) c.reused++;
          else c.bySeq.set(seq, key);
        });
      } else {
        c.other.push({ topic, payload: payload.toString(), retain: packet.retain });
      }
    });
    await client.subscribeAsync(filter, { qos: 1 });
    return c;
  }

  get readings(): number {
    return this.messages.reduce((n, m) => n + m.r.length, 0);
  }

  async waitFor(pred: () => boolean, timeoutMs = 15_000, what = "condition"): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}
