/**
 * Topic contract v1 (docs/mqtt-contract.md). Every topic of a gateway sits under
 * `<root>/<site>/<gateway>/`; later parts add `events`, `cmd/<target>`, `result` and `health`.
 */
export interface TopicNames {
  status: string;
  telemetry: string;
  events: string;
  results: string;
}

export function gatewayTopics(root: string, site: string, gateway: string): TopicNames {
  const base = `${root}/${site}/${gateway}`;
  return { status: `${base}/status`, telemetry: `${base}/telemetry`, events: `${base}/events`, results: `${base}/result` };
}

/** The subscription filter for telemetry of one gateway, one site, or all of them. */
export function telemetryFilter(root: string, site?: string, gateway?: string): string {
  return `${root}/${site ?? "+"}/${gateway ?? "+"}/telemetry`;
}

/** `edge/site-a/gw-1/telemetry` → site and gateway, or null if it is not a telemetry topic. */
export function parseTelemetryTopic(topic: string): { site: string; gateway: string } | null {
  const parts = topic.split("/");
  if (parts.length < 4 || parts[parts.length - 1] !== "telemetry") return null;
  return { site: parts[parts.length - 3]!, gateway: parts[parts.length - 2]! };
}
