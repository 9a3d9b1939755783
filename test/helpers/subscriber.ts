import mqtt, { type MqttClient } from "mqtt";
import { decodeTelemetry, type TelemetryMessage } from "../../src/uplink/codec.js";
import { decodeCompact, isCompact } from "../../src/uplink/compact.js";
import { parseDictionary } from "../../src/uplink/dictionary.js";
import { SeqTracker } from "../../src/uplink/seq-tracker.js";

/**
 * Collects telemetry (and any other message) from a broker, as the central platform would: v1
 * JSON and v2 compact payloads alike (the latter with the gateway's dictionary, a message waiting
 * for a dictionary that has not come yet).
 */
export class Collector {
  readonly messages: Array<Pick<TelemetryMessage, "gw" | "seq" | "r">> = [];
  /** v2 (compact) telemetry messages received. */
  compact = 0;
  private readonly dictionaries = new Map<string, { version: number; names: Map<number, string> }>();
  private readonly waiting: Array<{ prefix: string; payload: Buffer }> = [];
  readonly other: Array<{ topic: string; payload: string; retain: boolean }> = [];
  readonly seq = new SeqTracker();
  /** Sequence number → [point, ts, value] as first received, to check a number is never reused. */
  readonly bySeq = new Map<number, string>();
  reused = 0;
  private constructor(readonly client: MqttClient) {}

  static async connect(url: string, filter: string | string[], opts: { clientId?: string; clean?: boolean } = {}): Promise<Collector> {
    const client = await mqtt.connectAsync(url, { reconnectPeriod: 200, clean: true, ...opts });
    const c = new Collector(client);
    const take = (msg: Pick<TelemetryMessage, "gw" | "seq" | "r">) => {
      c.messages.push(msg);
      c.seq.add(msg.seq[0], msg.seq[1]);
      msg.r.forEach((r, i) => {
        const key = JSON.stringify(r.slice(0, 3));
        const seq = msg.seq[0] + i;
        const prev = c.bySeq.get(seq);
        if (prev !== undefined && prev !== key) c.reused++;
        else c.bySeq.set(seq, key);
      });
    };
    /** False: its dictionary has not come yet. */
    const compact = (prefix: string, payload: Buffer): boolean => {
      const dict = c.dictionaries.get(prefix);
      const d = decodeCompact(payload, (v) => (dict && dict.version >= v ? dict.names : undefined));
      if (!d.ok && d.reason.startsWith("needs dictionary")) return false;
      if (!d.ok) throw new Error(`malformed compact telemetry: ${d.reason}`);
      c.compact++;
      take(d.msg);
      return true;
    };
    client.on("message", (topic, payload, packet) => {
      const prefix = topic.slice(0, topic.lastIndexOf("/"));
      if (topic.endsWith("/telemetry") && isCompact(payload)) {
        if (!compact(prefix, payload)) c.waiting.push({ prefix, payload });
      } else if (topic.endsWith("/telemetry")) {
        const d = decodeTelemetry(payload);
        if (!d.ok) throw new Error(`malformed telemetry: ${d.reason}`);
        take(d.msg);
      } else if (topic.endsWith("/dict")) {
        const d = parseDictionary(payload);
        if (!d.ok) throw new Error(`malformed dictionary: ${d.reason}`);
        const have = c.dictionaries.get(prefix);
        if (!have || d.version >= have.version) c.dictionaries.set(prefix, { version: d.version, names: d.names });
        for (const w of c.waiting.splice(0)) if (!compact(w.prefix, w.payload)) c.waiting.push(w);
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
