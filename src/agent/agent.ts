/**
 * The agent: a short composition of parts (outbox, broker, simulators, uplink, control socket,
 * sources, actuators, timers, live feed, OPC UA, metrics), started in that order and stopped in
 * reverse by Parts (agent/parts.ts) — actuators first, into their safe state, while the buses are
 * still open; every stop isolated. Each part reports a typed status; status() puts them together.
 */
import { dirname } from "node:path";
import { OnoffGpioBackend } from "../buses/gpio/onoff-backend.js";
import { Charger } from "../control/charger.js";
import { type Actuator, CommandRouter } from "../control/commands.js";
import { GpioRelay } from "../control/relay.js";
import { Streetlight } from "../control/streetlight.js";
import type { Logger } from "../model/logger.js";
import type { AgentStatus, SourceStatus } from "../model/status.js";
import { ControlSocket, controlSocketPath, type DeadLetterRequest } from "../ops/control-socket.js";
import { HealthReporter } from "../ops/health.js";
import { LiveFeed } from "../ops/live-feed.js";
import { healthProblems } from "../ops/systemd.js";
import { createProcessors } from "../processors/create.js";
import type { Processor, ProcessorOutput } from "../model/processor.js";
import type { Source } from "../sources/source.js";
import { droppedTotal } from "../store/drops.js";
import { FORMAT, Outbox, type Resent } from "../store/outbox.js";
import { EmbeddedBroker } from "../uplink/embedded-broker.js";
import { Uplink } from "../uplink/uplink.js";
import { VERSION } from "../version.js";
import { createCharger, createStreetlight } from "./actuators.js";
import type { Config } from "./config.js";
import { intervalPart, type Part, part, Parts } from "./parts.js";
import { Recorder } from "./recorder.js";
import { Results } from "./results.js";
import { Scheduler } from "./scheduler.js";
import { EmbeddedSimulators } from "./simulators.js";
import { createSources, unitsOf } from "./sources.js";

export type { AgentStatus };

const HOUSEKEEPING_MS = 60_000;

export interface AgentOptions {
  log: Logger;
  /** Replaces the sources built from the config (tests). */
  sources?: Source[];
  /** Processors deriving figures and events from the readings. */
  processors?: Processor[];
  /** Actuators reachable by commands (streetlights, chargers). */
  actuators?: Actuator[];
  /** More parts, started after the others (tests, extensions). */
  parts?: Part[];
  /** A poll loop may go this long without finishing a run before the agent is unhealthy (at least 3 intervals). */
  healthGraceMs?: number;
}

interface SourceEntry {
  source: Source;
  type: string;
  errors: number;
  lastError: string | null;
}

export class Agent {
  private readonly log: Logger;
  private readonly parts: Parts;
  private readonly scheduler = new Scheduler();
  private readonly recorder: Recorder;
  private readonly results: Results;
  private readonly processors: Processor[];
  private readonly actuators: Actuator[];
  private readonly controllers: Array<Streetlight | Charger> = [];
  private readonly sources: SourceEntry[] = [];
  private outbox: Outbox | null = null;
  private uplink: Uplink | null = null;
  private startedAt: number | null = null;
  private lastLoopTick = 0;
  private stopping = false;
  private metrics: { readonly url: string | null; countCommand(status: AgentStatus["commands"][number]["status"]): void } | null = null;
  /** The figures at stop, so status() still answers after the outbox is closed. */
  private finalStatus: AgentStatus | null = null;
  opcuaUrl: string | null = null;
  liveFeedUrl: string | null = null;

  constructor(
    private readonly config: Config,
    private readonly opts: AgentOptions,
  ) {
    this.log = opts.log;
    this.parts = new Parts(opts.log);
    this.recorder = new Recorder(() => this.outbox, opts.log);
    this.results = new Results(() => new Set(this.actuators.map((a) => a.name)));
    this.processors = opts.processors ?? createProcessors(config);
    this.actuators = opts.actuators ?? [];
  }

  /** Starts every part in order; an essential one that fails stops what was started and says which. */
  async start(): Promise<void> {
    try {
      await this.startParts();
    } catch (err) {
      await this.parts.stop();
      throw err;
    }
    this.log.info({ site: this.config.site, gateway: this.config.gateway, sources: this.sources.length, version: VERSION }, "agent running");
  }

  private async startParts(): Promise<void> {
    const cfg = this.config;
    const parts = this.parts;
    await parts.start(this.outboxPart(), { essential: true });

    let url = cfg.uplink.url;
    const embedded = cfg.uplink.embedded_broker;
    if (embedded) {
      const broker = new EmbeddedBroker(embedded.port);
      await parts.start(part("embedded broker", async () => {
        url = await broker.start();
        if (broker.portInUseFallback) this.log.warn(`port ${embedded.port} is taken; embedded broker uses ${url} instead`);
        this.log.info(`embedded MQTT broker on ${url} (watch it: edge-agent tail --broker ${url})`);
      }, () => broker.stop()), { essential: true });
    }

    const simulators = new EmbeddedSimulators(cfg.simulators);
    await parts.start(part("simulators", async () => {
      await simulators.start();
      for (const [name, a] of simulators.addresses) this.log.info(`simulator '${name}' serves Modbus TCP on ${a.host}:${a.port}`);
    }, () => simulators.stop()), { essential: true });

    const built = this.opts.sources?.map((source) => ({ source, type: "given" })) ?? createSources(cfg, { log: this.log, simulators: simulators.addresses });
    for (const b of built) this.sources.push({ ...b, errors: 0, lastError: null });
    // Streetlights and chargers: commanded, and fed every tick's readings like processors. They
    // exist before the uplink subscribes, so no early command finds its target missing.
    const sources = this.sources.map((s) => s.source);
    const control = { sources, log: this.log, gpioRelay: (pin: number, activeLow: boolean) => new GpioRelay(new OnoffGpioBackend(), pin, activeLow) };
    for (const l of cfg.streetlights) this.controllers.push(createStreetlight(l, control));
    for (const c of cfg.chargers) this.controllers.push(createCharger(c, control));
    this.actuators.push(...this.controllers);
    this.processors.push(...this.controllers);

    const outbox = this.outbox!;
    const router = new CommandRouter(this.actuators, this.results.sink(outbox, () => this.uplink?.notify("results")), this.log.child({ part: "commands" }));
    const command = (target: string, payload: Buffer | string, origin: "mqtt" | "local") => {
      // While stopping, actuators are in their safe state: nothing may move them again.
      if (this.stopping) return Promise.resolve({ id: null, target, status: "rejected" as const, reason: "the gateway is stopping; send again later", ts: Date.now() });
      return router.handle(target, payload, origin);
    };
    this.uplink = new Uplink({
      // The embedded broker (aedes) speaks 3.1.1 only: no need to ask it for 5 first.
      config: embedded && cfg.uplink.protocol === "auto" ? { ...cfg.uplink, protocol: "3.1.1" } : cfg.uplink,
      site: cfg.site,
      gateway: cfg.gateway,
      version: VERSION,
      outbox,
      log: this.log,
      url,
      // handle() never rejects; the catch is there so that a bug in it could not stop the gateway either.
      onCommand: (target, payload) => void command(target, payload, "mqtt").catch((err: unknown) => this.log.error({ part: "commands", target, err: (err as Error).message }, "command not answered")),
    });
    const uplink = this.uplink;
    this.recorder.listen({ stored: (stream) => uplink.notify(stream) });
    await parts.start(part("uplink", () => uplink.start(), () => uplink.stop()), { essential: true });

    const socketPath = controlSocketPath(cfg);
    if (socketPath) {
      const socket = new ControlSocket(socketPath, async (req) => {
        if (req.op === "status") return this.status();
        if (req.op === "dead-letters") return this.deadLetters(req);
        return command(req.target, req.payload, "local");
      });
      const ok = await parts.start(part("control socket", () => socket.start(), () => socket.stop()));
      if (!ok) this.log.warn(`no control socket at ${socketPath} (edge-agent status and local commands will not reach this agent)`);
    }

    await parts.start(this.sourcesPart());
    // Safe states before the first poll (charger off, streetlight in its automatic state), and
    // first at stop, while the lines are still open.
    await parts.start(this.actuatorsPart(), { safety: true });
    await parts.start(this.loopsPart());
    await parts.start(intervalPart("housekeeping", HOUSEKEEPING_MS, () => this.houseKeep()));
    if (cfg.uplink.health_interval > 0) await parts.start(this.healthPart());
    if (cfg.log.status_interval > 0) await parts.start(intervalPart("status line", cfg.log.status_interval, () => this.log.info(this.statusLine())));
    if (cfg.live_feed) await parts.start(this.liveFeedPart(cfg.live_feed));
    if (cfg.opcua?.server) await parts.start(await this.opcuaPart(cfg.opcua.server, router));
    if (cfg.metrics) await parts.start(await this.metricsPart(cfg.metrics));
    for (const p of this.opts.parts ?? []) await parts.start(p);
  }

  private outboxPart(): Part {
    const cfg = this.config;
    return part(
      "outbox",
      () => {
        const outbox = Outbox.open({ path: cfg.store.path, quota: cfg.store.quota, whenFull: cfg.store.when_full, maxAge: cfg.store.max_age, sync: cfg.store.sync });
        this.outbox = outbox;
        this.log.info({ path: cfg.store.path, pending: outbox.depth, lastSeq: outbox.lastSeq }, "outbox open");
        if (outbox.openedFormat < FORMAT) this.log.info(`outbox upgraded from format ${outbox.openedFormat} to ${FORMAT}; everything pending was kept`);
        for (const s of outbox.skipped) {
          this.log.warn(
            `the last stop was not clean (store.sync: normal): ${s.stream} numbers resume at ${s.to + 1}; ${s.from}..${s.to} are skipped, so what the power cut took back shows as a gap, never as a reused number`,
          );
        }
      },
      () => {
        if (this.outbox && this.uplink) this.finalStatus = this.status();
        this.outbox?.close();
      },
    );
  }

  /** Every source started (a failure is its error, and it is polled anyway: it may come back) and scheduled. */
  private sourcesPart(): Part {
    return part(
      "sources",
      async () => {
        for (const entry of this.sources) {
          try {
            await entry.source.start?.();
          } catch (err) {
            this.noteSourceError(entry, err);
          }
          this.scheduler.add(entry.source.name, entry.source.interval, (tick) => this.tick(entry, tick));
        }
        this.scheduler.start();
      },
      async () => {
        await this.scheduler.stop();
        for (const entry of [...this.sources].reverse()) {
          try {
            await entry.source.stop?.();
          } catch (err) {
            this.noteSourceError(entry, err);
          }
        }
      },
    );
  }

  /** Streetlights and chargers: safe state at start and at stop, each on its own. */
  private actuatorsPart(): Part {
    const each = async (what: string, f: (c: Streetlight | Charger) => Promise<unknown>) => {
      for (const c of this.controllers) {
        await f(c).catch((err: unknown) => this.log.error({ actuator: c.name, err: (err as Error).message }, `could not enter the safe state at ${what}`));
      }
    };
    return part(
      "actuators",
      () => each("start", (c) => c.start()),
      async () => {
        this.stopping = true;
        await each("stop", async (c) => {
          if (c instanceof Charger) {
            // The session's record goes to the outbox like any event.
            const out = await c.stop();
            this.recorder.store(out.readings, out.events);
          } else await c.stop();
        });
      },
    );
  }

  /** The event loop's pulse (for the watchdog) and the processors' second. */
  private loopsPart(): Part {
    const pulse = intervalPart("pulse", 1000, () => (this.lastLoopTick = performance.now()));
    const processors = this.processors.some((p) => p.tick) ? intervalPart("processors", 1000, () => this.tickProcessors()) : null;
    return part(
      "loops",
      async () => {
        this.startedAt = performance.now();
        this.lastLoopTick = this.startedAt;
        await pulse.start();
        await processors?.start();
      },
      async () => {
        await processors?.stop();
        await pulse.stop();
      },
    );
  }

  private healthPart(): Part {
    const cfg = this.config;
    const reporter = new HealthReporter(cfg.gateway, VERSION, cfg.store.path === ":memory:" ? null : dirname(cfg.store.path));
    return intervalPart("health message", cfg.uplink.health_interval, () => {
      try {
        this.uplink?.publishSnapshot(this.uplink.topicNames.health, JSON.stringify(reporter.snapshot(this.status())));
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, "could not publish gateway health");
      }
    });
  }

  private liveFeedPart(cfg: NonNullable<Config["live_feed"]>): Part {
    const feed = new LiveFeed({ host: cfg.host, port: cfg.port });
    return part(
      "live feed",
      async () => {
        const a = await feed.start();
        this.liveFeedUrl = `http://${a.host}:${a.port}`;
        this.recorder.listen({ readings: (r) => feed.update(r) });
        this.log.info(`live feed on ${this.liveFeedUrl}/points and /stream`);
      },
      () => feed.stop(),
    );
  }

  private async opcuaPart(cfg: NonNullable<NonNullable<Config["opcua"]>["server"]>, router: CommandRouter): Promise<Part> {
    // node-opcua (~0.7 s, 60+ MB) is loaded only when the config asks for the server.
    const { OpcuaServerPart } = await import("../opcua/server.js");
    const units = unitsOf(this.config);
    const server = new OpcuaServerPart({
      config: cfg,
      storePath: this.config.store.path,
      router,
      actuators: this.actuators,
      unitOf: (p: string) => units.get(p),
      log: this.log,
      gateway: this.config.gateway,
      version: VERSION,
    });
    return part(
      "OPC UA server",
      async () => {
        this.opcuaUrl = (await server.start()).url;
        this.recorder.listen({ readings: (r) => server.update(r) });
        this.log.info(`OPC UA server on ${this.opcuaUrl}`);
      },
      () => server.stop(),
    );
  }

  private async metricsPart(cfg: NonNullable<Config["metrics"]>): Promise<Part> {
    // prom-client is loaded only when metrics are asked for.
    const { MetricsEndpoint } = await import("../ops/metrics.js");
    const metrics = new MetricsEndpoint({ host: cfg.host, port: cfg.port, status: () => this.status(), healthy: () => this.healthy() });
    return part(
      "metrics",
      async () => {
        await metrics.start();
        this.metrics = metrics;
        this.results.onAnswer((status) => metrics.countCommand(status));
        this.log.info(`metrics on ${metrics.url}/metrics, health on /healthz`);
      },
      () => metrics.stop(),
    );
  }

  private async tick(entry: SourceEntry, tickTs: number): Promise<void> {
    let readings;
    try {
      readings = await entry.source.poll(tickTs);
    } catch (err) {
      this.noteSourceError(entry, err);
      return;
    }
    const derived = this.runProcessors((p, now) => p.process(readings, now));
    this.recorder.store([...readings, ...derived.readings], derived.events);
  }

  private tickProcessors(): void {
    const out = this.runProcessors((p, now) => p.tick?.(now) ?? { readings: [], events: [] });
    this.recorder.store(out.readings, out.events);
  }

  /** Runs every processor; one that throws is logged and skipped, the others still run. */
  private runProcessors(run: (p: Processor, now: number) => ProcessorOutput): ProcessorOutput {
    const all: ProcessorOutput = { readings: [], events: [] };
    const now = Date.now();
    for (const p of this.processors) {
      try {
        const out = run(p, now);
        all.readings.push(...out.readings);
        all.events.push(...out.events);
      } catch (err) {
        this.log.error({ processor: p.name, err: (err as Error).message }, "processor failed");
      }
    }
    return all;
  }

  /** Stores one tick's readings (events in their own stream); for tests and the command path. */
  store(readings: Parameters<Recorder["store"]>[0], events: Parameters<Recorder["store"]>[1] = []): void {
    this.recorder.store(readings, events);
  }

  /** Dead letters given back to their streams (and sent at once), or purged, on an operator's request. */
  private deadLetters(req: DeadLetterRequest): Resent[] | Array<{ stream: string; count: number }> {
    const outbox = this.outbox;
    if (!outbox) throw new Error("agent not started");
    const filter = { ...(req.stream ? { stream: req.stream } : {}), ...(req.seq ? { seq: req.seq } : {}) };
    if (req.action === "purge") {
      const purged = outbox.purgeDeadLetters(filter);
      this.log.warn({ purged }, "dead letters purged on request");
      return purged;
    }
    const resent = outbox.resendDeadLetters(filter);
    for (const r of resent) this.uplink?.resend(r.stream, r.ranges);
    this.log.info({ resent: resent.map((r) => ({ stream: r.stream, count: r.count })) }, "dead letters given back for sending");
    return resent;
  }

  private noteSourceError(entry: SourceEntry, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    entry.errors++;
    if (entry.lastError !== message) this.log.warn({ source: entry.source.name }, message);
    entry.lastError = message;
  }

  private houseKeep(): void {
    try {
      const expired = this.outbox?.expire() ?? 0;
      if (expired > 0) this.log.warn({ readings: expired }, "dropped readings older than store.max_age");
      this.outbox?.checkpoint();
    } catch (err) {
      this.log.error({ err: (err as Error).message }, "outbox housekeeping failed");
    }
  }

  /** Where /metrics and /healthz answer, once started (null without `metrics:`). */
  get metricsUrl(): string | null {
    return this.metrics?.url ?? null;
  }

  /** Every part's typed status, put together: what status, metrics, /healthz and the health message read. */
  status(): AgentStatus {
    if (this.finalStatus) return this.finalStatus;
    if (!this.outbox || !this.uplink) throw new Error("agent not started");
    const sched = this.scheduler.stats();
    const sources: Record<string, SourceStatus> = Object.create(null) as Record<string, SourceStatus>;
    for (const e of this.sources) {
      const s = e.source;
      const detail = s.status?.() ?? { devices: [], buses: [] };
      const health = s.health?.();
      sources[s.name] = {
        type: e.type,
        polls: sched[s.name]?.runs ?? 0,
        overruns: sched[s.name]?.overruns ?? 0,
        errors: e.errors,
        lastError: e.lastError,
        devices: detail.devices,
        buses: detail.buses,
        ...(health !== undefined ? { health } : {}),
      };
    }
    return {
      commands: [...this.results.recent],
      stored: this.recorder.stored,
      events: this.recorder.events,
      refused: this.recorder.refused,
      storeErrors: this.recorder.storeErrors,
      outbox: this.outbox.stats(),
      uplink: this.uplink.stats(),
      sources,
      actuators: Object.fromEntries(this.actuators.map((a) => [a.name, a.state()])),
      parts: this.parts.status(),
    };
  }

  /**
   * What keeps the agent from being healthy: a poll loop that has not finished a run for three
   * intervals (a minute at least), or housekeeping that stopped. Empty when healthy. Fed to
   * /healthz and to the systemd watchdog, so a stuck agent is restarted.
   */
  healthProblems(): string[] {
    if (this.startedAt === null) return ["not started"];
    return healthProblems({
      now: performance.now(),
      startedAt: this.startedAt,
      lastLoopTick: this.lastLoopTick,
      loopMaxLagMs: 10_000,
      graceMs: this.opts.healthGraceMs ?? 60_000,
      tasks: this.scheduler.health(),
    });
  }

  healthy(): boolean {
    return this.healthProblems().length === 0;
  }

  /** `stored 1200 · sent 1180 · pending 20 · broker online` */
  statusLine(): string {
    const s = this.status();
    const dropped = droppedTotal(s.outbox.dropped);
    const parts = [`stored ${s.stored}`, `sent ${s.uplink.readingsAcked}`, `pending ${s.outbox.depth}`, `broker ${s.uplink.state}`];
    if (dropped > 0) parts.push(`dropped ${dropped}`);
    if (s.uplink.state !== "online" && s.uplink.lastError) parts.push(s.uplink.lastError);
    return parts.join(" · ");
  }

  /** Stops every part in reverse: actuators first into their safe state, then the rest, each on its own. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.parts.stop();
    if (this.finalStatus) this.finalStatus = { ...this.finalStatus, parts: this.parts.status() };
    this.log.info("agent stopped");
  }
}
