/**
 * Composes the agent from its config: outbox, (embedded broker), uplink, sources on a scheduler.
 * Parts start in that order and stop in reverse; stopping flushes what is buffered.
 */
import { dirname } from "node:path";
import type { Config } from "./config.js";
import type { Reading } from "../model/reading.js";
import type { Logger } from "../ops/logger.js";
import { Charger } from "../control/charger.js";
import { type Actuator, type CommandResult, CommandRouter, rememberedIn } from "../control/commands.js";
import { GpioRelay } from "../control/relay.js";
import type { Streetlight } from "../control/streetlight.js";
import { OnoffGpioBackend } from "../buses/gpio/onoff-backend.js";
import { createProcessors } from "../processors/create.js";
import { ControlSocket, controlSocketPath, type DeadLetterRequest } from "../ops/control-socket.js";
import { HealthReporter } from "../ops/health.js";
import { LiveFeed } from "../ops/live-feed.js";
import { healthProblems } from "../ops/systemd.js";
import type { Processor, ProcessorOutput } from "../processors/processor.js";
import type { Source } from "../sources/source.js";
import { droppedTotal } from "../store/drops.js";
import { FORMAT, Outbox, type OutboxStats, type Resent } from "../store/outbox.js";
import { EmbeddedBroker } from "../uplink/embedded-broker.js";
import { Uplink, type UplinkStats } from "../uplink/uplink.js";
import { VERSION } from "../version.js";
import { Scheduler } from "./scheduler.js";
import type { OpcuaServerPart } from "../opcua/server.js";
import { createCharger, createStreetlight } from "./actuators.js";
import { EmbeddedSimulators } from "./simulators.js";
import { createSources, unitsOf } from "./sources.js";

const HOUSEKEEPING_MS = 60_000;

export interface AgentStatus {
  /** The last command results, newest last. */
  commands: CommandResult[];
  stored: number;
  events: number;
  refused: number;
  storeErrors: number;
  outbox: OutboxStats;
  uplink: UplinkStats;
  sources: Record<string, { polls: number; overruns: number; errors: number; lastError: string | null; health?: unknown }>;
  actuators: Record<string, Record<string, unknown>>;
}

export interface AgentOptions {
  log: Logger;
  /** Replaces the sources built from the config (tests). */
  sources?: Source[];
  /** Processors deriving figures and events from the readings. */
  processors?: Processor[];
  /** Actuators reachable by commands (streetlights, chargers). */
  actuators?: Actuator[];
  /** A poll loop may go this long without finishing a run before the agent is unhealthy (at least 3 intervals). */
  healthGraceMs?: number;
}


export class Agent {
  private outbox: Outbox | null = null;
  private broker: EmbeddedBroker | null = null;
  private uplink: Uplink | null = null;
  private readonly scheduler = new Scheduler();
  private sources: Source[];
  private readonly simulators: EmbeddedSimulators;
  private readonly sourceStats = new Map<string, { errors: number; lastError: string | null }>();
  private readonly processors: Processor[];
  private readonly actuators: Actuator[];
  private readonly controllers: Array<Streetlight | Charger> = [];
  private router: CommandRouter | null = null;
  private control: ControlSocket | null = null;
  private readonly recentResults: CommandResult[] = [];
  private processorTimer: NodeJS.Timeout | null = null;
  private events = 0;
  private housekeeping: NodeJS.Timeout | null = null;
  private healthTimer: NodeJS.Timeout | null = null;
  private pulse: NodeJS.Timeout | null = null;
  private startedAt: number | null = null;
  private readonly healthGraceMs: number;
  private lastLoopTick = 0;
  private metrics: { readonly url: string | null; stop(): Promise<void>; countCommand(status: CommandResult["status"]): void } | null = null;
  private liveFeed: LiveFeed | null = null;
  private opcua: OpcuaServerPart | null = null;
  opcuaUrl: string | null = null;
  liveFeedUrl: string | null = null;
  private statusTimer: NodeJS.Timeout | null = null;
  private stored = 0;
  private refused = 0;
  private storeErrors = 0;
  /** The figures at stop, so status() still answers after the outbox is closed. */
  private finalStatus: AgentStatus | null = null;
  private readonly log: Logger;
  private readonly givenSources: boolean;

  constructor(
    private readonly config: Config,
    opts: AgentOptions,
  ) {
    this.log = opts.log;
    this.sources = opts.sources ?? [];
    this.givenSources = opts.sources !== undefined;
    this.simulators = new EmbeddedSimulators(config.simulators);
    this.processors = opts.processors ?? createProcessors(config);
    this.actuators = opts.actuators ?? [];
    this.healthGraceMs = opts.healthGraceMs ?? 60_000;
  }

  async start(): Promise<void> {
    const cfg = this.config;
    this.outbox = Outbox.open({
      path: cfg.store.path,
      quota: cfg.store.quota,
      whenFull: cfg.store.when_full,
      maxAge: cfg.store.max_age,
      sync: cfg.store.sync,
    });
    this.log.info({ path: cfg.store.path, pending: this.outbox.depth, lastSeq: this.outbox.lastSeq }, "outbox open");
    if (this.outbox.openedFormat < FORMAT) this.log.info(`outbox upgraded from format ${this.outbox.openedFormat} to ${FORMAT}; everything pending was kept`);
    for (const s of this.outbox.skipped) {
      this.log.warn(
        `the last stop was not clean (store.sync: normal): ${s.stream} numbers resume at ${s.to + 1}; ${s.from}..${s.to} are skipped, so what the power cut took back shows as a gap, never as a reused number`,
      );
    }

    let url = cfg.uplink.url;
    if (cfg.uplink.embedded_broker) {
      this.broker = new EmbeddedBroker(cfg.uplink.embedded_broker.port);
      url = await this.broker.start();
      if (this.broker.portInUseFallback) {
        this.log.warn(`port ${cfg.uplink.embedded_broker.port} is taken; embedded broker uses ${url} instead`);
      }
      this.log.info(`embedded MQTT broker on ${url} (watch it: edge-agent tail --broker ${url})`);
    }

    await this.simulators.start();
    for (const [name, a] of this.simulators.addresses) this.log.info(`simulator '${name}' serves Modbus TCP on ${a.host}:${a.port}`);
    if (!this.givenSources) this.sources = createSources(cfg, { log: this.log, simulators: this.simulators.addresses });
    // Streetlights and chargers: commanded, and fed every tick's readings like processors. They
    // exist before the uplink subscribes, so no early command finds its target missing.
    const control = { sources: this.sources, log: this.log, gpioRelay: (pin: number, activeLow: boolean) => new GpioRelay(new OnoffGpioBackend(), pin, activeLow) };
    for (const l of cfg.streetlights) this.controllers.push(createStreetlight(l, control));
    for (const c of cfg.chargers) this.controllers.push(createCharger(c, control));
    this.actuators.push(...this.controllers);
    this.processors.push(...this.controllers);

    const outbox = this.outbox;
    this.router = new CommandRouter(
      this.actuators,
      {
        ...rememberedIn(outbox),
        publish: (result) => {
          const json = JSON.stringify(result);
          // The row's name is not sent; a fixed one for unknown targets keeps garbage topics out of the points table.
          const point = this.actuators.some((a) => a.name === result.target) ? result.target : "(unknown target)";
          outbox.stream("results").append([{ point, ts: result.ts, value: json, quality: "good" }]);
          this.recentResults.push(result);
          this.metrics?.countCommand(result.status);
          if (this.recentResults.length > 20) this.recentResults.shift();
          this.uplink?.notify("results");
        },
      },
      this.log.child({ part: "commands" }),
    );
    const router = this.router;
    this.uplink = new Uplink({
      // The embedded broker (aedes) speaks 3.1.1 only: no need to ask it for 5 first.
      config: cfg.uplink.embedded_broker && cfg.uplink.protocol === "auto" ? { ...cfg.uplink, protocol: "3.1.1" } : cfg.uplink,
      site: cfg.site,
      gateway: cfg.gateway,
      version: VERSION,
      outbox: this.outbox,
      log: this.log,
      url,
      // handle() never rejects; the catch is there so that a bug in it could not stop the gateway either.
      onCommand: (target: string, payload: Buffer) => void router.handle(target, payload, "mqtt").catch((err: unknown) => this.log.error({ part: "commands", target, err: (err as Error).message }, "command not answered")),
    });
    this.uplink.start();

    const socketPath = controlSocketPath(cfg);
    if (socketPath) {
      this.control = new ControlSocket(socketPath, async (req) => {
        if (req.op === "status") return this.status();
        if (req.op === "dead-letters") return this.deadLetters(req);
        return router.handle(req.target, req.payload, "local");
      });
      try {
        await this.control.start();
      } catch (err) {
        this.control = null;
        this.log.warn(`no control socket at ${socketPath}: ${(err as Error).message} (edge-agent status and local commands will not reach this agent)`);
      }
    }


    for (const source of this.sources) {
      this.sourceStats.set(source.name, { errors: 0, lastError: null });
      try {
        await source.start?.();
      } catch (err) {
        this.noteSourceError(source, err);
      }
      this.scheduler.add(source.name, source.interval, (tick) => this.tick(source, tick));
    }
    // Safe states before the first poll: charger off, streetlight in its automatic state.
    for (const c of this.controllers) {
      await c.start().catch((err: unknown) => this.log.error({ actuator: c.name, err: (err as Error).message }, "could not enter the safe state"));
    }
    this.scheduler.start();
    this.startedAt = performance.now();
    this.lastLoopTick = this.startedAt;
    // The loop's own pulse: the uplink, commands and timers all live on this event loop.
    this.pulse = setInterval(() => (this.lastLoopTick = performance.now()), 1000);
    this.pulse.unref();
    if (this.processors.some((p) => p.tick)) {
      this.processorTimer = setInterval(() => this.tickProcessors(), 1000);
      this.processorTimer.unref();
    }

    this.housekeeping = setInterval(() => this.houseKeep(), HOUSEKEEPING_MS);
    this.housekeeping.unref();
    if (cfg.uplink.health_interval > 0) {
      const reporter = new HealthReporter(cfg.gateway, VERSION, cfg.store.path === ":memory:" ? null : dirname(cfg.store.path));
      const topic = this.uplink.topicNames.health;
      this.healthTimer = setInterval(() => {
        try {
          this.uplink?.publishSnapshot(topic, JSON.stringify(reporter.snapshot(this.status())));
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, "could not publish gateway health");
        }
      }, cfg.uplink.health_interval);
      this.healthTimer.unref();
    }
    if (cfg.log.status_interval > 0) {
      this.statusTimer = setInterval(() => this.log.info(this.statusLine()), cfg.log.status_interval);
      this.statusTimer.unref();
    }
    if (cfg.live_feed) {
      const feed = new LiveFeed({ host: cfg.live_feed.host, port: cfg.live_feed.port });
      try {
        const a = await feed.start();
        this.liveFeed = feed;
        this.liveFeedUrl = `http://${a.host}:${a.port}`;
        this.log.info(`live feed on ${this.liveFeedUrl}/points and /stream`);
      } catch (err) {
        this.log.warn((err as Error).message);
      }
    }
    if (cfg.opcua?.server) {
      // node-opcua (~0.7 s, 60+ MB) is loaded only when the config asks for the server.
      const { OpcuaServerPart } = await import("../opcua/server.js");
      const units = unitsOf(cfg);
      const part = new OpcuaServerPart({
        config: cfg.opcua.server,
        storePath: cfg.store.path,
        router: this.router,
        actuators: this.actuators,
        unitOf: (p: string) => units.get(p),
        log: this.log,
        gateway: cfg.gateway,
        version: VERSION,
      });
      try {
        this.opcuaUrl = (await part.start()).url;
        this.opcua = part;
        this.log.info(`OPC UA server on ${this.opcuaUrl}`);
      } catch (err) {
        this.log.warn(`no OPC UA server: ${(err as Error).message}`);
      }
    }
    if (cfg.metrics) {
      // prom-client is loaded only when metrics are asked for.
      const { MetricsEndpoint } = await import("../ops/metrics.js");
      const metrics = new MetricsEndpoint({ host: cfg.metrics.host, port: cfg.metrics.port, status: () => this.status(), healthy: () => this.healthy() });
      try {
        await metrics.start();
        this.metrics = metrics;
        this.log.info(`metrics on ${metrics.url}/metrics, health on /healthz`);
      } catch (err) {
        this.log.warn(`no metrics endpoint: ${(err as Error).message}`);
      }
    }
    this.log.info(
      { site: cfg.site, gateway: cfg.gateway, sources: this.sources.length, version: VERSION },
      "agent running",
    );
  }

  private async tick(source: Source, tickTs: number): Promise<void> {
    let readings: Reading[];
    try {
      readings = await source.poll(tickTs);
    } catch (err) {
      this.noteSourceError(source, err);
      return;
    }
    const derived = this.runProcessors((p, now) => p.process(readings, now));
    this.store([...readings, ...derived.readings], derived.events);
  }

  private tickProcessors(): void {
    const out = this.runProcessors((p, now) => p.tick?.(now) ?? { readings: [], events: [] });
    this.store(out.readings, out.events);
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

  /** Stores one tick's readings in one transaction (events in their own stream) and wakes the uplink. */
  store(readings: Reading[], events: Reading[] = []): void {
    if (!this.outbox) return;
    if (readings.length > 0) this.opcua?.update(readings);
    try {
      if (readings.length > 0) {
        const result = this.outbox.append(readings);
        this.stored += result.stored;
        this.refused += result.refused;
      }
      if (events.length > 0) {
        this.outbox.stream("events").append(events);
        this.events += events.length;
      }
    } catch (err) {
      this.storeErrors++;
      this.log.error({ err: (err as Error).message }, "could not store readings");
      return;
    }
    if (readings.length > 0) {
      this.uplink?.notify("telemetry");
      this.liveFeed?.update(readings);
    }
    if (events.length > 0) this.uplink?.notify("events");
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

  private noteSourceError(source: Source, err: unknown): void {
    const s = this.sourceStats.get(source.name);
    const message = err instanceof Error ? err.message : String(err);
    if (s) {
      s.errors++;
      if (s.lastError !== message) this.log.warn({ source: source.name }, message);
      s.lastError = message;
    }
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

  status(): AgentStatus {
    if (this.finalStatus) return this.finalStatus;
    if (!this.outbox || !this.uplink) throw new Error("agent not started");
    const sched = this.scheduler.stats();
    return {
      commands: [...this.recentResults],
      stored: this.stored,
      events: this.events,
      refused: this.refused,
      storeErrors: this.storeErrors,
      outbox: this.outbox.stats(),
      uplink: this.uplink.stats(),
      sources: Object.fromEntries(
        this.sources.map((s) => {
          const st = this.sourceStats.get(s.name);
          const health = s.health?.();
          return [s.name, { polls: sched[s.name]?.runs ?? 0, overruns: sched[s.name]?.overruns ?? 0, errors: st?.errors ?? 0, lastError: st?.lastError ?? null, ...(health !== undefined ? { health } : {}) }];
        }),
      ),
      actuators: Object.fromEntries(this.actuators.map((a) => [a.name, a.state()])),
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
      graceMs: this.healthGraceMs,
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
    const parts = [
      `stored ${s.stored}`,
      `sent ${s.uplink.readingsAcked}`,
      `pending ${s.outbox.depth}`,
      `broker ${s.uplink.state}`,
    ];
    if (dropped > 0) parts.push(`dropped ${dropped}`);
    if (s.uplink.state !== "online" && s.uplink.lastError) parts.push(s.uplink.lastError);
    return parts.join(" · ");
  }

  /** Stops in reverse order: sources, uplink (flushing), outbox, broker. */
  async stop(): Promise<void> {
    if (this.housekeeping) clearInterval(this.housekeeping);
    if (this.processorTimer) clearInterval(this.processorTimer);
    if (this.healthTimer) clearInterval(this.healthTimer);
    if (this.pulse) clearInterval(this.pulse);
    if (this.statusTimer) clearInterval(this.statusTimer);
    await this.metrics?.stop();
    await this.liveFeed?.stop();
    await this.opcua?.stop();
    await this.control?.stop();
    await this.scheduler.stop();
    // Safe states while the lines are still open: chargers off, sessions recorded.
    for (const c of this.controllers) {
      if (c instanceof Charger) {
        const out = await c.stop();
        this.store(out.readings, out.events);
      }
    }
    for (const source of [...this.sources].reverse()) {
      try {
        await source.stop?.();
      } catch (err) {
        this.noteSourceError(source, err);
      }
    }
    await this.simulators.stop();
    await this.uplink?.stop();
    if (this.outbox && this.uplink) this.finalStatus = this.status();
    this.outbox?.close();
    await this.broker?.stop();
    this.log.info("agent stopped");
  }
}
