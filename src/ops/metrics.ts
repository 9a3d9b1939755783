/**
 * The Prometheus endpoint on loopback: `GET /metrics` with the figures of `edge-agent status`,
 * read from the agent at scrape time (nothing is copied or kept between scrapes), and
 * `GET /healthz` for a monitoring check. Each endpoint has its own registry, never the global
 * one, so two agents (or two tests) in one process do not mix their figures.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import type { CommandStatus } from "../model/command.js";
import type { AgentStatus } from "../model/status.js";
import { UserError } from "../model/errors.js";
import { droppedTotal } from "../store/drops.js";
import { VERSION } from "../version.js";
import { type DeviceFigures, deviceFigures } from "./devices.js";
import { listen } from "../model/listen.js";

const PREFIX = "edge_agent_";
const COMMAND_STATUSES: readonly CommandStatus[] = ["ok", "error", "rejected"];
/** Device counters that count work done, not failures; every other counter is an error kind. */
export interface MetricsOptions {
  /** Loopback unless the config says otherwise (`metrics.host`). */
  host?: string;
  /** `metrics.port`; 0 picks a free port (see `address` after start). */
  port: number;
  /** The agent's status, asked once per scrape and per /healthz request. */
  status: () => AgentStatus;
  /** True while the agent's own loops run on time (the same test that feeds the watchdog). */
  healthy: () => boolean;
  version?: string;
}

export interface MetricsAddress {
  host: string;
  port: number;
}

/** One device as the metrics and /healthz see it: a Modbus meter, an I²C sensor, a GPIO pin. */

export interface HealthAnswer {
  code: 200 | 503;
  body: Record<string, unknown>;
}

type Labels = Record<string, string>;
type Sample = readonly [Labels, number];

interface View {
  status: AgentStatus;
  devices: DeviceFigures[];
}

/** A metric family as data: its name (without prefix), what a technician reads, and its values. */
interface Family {
  name: string;
  type: "counter" | "gauge";
  help: string;
  labels?: readonly string[];
  /** A number for a family without labels, else one sample per label set. */
  values: (v: View) => number | Sample[];
}

const STREAM_NAMES = ["telemetry", "events", "results"] as const;

const perStream = (v: View, pick: (s: { depth: number; lastSeq: number }) => number): Sample[] => [
  [{ stream: "telemetry" }, pick({ depth: v.status.outbox.depth, lastSeq: v.status.outbox.lastSeq })],
  [{ stream: "events" }, pick(v.status.outbox.streams.events)],
  [{ stream: "results" }, pick(v.status.outbox.streams.results)],
];

const perSource = (v: View, pick: (s: AgentStatus["sources"][string]) => number | undefined): Sample[] =>
  Object.entries(v.status.sources).flatMap(([source, s]): Sample[] => {
    const n = pick(s);
    return n === undefined ? [] : [[{ source }, n]];
  });

const perDevice = (v: View, pick: (d: DeviceFigures) => number | undefined): Sample[] =>
  v.devices.flatMap((d): Sample[] => {
    const n = pick(d);
    return n === undefined ? [] : [[{ device: d.device }, n]];
  });


/** Inputs that report changes (GPIO pins), by their source. */
const perInput = (v: View, pick: (c: NonNullable<DeviceFigures["changes"]>) => number): Sample[] =>
  v.devices.flatMap((d): Sample[] => (d.changes ? [[{ source: d.source }, pick(d.changes)]] : []));

/** Bridged boards' link figures, by board. */
const perBoard = (v: View, pick: (b: NonNullable<DeviceFigures["board"]>) => number | null): Sample[] =>
  v.devices.flatMap((d): Sample[] => {
    const n = d.board ? pick(d.board) : null;
    return n === null ? [] : [[{ board: d.device }, n]];
  });

const FAMILIES: readonly Family[] = [
  { name: "readings_stored_total", type: "counter", help: "Readings written to the outbox since the agent started.", values: (v) => v.status.stored },
  { name: "events_stored_total", type: "counter", help: "Events (state changes, charging sessions) written to the outbox since the agent started.", values: (v) => v.status.events },
  { name: "readings_thinned_total", type: "counter", help: "Readings of non-critical points not stored while the monthly data budget saves (uplink.budget.non_critical); they never get a sequence number.", values: (v) => v.status.thinned ?? 0 },
  { name: "readings_refused_total", type: "counter", help: "New readings refused because the outbox was full (store.when_full: drop-newest) since the agent started.", values: (v) => v.status.refused },
  { name: "store_errors_total", type: "counter", help: "Times readings could not be written to the outbox (disk full or damaged file) since the agent started. Should stay 0.", values: (v) => v.status.storeErrors },
  { name: "outbox_depth", type: "gauge", labels: ["stream"], help: "Entries waiting in the outbox for the broker, per stream: telemetry readings, events, command results.", values: (v) => perStream(v, (s) => s.depth) },
  { name: "outbox_last_sequence", type: "gauge", labels: ["stream"], help: "Last sequence number given per outbox stream; it grows as data is stored.", values: (v) => perStream(v, (s) => s.lastSeq) },
  { name: "outbox_oldest_unsent_age_seconds", type: "gauge", help: "Age of the oldest telemetry reading the broker has not acknowledged yet; 0 when nothing waits. Grows while the uplink is down.", values: (v) => (v.status.outbox.oldestAgeMs ?? 0) / 1000 },
  { name: "outbox_bytes", type: "gauge", help: "Bytes the waiting data takes in the outbox, as counted against store.quota.", values: (v) => v.status.outbox.usedBytes },
  { name: "outbox_file_bytes", type: "gauge", help: "Size on disk of the outbox database with its WAL and shared-memory files.", values: (v) => v.status.outbox.fileBytes },
  { name: "outbox_quota_bytes", type: "gauge", help: "store.quota: the most the outbox holds before it drops readings as store.when_full says.", values: (v) => v.status.outbox.quota },
  {
    name: "readings_dropped_total",
    type: "counter",
    labels: ["reason"],
    help: "Entries of every stream deleted without reaching the broker: quota_oldest (outbox full, oldest deleted), quota_newest (outbox full, new ones refused), max_age (older than store.max_age), purged (dead letters deleted by an operator).",
    values: (v) => Object.entries(v.status.outbox.dropped).map(([reason, n]): Sample => [{ reason }, n]),
  },
  {
    name: "outbox_dropped_total",
    type: "counter",
    labels: ["stream", "reason"],
    help: "The same per stream (telemetry, events, results): the platform sees these as gaps in that stream's sequence numbers.",
    values: (v) =>
      STREAM_NAMES.flatMap((stream) => Object.entries(v.status.outbox.streams[stream].dropped).map(([reason, n]): Sample => [{ stream, reason }, n])),
  },
  {
    name: "outbox_dead_letters",
    type: "gauge",
    labels: ["stream"],
    help: "Entries the broker refused even one at a time, kept in the outbox until resent or purged (edge-agent buffer dead-letters). Should stay 0.",
    values: (v) => STREAM_NAMES.map((stream): Sample => [{ stream }, v.status.outbox.streams[stream].deadLetters]),
  },
  {
    name: "outbox_kept_for_replay",
    type: "gauge",
    labels: ["stream"],
    help: "Entries the broker acknowledged, kept for store.replay_window so the platform can ask for them again; counted against store.quota, and the first to go when it is reached.",
    values: (v) => STREAM_NAMES.map((stream): Sample => [{ stream }, v.status.outbox.streams[stream].kept]),
  },
  { name: "uplink_connected", type: "gauge", help: "1 while the agent is connected to the MQTT broker, 0 otherwise (readings are kept in the outbox meanwhile).", values: (v) => (v.status.uplink.state === "online" ? 1 : 0) },
  {
    name: "uplink_state",
    type: "gauge",
    labels: ["state"],
    help: "The uplink's state: 1 for the current one of stopped, connecting, online, offline.",
    values: (v) => (["stopped", "connecting", "online", "offline"] as const).map((state): Sample => [{ state }, v.status.uplink.state === state ? 1 : 0]),
  },
  { name: "uplink_connects_total", type: "counter", help: "Connections made to the MQTT broker since the agent started; a steady climb means the link keeps dropping.", values: (v) => v.status.uplink.connects },
  { name: "uplink_messages_acked_total", type: "counter", help: "Telemetry messages the broker acknowledged.", values: (v) => v.status.uplink.messagesAcked },
  { name: "uplink_readings_acked_total", type: "counter", help: "Readings the broker acknowledged (a reading sent again after a cut counts twice).", values: (v) => v.status.uplink.readingsAcked },
  { name: "uplink_payload_bytes_total", type: "counter", help: "Bytes of telemetry payload the broker acknowledged.", values: (v) => v.status.uplink.payloadBytes },
  { name: "uplink_events_results_acked_total", type: "counter", help: "Events and command results the broker acknowledged.", values: (v) => v.status.uplink.otherAcked },
  // The monthly data budget (uplink.budget); no samples without one.
  { name: "uplink_month_bytes", type: "gauge", help: "Bytes sent this calendar month (UTC), whole MQTT PUBLISH packets, when uplink.budget is set.", values: (v) => (v.status.uplink.budget ? v.status.uplink.budget.bytes : []) },
  { name: "uplink_month_forecast_bytes", type: "gauge", help: "The month's total at the rate so far; over uplink_month_budget_bytes the uplink batches longer.", values: (v) => (v.status.uplink.budget ? v.status.uplink.budget.forecast : []) },
  { name: "uplink_month_budget_bytes", type: "gauge", help: "The monthly data budget (uplink.budget).", values: (v) => (v.status.uplink.budget ? v.status.uplink.budget.limit : []) },
  { name: "uplink_publish_failures_total", type: "counter", help: "Publishes that failed or timed out; what they carried stays in the outbox and is sent again.", values: (v) => v.status.uplink.publishFailures },
  { name: "uplink_refused_total", type: "counter", help: "Messages the broker refused (or dropped while acknowledging later ones); they are split and sent again.", values: (v) => v.status.uplink.refused },
  { name: "uplink_dead_lettered_total", type: "counter", help: "Entries set aside as dead letters because the broker refused them one by one.", values: (v) => v.status.uplink.deadLettered },
  { name: "uplink_inflight_messages", type: "gauge", help: "Messages sent and not yet acknowledged by the broker.", values: (v) => v.status.uplink.inflight },
  { name: "uplink_backlog_readings", type: "gauge", help: "Readings stored during an outage still to be sent.", values: (v) => v.status.uplink.backlogRemaining },
  { name: "source_polls_total", type: "counter", labels: ["source"], help: "Polls run per source (a Modbus device, an I²C room, a GPIO pin, a simulator).", values: (v) => perSource(v, (s) => s.polls) },
  { name: "source_overruns_total", type: "counter", labels: ["source"], help: "Polls skipped because the previous one had not finished: the interval is too short for the line, or a device is slow.", values: (v) => perSource(v, (s) => s.overruns) },
  { name: "source_errors_total", type: "counter", labels: ["source"], help: "Polls of a source that failed as a whole (failed requests to single devices are in edge_agent_device_errors_total).", values: (v) => perSource(v, (s) => s.errors) },
  { name: "device_up", type: "gauge", labels: ["device"], help: "1 when the device answers, 0 when it is offline (Modbus meter, I²C sensor, GPIO input).", values: (v) => perDevice(v, (d) => (d.up ? 1 : 0)) },
  { name: "device_requests_total", type: "counter", labels: ["device"], help: "Requests sent to the device (Modbus reads, I²C reads), retries included.", values: (v) => perDevice(v, (d) => d.requests) },
  { name: "device_requests_ok_total", type: "counter", labels: ["device"], help: "Requests the device answered correctly.", values: (v) => perDevice(v, (d) => d.ok) },
  { name: "device_retries_total", type: "counter", labels: ["device"], help: "Requests sent again after a lost or damaged reply.", values: (v) => perDevice(v, (d) => d.retries) },
  {
    name: "device_errors_total",
    type: "counter",
    labels: ["device", "kind"],
    help: "Failed requests by device and kind. Modbus: timeout (no reply: power, address, wiring), crc (damaged reply: termination, shielding, baud rate), exception (the device refused the request), wrong-unit (another device answered), truncated, disconnected. I²C: nack, io, crc, not-ready, bus-missing, permission, identity, reset.",
    values: (v) => v.devices.flatMap((d) => Object.entries(d.errors).map(([kind, n]): Sample => [{ device: d.device, kind }, n])),
  },
  { name: "device_last_ok_timestamp_seconds", type: "gauge", labels: ["device"], help: "Unix time of the device's last good reply (absent before the first one).", values: (v) => perDevice(v, (d) => (d.lastOkTs === undefined ? undefined : d.lastOkTs / 1000)) },
  { name: "device_requests_per_poll", type: "gauge", labels: ["device"], help: "Reads planned per poll of a Modbus device; fewer leaves more time on a shared line.", values: (v) => perDevice(v, (d) => d.requestsPerPoll) },
  { name: "device_unsupported_points", type: "gauge", labels: ["device"], help: "Points the device refused to read (illegal address); they are left out of its polls.", values: (v) => perDevice(v, (d) => d.unsupported) },
  { name: "bridge_frames_received_total", type: "counter", labels: ["board"], help: "Frames received from a bridged board (valid ones).", values: (v) => perBoard(v, (b) => b.framesIn) },
  { name: "bridge_frames_sent_total", type: "counter", labels: ["board"], help: "Frames sent to a bridged board, resends included.", values: (v) => perBoard(v, (b) => b.framesOut) },
  { name: "bridge_retransmits_total", type: "counter", labels: ["board"], help: "Frames sent again to a board because no acknowledgement came: a lossy cable or a busy board.", values: (v) => perBoard(v, (b) => b.retransmits) },
  { name: "bridge_crc_errors_total", type: "counter", labels: ["board"], help: "Frames from a board with a bad CRC (noise, a wrong baud, log text inside a frame).", values: (v) => perBoard(v, (b) => b.crcErrors) },
  { name: "bridge_resyncs_total", type: "counter", labels: ["board"], help: "Chunks between delimiters that were not frames (boot banners, raw prints, noise); the link resynchronised.", values: (v) => perBoard(v, (b) => b.garbage + b.oversized) },
  { name: "bridge_duplicates_total", type: "counter", labels: ["board"], help: "Board readings received again (after a restart or a lost acknowledgement) and recognised as stored.", values: (v) => perBoard(v, (b) => b.duplicates) },
  { name: "bridge_sessions_total", type: "counter", labels: ["board"], help: "Board sessions started (accepted hellos): a climb means the board keeps resetting or the link keeps dropping.", values: (v) => perBoard(v, (b) => b.sessions) },
  { name: "bridge_round_trip_seconds", type: "gauge", labels: ["board"], help: "Smoothed round trip of reliable frames to the board.", values: (v) => perBoard(v, (b) => (b.rttMs === null ? null : b.rttMs / 1000)) },
  { name: "bridge_clock_drift_ppm", type: "gauge", labels: ["board"], help: "How much faster the board's clock runs than the gateway's, in parts per million.", values: (v) => perBoard(v, (b) => b.clockDriftPpm) },
  { name: "bridge_board_buffered_readings", type: "gauge", labels: ["board"], help: "Readings waiting in the board's own buffer (its last heartbeat).", values: (v) => perBoard(v, (b) => b.boardBuffered) },
  { name: "bridge_board_dropped_readings", type: "gauge", labels: ["board"], help: "Readings the board overwrote because its buffer was full, since its boot.", values: (v) => perBoard(v, (b) => b.boardDropped) },
  { name: "gpio_edges_total", type: "counter", labels: ["source"], help: "Changes seen on a GPIO input (a PIR sensor, a door contact).", values: (v) => perInput(v, (c) => c.seen) },
  { name: "gpio_edges_dropped_total", type: "counter", labels: ["source"], help: "GPIO changes dropped because too many came between two polls (a chattering input).", values: (v) => perInput(v, (c) => c.dropped) },
  {
    name: "actuator_fault",
    type: "gauge",
    labels: ["actuator"],
    help: "1 while a streetlight or charging point reports a fault (edge-agent status tells which), 0 otherwise.",
    values: (v) => Object.entries(v.status.actuators).map(([actuator, s]): Sample => [{ actuator }, s.fault ? 1 : 0]),
  },
];

export class MetricsEndpoint {
  private readonly registry = new Registry();
  private readonly commands: Counter<"status">;
  private server: Server | null = null;
  private bound: MetricsAddress | null = null;
  private defaultMetrics = false;
  /** The status taken for the scrape under way, so every family reads the same figures. */
  private scrape: View | null = null;
  /** Loss counters at the previous /healthz answer: growth since then makes it unhealthy. */
  private lastLoss: { storeErrors: number; dropped: number } | null = null;

  constructor(private readonly opts: MetricsOptions) {
    const registers = [this.registry];
    const view = () => this.scrape ?? this.view(this.opts.status());
    for (const f of FAMILIES) {
      const labelNames = [...(f.labels ?? [])];
      // A family without labels is set with the value alone, so prom-client keeps one series.
      const fill = (set: (labels: Labels | null, n: number) => void) => {
        const values = f.values(view());
        if (typeof values === "number") set(null, values);
        else for (const [labels, n] of values) set(labels, n);
      };
      if (f.type === "counter") {
        new Counter({
          name: PREFIX + f.name,
          help: f.help,
          labelNames,
          registers,
          collect() {
            this.reset();
            fill((labels, n) => (labels ? this.inc(labels, Math.max(0, n)) : this.inc(Math.max(0, n))));
          },
        });
      } else {
        new Gauge({
          name: PREFIX + f.name,
          help: f.help,
          labelNames,
          registers,
          collect() {
            this.reset();
            fill((labels, n) => (labels ? this.set(labels, n) : this.set(n)));
          },
        });
      }
    }
    // The status keeps only the last few command results: these are counted as they happen.
    this.commands = new Counter({
      name: `${PREFIX}commands_total`,
      help: "Commands answered since the agent started (from the platform or edge-agent on the gateway), by result: ok, error (the actuator failed), rejected (invalid, expired or unknown target).",
      labelNames: ["status"],
      registers,
    });
    for (const status of COMMAND_STATUSES) this.commands.inc({ status }, 0);
    new Gauge({
      name: `${PREFIX}build_info`,
      help: "Always 1; the version label says which edge-agent runs.",
      labelNames: ["version"],
      registers,
    }).set({ version: opts.version ?? VERSION }, 1);
  }

  /** Counts a command result; the agent calls it for every result it records. */
  countCommand(status: CommandStatus): void {
    this.commands.inc({ status });
  }

  /** The bound address once started (the real port when 0 was asked). */
  get address(): MetricsAddress | null {
    return this.bound;
  }

  get url(): string | null {
    if (!this.bound) return null;
    const host = this.bound.host.includes(":") ? `[${this.bound.host}]` : this.bound.host;
    return `http://${host}:${this.bound.port}`;
  }

  async start(): Promise<MetricsAddress> {
    if (this.server) throw new Error("metrics endpoint already started");
    if (!this.defaultMetrics) {
      // Process memory, CPU, event loop lag, GC: started here, not in the constructor, and once.
      collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
      this.defaultMetrics = true;
    }
    const host = this.opts.host ?? "127.0.0.1";
    const server = createServer((req, res) => void this.handle(req, res));
    server.requestTimeout = 10_000;
    server.headersTimeout = 5_000;
    try {
      await listen(server, this.opts.port, host);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new UserError(`metrics: cannot listen on ${host}:${this.opts.port} (${code}); change metrics.port or metrics.host`);
    }
    const address = server.address();
    this.server = server;
    this.bound = { host, port: typeof address === "object" && address ? address.port : this.opts.port };
    try {
      this.lastLoss = loss(this.opts.status());
    } catch {
      this.lastLoss = null; // the agent is not up yet: the first /healthz takes the baseline
    }
    return this.bound;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.bound = null;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Prometheus keeps its connection open between scrapes; close() alone would wait for it.
    server.closeAllConnections();
    await closed;
  }

  /** The exposition text, with the agent's status taken once for the whole scrape. */
  async metrics(): Promise<string> {
    const view = this.view(this.opts.status());
    this.scrape = view;
    try {
      return await this.registry.metrics();
    } finally {
      if (this.scrape === view) this.scrape = null;
    }
  }

  /** 200 while the agent works (online, or offline and buffering without loss), else 503 with the reasons. */
  health(): HealthAnswer {
    const version = this.opts.version ?? VERSION;
    let status: AgentStatus;
    try {
      status = this.opts.status();
    } catch (err) {
      return { code: 503, body: { status: "error", reason: `agent status unavailable: ${(err as Error).message}`, version } };
    }
    const reasons: string[] = [];
    let loopsOk: boolean;
    try {
      loopsOk = this.opts.healthy();
    } catch (err) {
      loopsOk = false;
      reasons.push(`health check failed: ${(err as Error).message}`);
    }
    if (!loopsOk && reasons.length === 0) reasons.push("the agent's loops are not running on time (polling or housekeeping stuck)");
    const state = status.uplink.state;
    if (state === "stopped") reasons.push("the uplink is stopped");
    const now = loss(status);
    const before = this.lastLoss;
    this.lastLoss = now;
    if (before && now.storeErrors > before.storeErrors) {
      reasons.push(`${now.storeErrors - before.storeErrors} writes to the outbox failed since the last check (disk full or damaged?)`);
    }
    if (before && state !== "online" && now.dropped > before.dropped) {
      reasons.push(`the uplink is ${state} and the outbox is dropping readings (${now.dropped - before.dropped} since the last check)`);
    }
    const devices = deviceFigures(status);
    const body = {
      status: reasons.length === 0 ? "ok" : "error",
      ...(reasons.length > 0 ? { reason: reasons.join("; ") } : {}),
      uplink: state,
      outbox: {
        depth: status.outbox.depth,
        oldestUnsentAgeSeconds: (status.outbox.oldestAgeMs ?? 0) / 1000,
        dropped: now.dropped,
      },
      devices: {
        up: devices.filter((d) => d.up).length,
        total: devices.length,
        offline: devices.filter((d) => !d.up).map((d) => d.device),
      },
      version,
    };
    return { code: reasons.length === 0 ? 200 : 503, body };
  }

  private view(status: AgentStatus): View {
    return { status, devices: deviceFigures(status) };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    try {
      if (path !== "/metrics" && path !== "/healthz") {
        send(req, res, 404, "text/plain; charset=utf-8", "not found: this endpoint serves /metrics and /healthz\n");
      } else if (req.method !== "GET" && req.method !== "HEAD") {
        res.setHeader("Allow", "GET, HEAD");
        send(req, res, 405, "text/plain; charset=utf-8", "method not allowed: use GET\n");
      } else if (path === "/healthz") {
        const h = this.health();
        send(req, res, h.code, "application/json", `${JSON.stringify(h.body)}\n`);
      } else {
        let text: string;
        try {
          text = await this.metrics();
        } catch (err) {
          send(req, res, 503, "text/plain; charset=utf-8", `agent status unavailable: ${(err as Error).message}\n`);
          return;
        }
        send(req, res, 200, this.registry.contentType, text);
      }
    } catch (err) {
      if (!res.headersSent) send(req, res, 500, "text/plain; charset=utf-8", `internal error: ${(err as Error).message}\n`);
      else res.destroy();
    }
  }
}


function send(req: IncomingMessage, res: ServerResponse, code: number, type: string, body: string): void {
  res.writeHead(code, { "Content-Type": type, "Content-Length": Buffer.byteLength(body), "Cache-Control": "no-store" });
  res.end(req.method === "HEAD" ? undefined : body);
}

function loss(s: AgentStatus): { storeErrors: number; dropped: number } {
  return { storeErrors: s.storeErrors, dropped: droppedTotal(s.outbox.dropped) };
}
