/**
 * The agent: a short composition of parts — outbox, broker, simulators, uplink, control socket,
 * sources, actuators, timers, live feed, OPC UA, metrics — started in that order and stopped in
 * reverse by Parts (agent/parts.ts): actuators first, into their safe state, while the buses are
 * still open; every stop isolated. Each part reports a typed status; status() puts them together.
 */
import { dirname, join } from "node:path";
import { budgetThinner } from "../uplink/budget.js";
import type { Charger } from "../control/charger.js";
import { type Actuator, CommandRouter } from "../control/commands.js";
import type { Streetlight } from "../control/streetlight.js";
import type { CommandResult } from "../model/command.js";
import type { Logger } from "../model/logger.js";
import type { Processor } from "../model/processor.js";
import type { AgentStatus } from "../model/status.js";
import { ControlSocket, controlSocketPath, type DeadLetterRequest } from "../ops/control-socket.js";
import { HealthReporter } from "../ops/health.js";
import { healthProblems } from "../ops/systemd.js";
import { createProcessors } from "../processors/create.js";
import type { Source } from "../sources/source.js";
import { droppedTotal } from "../store/drops.js";
import type { Resent } from "../store/outbox.js";
import { EmbeddedBroker } from "../uplink/embedded-broker.js";
import { Uplink } from "../uplink/uplink.js";
import { VERSION } from "../version.js";
import type { Config } from "./config.js";
import { intervalPart, type Part, part, Parts } from "./parts.js";
import { ActuatorsPart } from "./parts/actuators.js";
import { OutboxPart } from "./parts/outbox.js";
import { Polling } from "./parts/polling.js";
import { liveFeedPart, type MetricsHandle, metricsPart, opcuaPart } from "./parts/servers.js";
import { Recorder } from "./recorder.js";
import { Results } from "./results.js";
import { Scheduler } from "./scheduler.js";
import { EmbeddedSimulators } from "./simulators.js";
import { createSources } from "./sources.js";

export type { AgentStatus };

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

export class Agent {
  private readonly log: Logger;
  private readonly parts: Parts;
  private readonly scheduler = new Scheduler();
  private readonly recorder: Recorder;
  private readonly results: Results;
  private readonly store_: OutboxPart;
  private readonly processors: Processor[];
  private readonly actuators: Actuator[];
  private polling: Polling | null = null;
  private router: CommandRouter | null = null;
  private uplink: Uplink | null = null;
  private metrics: MetricsHandle | null = null;
  private startedAt: number | null = null;
  private lastLoopTick = 0;
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
    this.store_ = new OutboxPart(config.store, opts.log, () => {
      this.recorder.flush();
      if (this.uplink) this.finalStatus = this.status();
    });
    this.recorder = new Recorder(() => this.store_.outbox, opts.log);
    this.results = new Results(() => new Set(this.router?.targets() ?? this.actuators.map((a) => a.name)));
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
    this.log.info({ site: this.config.site, gateway: this.config.gateway, sources: this.polling?.sources.length ?? 0, version: VERSION }, "agent running");
  }

  private async startParts(): Promise<void> {
    const cfg = this.config;
    const parts = this.parts;
    const log = this.log;
    await parts.start(this.store_, { essential: true });
    let url = cfg.uplink.url;
    const embedded = cfg.uplink.embedded_broker;
    if (embedded) {
      const broker = new EmbeddedBroker(embedded.port);
      const start = async () => {
        url = await broker.start();
        if (broker.portInUseFallback) log.warn(`port ${embedded.port} is taken; embedded broker uses ${url} instead`);
        log.info(`embedded MQTT broker on ${url} (watch it: edge-agent tail --broker ${url})`);
      };
      await parts.start(part("embedded broker", start, () => broker.stop()), { essential: true });
    }
    const simulators = new EmbeddedSimulators(cfg.simulators);
    const startSimulators = async () => {
      await simulators.start();
      for (const [name, a] of simulators.addresses) log.info(`simulator '${name}' serves Modbus TCP on ${a.host}:${a.port}`);
    };
    await parts.start(part("simulators", startSimulators, () => simulators.stop()), { essential: true });

    // Sources, then the streetlights and chargers that use their devices: they exist before the
    // uplink subscribes, so no early command finds its target missing.
    const sources = this.opts.sources?.map((source) => ({ source, type: "given" })) ?? (await createSources(cfg, { log, simulators: simulators.addresses, cursor: (key) => this.store_.outbox?.cursor(key) }));
    const controllers: Array<Streetlight | Charger> = [];
    if (cfg.streetlights.length > 0 || cfg.chargers.length > 0) {
      // Loaded only for a config with actuators: their command schemas (zod), the sun's course.
      const [{ createCharger, createStreetlight }, { GpioRelay }, { OnoffGpioBackend }] = await Promise.all([
        import("./actuators.js"),
        import("../control/relay.js"),
        import("../buses/gpio/onoff-backend.js"),
      ]);
      const control = { sources: sources.map((s) => s.source), log, gpioRelay: (pin: number, activeLow: boolean) => new GpioRelay(new OnoffGpioBackend(), pin, activeLow) };
      for (const l of cfg.streetlights) controllers.push(createStreetlight(l, control));
      for (const c of cfg.chargers) controllers.push(createCharger(c, control));
    }
    this.actuators.push(...controllers);
    // Firmware updates (loaded only with `updates:`): an `update` action on each board's target.
    const updates = cfg.updates ? (await import("./parts/updates.js")).createUpdates(cfg, sources, (events) => this.recorder.store([], events), log) : null;
    const boardTargets = sources.flatMap((s) => s.source.actuators?.() ?? []);
    this.actuators.push(...(updates ? updates.wrap(boardTargets) : boardTargets));
    this.processors.push(...controllers);
    this.polling = new Polling(sources, this.processors, this.scheduler, this.recorder, log);
    const outbox = this.store_.outbox!;
    const router = new CommandRouter(this.actuators, this.results.sink(outbox, () => this.uplink?.notify("results")), log.child({ part: "commands" }));
    this.router = router;
    // The gateway's own `outbox` target: replays the platform asks for (built at the first one).
    const replayTarget = async () => (await import("./outbox-target.js")).outboxTarget(outbox, (stream, ranges) => this.uplink?.replay(stream, ranges), log.child({ part: "outbox" }));
    if (!router.defer("outbox", replayTarget)) log.warn("a target is named 'outbox': replays (action replay) are not available under that name");
    const command = (target: string, payload: Buffer | string, origin: "mqtt" | "local"): Promise<CommandResult> => router.handle(target, payload, origin);
    const safety = new ActuatorsPart(controllers, this.recorder, log, () => router.close());
    const uplink = new Uplink({
      // The embedded broker (aedes) speaks 3.1.1 only: no need to ask it for 5 first.
      config: embedded && cfg.uplink.protocol === "auto" ? { ...cfg.uplink, protocol: "3.1.1" } : cfg.uplink,
      site: cfg.site,
      gateway: cfg.gateway,
      version: VERSION,
      outbox,
      log,
      url,
      dictionaryPath: cfg.store.path === ":memory:" ? null : join(dirname(cfg.store.path), "dictionary.json"),
      budgetPath: cfg.store.path === ":memory:" ? null : join(dirname(cfg.store.path), "data-budget.json"),
      // The forecast crossing the budget (or back) is an event for the platform.
      onBudget: (snap, over) => this.recorder.store([], [{ point: `${cfg.gateway}/data_budget`, ts: Date.now(), value: JSON.stringify({ ...snap, over }), quality: "good" }]),
      // handle() never rejects; the catch is there so that a bug in it could not stop the gateway either.
      onCommand: (target, payload) => void command(target, payload, "mqtt").catch((err: unknown) => log.error({ part: "commands", target, err: (err as Error).message }, "command not answered")),
    });
    this.uplink = uplink;
    this.recorder.listen({ stored: (stream) => uplink.notify(stream) });
    const budget = cfg.uplink.budget;
    if (budget && budget.non_critical.length > 0) this.recorder.thin(budgetThinner(budget.non_critical, budget.non_critical_interval, () => uplink.budgetSaving));
    await parts.start(part("uplink", () => uplink.start(), () => uplink.stop()), { essential: true });

    const socketPath = controlSocketPath(cfg);
    if (socketPath) {
      const socket = new ControlSocket(socketPath, async (req) => {
        if (req.op === "status") return this.status();
        if (req.op === "dead-letters") return this.deadLetters(req);
        if (req.op === "command") return command(req.target, req.payload, "local");
        if (!updates) throw new Error("firmware updates are off in this agent's config (no `updates:` section)");
        return updates.control(req);
      });
      if (!(await parts.start(part("control socket", () => socket.start(), () => socket.stop())))) {
        log.warn(`no control socket at ${socketPath} (edge-agent status and local commands will not reach this agent)`);
      }
    }
    if (updates) await parts.start(updates.part);
    await parts.start(this.polling);
    await parts.start(safety, { safety: true });
    await parts.start(this.loops());
    await parts.start(this.store_.housekeeping());
    if (cfg.uplink.health_interval > 0) await parts.start(this.healthMessage());
    if (cfg.log.status_interval > 0) await parts.start(intervalPart("status line", cfg.log.status_interval, () => log.info(this.statusLine())));
    if (cfg.live_feed) await parts.start(await liveFeedPart(cfg, this.recorder, log, (u) => (this.liveFeedUrl = u), () => this.status()));
    if (cfg.opcua?.server) await parts.start(await opcuaPart(cfg, cfg.opcua.server, { router, actuators: this.actuators, recorder: this.recorder, log }, (u) => (this.opcuaUrl = u)));
    if (cfg.metrics) {
      const bound = (m: MetricsHandle) => {
        this.metrics = m;
        this.results.onAnswer((status) => m.countCommand(status));
      };
      await parts.start(await metricsPart(cfg.metrics, { status: () => this.status(), healthy: () => this.healthy(), log }, bound));
    }
    for (const p of this.opts.parts ?? []) await parts.start(p);
  }

  /** The event loop's pulse (for the watchdog) and the processors' second. */
  private loops(): Part {
    const pulse = intervalPart("pulse", 1000, () => (this.lastLoopTick = performance.now()));
    const polling = this.polling!;
    const processors = this.processors.some((p) => p.tick) ? intervalPart("processors", 1000, () => polling.tickProcessors()) : null;
    const start = async () => {
      this.startedAt = performance.now();
      this.lastLoopTick = this.startedAt;
      await pulse.start();
      await processors?.start();
    };
    return part("loops", start, async () => {
      await processors?.stop();
      await pulse.stop();
    });
  }

  private healthMessage(): Part {
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

  /** Stores one tick's readings (events in their own stream), as a source's poll would. */
  store(readings: Parameters<Recorder["store"]>[0], events: Parameters<Recorder["store"]>[1] = []): void {
    this.recorder.store(readings, events);
  }

  /** Dead letters given back to their streams (and sent at once), or purged, on an operator's request. */
  private deadLetters(req: DeadLetterRequest): Resent[] | Array<{ stream: string; count: number }> {
    const outbox = this.store_.outbox;
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

  /** Where /metrics and /healthz answer, once started (null without `metrics:`). */
  get metricsUrl(): string | null {
    return this.metrics?.url ?? null;
  }

  /** Every part's typed status, put together: what status, metrics, /healthz and the health message read. */
  status(): AgentStatus {
    if (this.finalStatus) return this.finalStatus;
    const outbox = this.store_.outbox;
    if (!outbox || !this.uplink) throw new Error("agent not started");
    return {
      commands: [...this.results.recent],
      stored: this.recorder.stored,
      events: this.recorder.events,
      refused: this.recorder.refused,
      storeErrors: this.recorder.storeErrors,
      thinned: this.recorder.thinned,
      outbox: outbox.stats(),
      uplink: this.uplink.stats(),
      sources: this.polling?.status() ?? {},
      actuators: Object.fromEntries(this.actuators.map((a) => [a.name, a.state()])),
      parts: this.parts.status(),
    };
  }

  /**
   * What keeps the agent from being healthy: a poll loop that has not finished a run for three
   * intervals (a minute at least), or a blocked event loop. Empty when healthy. Fed to /healthz
   * and to the systemd watchdog, so a stuck agent is restarted.
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
    // Refused from now on (also before the actuators' own part stops them): nothing moves an actuator while it goes safe.
    void this.router?.close();
    await this.parts.stop();
    if (this.finalStatus) this.finalStatus = { ...this.finalStatus, parts: this.parts.status() };
    this.log.info("agent stopped");
  }
}
