/**
 * One incoming message of the contract (docs/mqtt-contract.md), checked and decoded for the ingest
 * with the same code `edge-agent tail` uses: telemetry and events (v1 JSON or v2 compact), command
 * results, retained status, dictionaries. Anything that breaks the contract becomes a
 * `quarantine` with the reason; nothing here throws.
 */
import type { Quality, Value } from "../model/reading.js";
import { decodeTelemetry } from "../uplink/codec.js";
import { compactHeader, decodeCompact, isCompact } from "../uplink/compact.js";
import { parseDictionary } from "../uplink/dictionary.js";

export type Stream = "telemetry" | "events" | "results";
export const STREAMS: readonly Stream[] = ["telemetry", "events", "results"];

export interface Incoming {
  topic: string;
  payload: Buffer;
  /** When the ingest received it (ms). */
  at: number;
  /** The broker says it was delivered before (MQTT dup, AMQP redelivered). */
  redelivered: boolean;
}

export interface Where {
  site: string;
  gateway: string;
}

export interface InReading {
  point: string;
  ts: number;
  value: Value;
  quality: Quality;
}

export type Decoded =
  | (Where & { kind: "sequenced"; stream: "telemetry" | "events"; first: number; last: number; readings: InReading[]; compact: boolean })
  | (Where & { kind: "result"; seq: number; body: Record<string, unknown> })
  | (Where & { kind: "status"; state: string; ts: number | null; version: string | null })
  | (Where & { kind: "dict"; version: number; names: Map<number, string> })
  | (Where & { kind: "needs-dict"; version: number })
  | { kind: "quarantine"; reason: string; where: Where | null; seq: number | null }
  | { kind: "ignore" };

/** The reason for a RabbitMQ routing key whose site or gateway id holds a dot (amqp-source.ts: topicOf). */
export const AMBIGUOUS_DOTS =
  "a dot in the site or gateway id: RabbitMQ's MQTT plugin keeps it in the routing key, so where the message belongs is ambiguous (behind RabbitMQ, use letters, digits, - and _ in ids)";

const LEAVES = new Set(["telemetry", "events", "result", "status", "dict"]);
const ID_RE = /^[A-Za-z0-9_.-]{1,128}$/;

/** `<root>/<site>/<gateway>/<leaf>` → its parts, or null. */
export function parseTopic(root: string, topic: string): (Where & { leaf: string }) | null {
  if (!topic.startsWith(`${root}/`)) return null;
  const parts = topic.slice(root.length + 1).split("/");
  if (parts.length !== 3) return null;
  const [site, gateway, leaf] = parts as [string, string, string];
  if (!ID_RE.test(site) || !ID_RE.test(gateway) || !LEAVES.has(leaf)) return null;
  return { site, gateway, leaf };
}

export type DictionaryLookup = (where: Where, version: number) => ReadonlyMap<number, string> | undefined;

const q = (reason: string, where: Where | null, seq: number | null = null): Decoded => ({ kind: "quarantine", reason, where, seq });

export function decode(root: string, msg: Incoming, dictionary: DictionaryLookup): Decoded {
  try {
    return decodeUnsafe(root, msg, dictionary);
  } catch (err) {
    return q(`could not be decoded: ${(err as Error).message}`, null);
  }
}

function decodeUnsafe(root: string, msg: Incoming, dictionary: DictionaryLookup): Decoded {
  const t = parseTopic(root, msg.topic);
  if (!t) {
    const parts = msg.topic.startsWith(`${root}/`) ? msg.topic.slice(root.length + 1).split("/") : [];
    if (parts.length === 2 && parts[0]!.includes(".")) return q(AMBIGUOUS_DOTS, null);
    return q("topic is not <root>/<site>/<gateway>/(telemetry|events|result|status|dict)", null);
  }
  const where: Where = { site: t.site, gateway: t.gateway };
  const p = msg.payload;
  if (t.leaf === "status") {
    if (p.length === 0) return { kind: "ignore" }; // a cleared retained message
    const j = parseObject(p);
    if (!j || typeof j.state !== "string" || j.state.length > 32) return q("status is not {state, ts, version}", where);
    const ts = typeof j.ts === "number" && Number.isFinite(j.ts) ? j.ts : null;
    const version = typeof j.version === "string" ? j.version.slice(0, 64) : null;
    return { ...where, kind: "status", state: j.state, ts, version };
  }
  if (t.leaf === "dict") {
    if (p.length === 0) return { kind: "ignore" };
    const d = parseDictionary(p);
    if (!d.ok) return q(d.reason, where);
    if (d.gw !== t.gateway) return q(`gw '${d.gw.slice(0, 64)}' in the payload differs from the topic's '${t.gateway}'`, where);
    if (d.version < 1 || d.version > 2 ** 31 - 1) return q(`dictionary version ${d.version} out of range`, where);
    return { ...where, kind: "dict", version: d.version, names: d.names };
  }
  if (t.leaf === "result") {
    const j = parseObject(p);
    if (!j) return q("result is not a JSON object", where);
    if (j.v !== 1) return q(`unsupported version ${JSON.stringify(j.v)?.slice(0, 20)}`, where);
    if (j.gw !== t.gateway) return q(`gw ${JSON.stringify(j.gw)?.slice(0, 64)} in the payload differs from the topic's '${t.gateway}'`, where);
    if (!Number.isSafeInteger(j.seq) || (j.seq as number) < 1) return q("result seq is not a positive integer", where);
    return { ...where, kind: "result", seq: j.seq as number, body: j };
  }
  // telemetry | events
  const stream = t.leaf as "telemetry" | "events";
  if (isCompact(p)) {
    const h = compactHeader(p);
    if (!h.ok) return q(h.reason, where);
    if (h.header.gw !== t.gateway) return q(`gw '${h.header.gw.slice(0, 64)}' in the payload differs from the topic's '${t.gateway}'`, where);
    let missing = false;
    const r = decodeCompact(p, (v) => {
      const names = dictionary(where, v);
      if (!names) missing = true;
      return names;
    });
    if (!r.ok) return missing ? { ...where, kind: "needs-dict", version: h.header.dictionary } : q(r.reason, where, h.header.first);
    const [first, last] = r.msg.seq;
    return { ...where, kind: "sequenced", stream, first, last, compact: true, readings: r.msg.r.map(toReading) };
  }
  const d = decodeTelemetry(p);
  if (!d.ok) return q(d.reason, where);
  if (d.msg.gw !== t.gateway) return q(`gw '${d.msg.gw.slice(0, 64)}' in the payload differs from the topic's '${t.gateway}'`, where, d.msg.seq[0]);
  if (d.msg.seq[0] < 1) return q(`seq ${d.msg.seq[0]} is below 1`, where);
  return { ...where, kind: "sequenced", stream, first: d.msg.seq[0], last: d.msg.seq[1], compact: false, readings: d.msg.r.map(toReading) };
}

function toReading(r: readonly unknown[]): InReading {
  return { point: r[0] as string, ts: r[1] as number, value: r[2] as Value, quality: ((r[3] as Quality | undefined) ?? "good") as Quality };
}

function parseObject(p: Buffer): Record<string, unknown> | null {
  try {
    const j = JSON.parse(p.toString("utf8")) as unknown;
    return typeof j === "object" && j !== null && !Array.isArray(j) ? (j as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The kind a value gives its point; null says nothing. */
export function kindOf(v: Value): "number" | "boolean" | "text" | null {
  if (v === null) return null;
  if (typeof v === "number") return "number";
  if (typeof v === "boolean") return "boolean";
  if (typeof v === "string") return "text";
  return null;
}

/** Readings' times the database keeps: year 1970 … 9999 (a clock gone wrong is quarantined). */
export const TS_MIN = 0;
export const TS_MAX = 253_402_300_799_999;
