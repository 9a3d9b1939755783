/**
 * `edge-agent tail`: the receiver's side of the contract. Prints telemetry as it arrives and, with
 * --verify, proves per gateway that every sequence number arrived (gaps and duplicates listed).
 */
import type { Command } from "commander";
import mqtt from "mqtt";
import { UserError } from "../model/errors.js";
import { decodeTelemetry, type TelemetryMessage } from "../uplink/codec.js";
import { compactHeader, decodeCompact, isCompact } from "../uplink/compact.js";
import { parseDictionary } from "../uplink/dictionary.js";
import { SeqTracker, type SeqReport } from "../uplink/seq-tracker.js";
import { dictionaryFilter, parseTelemetryTopic, telemetryFilter } from "../uplink/topics.js";
import { describeMqttError } from "../uplink/uplink.js";
import { parseDuration, printJson } from "./output.js";

export interface TailOptions {
  broker: string;
  root: string;
  site?: string;
  gateway?: string;
  verify?: boolean;
  json?: boolean;
  quiet?: boolean;
  for?: string;
  username?: string;
  password?: string;
  /** Also events (their own sequence numbers, tracked separately). */
  events?: boolean;
}

export interface GatewayReport extends SeqReport {
  gateway: string;
  messages: number;
  malformed: number;
}

export function parseDurationFlag(flag: string, text: string): number {
  const value = parseDuration(text, ["ms", "s", "m", "h", "d"]);
  if (value === undefined) throw new UserError(`${flag}: expected a duration like 30s, got '${text}'`);
  return value;
}

export function printReports(reports: GatewayReport[]): void {
  if (reports.length === 0) {
    process.stdout.write("verify: no telemetry received\n");
    return;
  }
  for (const r of reports) {
    const range = r.first === null ? "nothing" : `seq ${r.first}..${r.last}`;
    const gaps = r.gaps.length === 0 ? "no gaps" : `${r.missing} missing in ${r.gaps.length} gaps: ${r.gaps.slice(0, 10).map(([a, b]) => (a === b ? `${a}` : `${a}..${b}`)).join(", ")}${r.gaps.length > 10 ? ", …" : ""}`;
    process.stdout.write(
      `verify ${r.gateway}: ${range} · ${r.received} readings in ${r.messages} messages · ${gaps} · ${r.duplicates} duplicates${r.malformed ? ` · ${r.malformed} malformed messages` : ""}\n`,
    );
  }
}

export async function tail(opts: TailOptions): Promise<GatewayReport[]> {
  const duration = opts.for ? parseDurationFlag("--for", opts.for) : undefined;
  const trackers = new Map<string, { seq: SeqTracker; messages: number; malformed: number }>();
  const tracker = (key: string) => {
    let t = trackers.get(key);
    if (!t) {
      t = { seq: new SeqTracker(), messages: 0, malformed: 0 };
      trackers.set(key, t);
    }
    return t;
  };
  const client = mqtt.connect(opts.broker, {
    reconnectPeriod: 2000,
    connectTimeout: 10_000,
    clean: true,
    ...(opts.username !== undefined ? { username: opts.username } : {}),
    ...(opts.password !== undefined ? { password: opts.password } : {}),
  });
  const filters = [telemetryFilter(opts.root, opts.site, opts.gateway), dictionaryFilter(opts.root, opts.site, opts.gateway)];
  if (opts.events) filters.push(telemetryFilter(opts.root, opts.site, opts.gateway, "events"));
  const filter = filters.join(", ");
  let lastError = "";
  client.on("error", (err) => {
    const line = describeMqttError(err, opts.broker);
    if (line !== lastError) process.stderr.write(`tail: ${line}\n`);
    lastError = line;
  });
  client.on("connect", () => {
    client.subscribe(filters, { qos: 1 }, (err) => {
      if (err) process.stderr.write(`tail: cannot subscribe to ${filter}: ${err.message}\n`);
      else if (!opts.json) process.stderr.write(`tail: listening on ${filter}${opts.verify ? " (verifying sequence numbers)" : ""}\n`);
    });
  });
  // Compact (v2) payloads: the newest dictionary of each gateway (by its dict topic's prefix);
  // a message whose dictionary has not come yet waits for it (at most 1000 messages, 30 s).
  const dictionaries = new Map<string, { version: number; names: Map<number, string> }>();
  const waiting: Array<{ topic: string; payload: Buffer; since: number }> = [];
  const WAIT_MAX = 1000;
  const WAIT_MS = 30_000;
  const prefixOf = (topic: string) => topic.slice(0, topic.lastIndexOf("/"));
  const malformed = (topic: string, reason: string) => {
    const where = parseTelemetryTopic(topic);
    tracker(where ? `${where.site}/${where.gateway}` : topic).malformed++;
    process.stderr.write(`tail: ${topic}: malformed message (${reason})\n`);
  };
  const show = (topic: string, msg: Pick<TelemetryMessage, "gw" | "seq" | "r">) => {
    const where = parseTelemetryTopic(topic);
    const key = `${where?.site ?? "?"}/${msg.gw}${where?.stream === "events" ? " events" : ""}`;
    const t = tracker(key);
    t.messages++;
    t.seq.add(msg.seq[0], msg.seq[1]);
    if (opts.quiet) return;
    msg.r.forEach(([point, ts, value, quality], i) => {
      const seq = msg.seq[0] + i;
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ gw: key, seq, point, ts, value, quality: quality ?? "good" })}\n`);
      } else {
        const time = new Date(ts).toISOString().slice(11, 23);
        process.stdout.write(`${time} ${key} #${seq} ${point} = ${JSON.stringify(value)}${quality ? ` [${quality}]` : ""}\n`);
      }
    });
  };
  /** True when handled (shown or refused); false when it waits for its dictionary. */
  const handle = (topic: string, payload: Buffer): boolean => {
    if (!isCompact(payload)) {
      const decoded = decodeTelemetry(payload);
      if (!decoded.ok) malformed(topic, decoded.reason);
      else show(topic, decoded.msg);
      return true;
    }
    const dict = dictionaries.get(prefixOf(topic));
    const decoded = decodeCompact(payload, (v) => (dict && dict.version >= v ? dict.names : undefined));
    if (decoded.ok) show(topic, decoded.msg);
    else if (decoded.reason.startsWith("needs dictionary")) return false;
    else malformed(topic, decoded.reason);
    return true;
  };
  const retry = (now: number) => {
    for (let i = 0; i < waiting.length; ) {
      const w = waiting[i]!;
      if (handle(w.topic, w.payload)) waiting.splice(i, 1);
      else if (now - w.since > WAIT_MS) {
        waiting.splice(i, 1);
        const h = compactHeader(w.payload);
        malformed(w.topic, `its dictionary version ${h.ok ? h.header.dictionary : "?"} did not arrive within ${WAIT_MS / 1000} s`);
      } else i++;
    }
  };
  client.on("message", (topic, payload) => {
    if (topic.endsWith("/dict")) {
      const d = parseDictionary(payload);
      if (!d.ok) return void process.stderr.write(`tail: ${topic}: ${d.reason}\n`);
      const have = dictionaries.get(prefixOf(topic));
      if (!have || d.version >= have.version) dictionaries.set(prefixOf(topic), { version: d.version, names: d.names });
      retry(Date.now());
      return;
    }
    if (!handle(topic, payload)) {
      if (waiting.length >= WAIT_MAX) {
        const w = waiting.shift()!;
        malformed(w.topic, "too many messages waiting for their dictionary");
      }
      waiting.push({ topic, payload, since: Date.now() });
    }
  });
  const sweep = setInterval(() => retry(Date.now()), 1000);
  sweep.unref();

  await new Promise<void>((resolve) => {
    const done = () => resolve();
    process.once("SIGINT", done);
    process.once("SIGTERM", done);
    if (duration !== undefined) setTimeout(done, duration).unref();
  });
  clearInterval(sweep);
  for (const w of waiting.splice(0)) {
    const h = compactHeader(w.payload);
    malformed(w.topic, `its dictionary version ${h.ok ? h.header.dictionary : "?"} never arrived`);
  }
  await client.endAsync().catch(() => client.end(true));
  return [...trackers.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([gateway, t]) => ({ gateway, messages: t.messages, malformed: t.malformed, ...t.seq.report() }));
}

export function registerTail(program: Command): void {
  program
    .command("tail")
    .description("print telemetry as it arrives; with --verify, report per gateway the sequence range, gaps and duplicates")
    .requiredOption("-b, --broker <url>", "broker URL, e.g. mqtt://broker.example:1883")
    .option("--root <root>", "topic root", "edge")
    .option("--site <site>", "only this site")
    .option("--gateway <gateway>", "only this gateway")
    .option("--verify", "track sequence numbers; report on exit; exit 1 when a gap was seen")
    .option("--quiet", "do not print the readings (with --verify)")
    .option("--for <duration>", "stop after this long (e.g. 30s) instead of at Ctrl-C")
    .option("--username <user>", "broker user name")
    .option("--password <password>", "broker password (prefer EDGE_MQTT_PASSWORD in the environment)")
    .option("--events", "also the events topic (state changes), verified with its own sequence numbers")
    .option("--json", "one JSON object per reading; the verify report as JSON")
    .action(async (opts: TailOptions) => {
      if (!/^(mqtt|mqtts|tcp|tls|ws|wss):\/\/.+/.test(opts.broker)) {
        throw new UserError(`--broker: expected a URL like mqtt://host:1883, got '${opts.broker}'`);
      }
      opts.password ??= process.env.EDGE_MQTT_PASSWORD;
      const reports = await tail(opts);
      if (!opts.verify) return;
      if (opts.json) printJson({ gateways: reports });
      else printReports(reports);
      if (reports.some((r) => r.missing > 0)) process.exitCode = 1;
    });
}
