/**
 * The agent's optional listeners as parts: the live feed (HTTP, SSE), the OPC UA server and the
 * Prometheus endpoint. Each is loaded only when the config asks for it (node-opcua ~60 MB,
 * prom-client), and one that cannot start is reported while the rest runs.
 */
import type { Actuator, CommandRouter } from "../../control/commands.js";
import type { CommandStatus } from "../../model/command.js";
import type { Logger } from "../../model/logger.js";
import type { AgentStatus } from "../../model/status.js";
import type { PageStatus } from "../../ops/live-feed.js";
import { VERSION } from "../../version.js";
import type { Config } from "../config.js";
import { type Part, part } from "../parts.js";
import type { Recorder } from "../recorder.js";

export async function liveFeedPart(config: Config, recorder: Recorder, log: Logger, bound: (url: string) => void, status: () => AgentStatus): Promise<Part> {
  const cfg = config.live_feed!;
  // Loaded when configured (node:http with it), like the OPC UA server and the metrics below.
  const { LiveFeed } = await import("../../ops/live-feed.js");
  const { unitsOf } = await import("../point-units.js");
  const units = unitsOf(config);
  const rooms = config.rooms.map((r) => {
    const u: Record<string, string> = Object.create(null) as Record<string, string>;
    if (r.co2) u[r.co2] = units.get(r.co2) ?? "ppm";
    if (r.temperature) u[r.temperature] = units.get(r.temperature) ?? "°C";
    if (r.humidity) u[r.humidity] = units.get(r.humidity) ?? "%";
    const dew = r.temperature && r.humidity ? `${r.name}/dew_point` : undefined;
    if (dew) u[dew] = "°C";
    return {
      name: r.name,
      title: r.title ?? r.name,
      ...(r.co2 ? { co2: r.co2 } : {}),
      ...(r.temperature ? { temperature: r.temperature } : {}),
      ...(r.humidity ? { humidity: r.humidity } : {}),
      ...(dew ? { dewPoint: dew } : {}),
      occupied: `${r.name}/occupied`,
      presence: r.presence !== undefined,
      co2Band: `${r.name}/co2_band`,
      units: u,
    };
  });
  const feed = new LiveFeed({
    host: cfg.host,
    port: cfg.port,
    ...(cfg.token ? { token: cfg.token } : {}),
    language: cfg.language,
    ...(cfg.labels ? { labels: cfg.labels } : {}),
    staleAfterMs: cfg.stale_after,
    historyMs: cfg.history,
    site: config.site,
    gateway: config.gateway,
    rooms,
    units,
    status: () => pageStatus(status()),
  });
  return part(
    "live feed",
    async () => {
      const a = await feed.start();
      const host = a.host === "0.0.0.0" || a.host === "::" ? "127.0.0.1" : a.host.includes(":") ? `[${a.host}]` : a.host;
      const url = `http://${host}:${a.port}`;
      bound(url);
      recorder.listen({ readings: (r) => feed.update(r) });
      const t = cfg.token ? "?token=…" : "";
      log.info(`gateway page ${url}/${t}${rooms.map((r) => ` · room display ${url}/display/${encodeURIComponent(r.name)}${t}`).join("")} · data ${url}/points and /stream`);
    },
    () => feed.stop(),
  );
}

/** What the gateway page shows besides the values: no command history, no credentials. */
function pageStatus(s: AgentStatus): PageStatus {
  return {
    version: VERSION,
    uplink: { state: s.uplink.state, broker: s.uplink.broker, protocol: s.uplink.protocol, lastError: s.uplink.lastError },
    outbox: { depth: s.outbox.depth, oldestAgeMs: s.outbox.oldestAgeMs, dropped: { ...s.outbox.dropped }, deadLetters: s.outbox.deadLetters.count },
    sources: Object.entries(s.sources).map(([name, src]) => ({
      name,
      type: src.type,
      lastError: src.lastError,
      devices: src.devices.map((d) => ({ name: d.name, online: d.online, lastError: d.lastError })),
    })),
    actuators: s.actuators,
  };
}

export async function opcuaPart(
  config: Config,
  cfg: NonNullable<NonNullable<Config["opcua"]>["server"]>,
  deps: { router: CommandRouter; actuators: readonly Actuator[]; recorder: Recorder; log: Logger },
  bound: (url: string) => void,
): Promise<Part> {
  const { OpcuaServerPart } = await import("../../opcua/server.js");
  const { unitsOf } = await import("../point-units.js");
  const units = unitsOf(config);
  const server = new OpcuaServerPart({
    config: cfg,
    storePath: config.store.path,
    router: deps.router,
    actuators: [...deps.actuators],
    unitOf: (p: string) => units.get(p),
    log: deps.log,
    gateway: config.gateway,
    version: VERSION,
  });
  return part(
    "OPC UA server",
    async () => {
      const url = (await server.start()).url;
      bound(url);
      deps.recorder.listen({ readings: (r) => server.update(r) });
      deps.log.info(`OPC UA server on ${url}`);
    },
    () => server.stop(),
  );
}

export interface MetricsHandle {
  readonly url: string | null;
  countCommand(status: CommandStatus): void;
}

export async function metricsPart(
  cfg: NonNullable<Config["metrics"]>,
  deps: { status: () => AgentStatus; healthy: () => boolean; log: Logger },
  bound: (metrics: MetricsHandle) => void,
): Promise<Part> {
  const { MetricsEndpoint } = await import("../../ops/metrics.js");
  const metrics = new MetricsEndpoint({ host: cfg.host, port: cfg.port, status: deps.status, healthy: deps.healthy });
  return part(
    "metrics",
    async () => {
      await metrics.start();
      bound(metrics);
      deps.log.info(`metrics on ${metrics.url}/metrics, health on /healthz`);
    },
    () => metrics.stop(),
  );
}
