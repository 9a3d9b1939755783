/**
 * Topic contract v1 (docs/mqtt-contract.md). Every topic of a gateway sits under
 * `<root>/<site>/<gateway>/`; later parts add `events`, `cmd/<target>`, `result` and `health`.
 */
export interface TopicNames {
  status: string;
  telemetry: string;
  events: string;
  results: string;
  /** Prefix of the command topics: `<commands>/<target>`. */
  commands: string;
  health: string;
  /** The point dictionary of compact (v2) payloads, retained. */
  dict: string;
}

export function gatewayTopics(root: string, site: string, gateway: string): TopicNames {
  const base = `${root}/${site}/${gateway}`;
  return { status: `${base}/status`, telemetry: `${base}/telemetry`, events: `${base}/events`, results: `${base}/result`, commands: `${base}/cmd`, health: `${base}/health`, dict: `${base}/dict` };
}

/** Streams whose messages carry sequence numbers (same envelope). */
export type SequencedTopic = "telemetry" | "events";

/** The subscription filter for a stream of one gateway, one site, or all of them. */
export function telemetryFilter(root: string, site?: string, gateway?: string, stream: SequencedTopic = "telemetry"): string {
  return `${root}/${site ?? "+"}/${gateway ?? "+"}/${stream}`;
}

/** The dictionaries' topic filter (compact payloads) for one gateway, one site, or all. */
export function dictionaryFilter(root: string, site?: string, gateway?: string): string {
  return `${root}/${site ?? "+"}/${gateway ?? "+"}/dict`;
}

/** `edge/site-a/gw-1/telemetry` → site, gateway and stream, or null for another topic. */
export function parseTelemetryTopic(topic: string): { site: string; gateway: string; stream: SequencedTopic } | null {
  const parts = topic.split("/");
  const last = parts[parts.length - 1];
  if (parts.length < 4 || (last !== "telemetry" && last !== "events")) return null;
  return { site: parts[parts.length - 3]!, gateway: parts[parts.length - 2]!, stream: last };
}
