/**
 * The agent's optional listeners as parts: the live feed (HTTP, SSE), the OPC UA server and the
 * Prometheus endpoint. Each is loaded only when the config asks for it (node-opcua ~60 MB,
 * prom-client), and one that cannot start is reported while the rest runs.
 */
import type { Actuator, CommandRouter } from "../../control/commands.js";
import type { CommandStatus } from "../../model/command.js";
import type { Logger } from "../../model/logger.js";
import type { AgentStatus } from "../../model/status.js";
import { VERSION } from "../../version.js";
import type { Config } from "../config.js";
import { type Part, part } from "../parts.js";
import type { Recorder } from "../recorder.js";

export async function liveFeedPart(cfg: NonNullable<Config["live_feed"]>, recorder: Recorder, log: Logger, bound: (url: string) => void): Promise<Part> {
  // Loaded when configured (node:http with it), like the OPC UA server and the metrics below.
  const { LiveFeed } = await import("../../ops/live-feed.js");
  const feed = new LiveFeed({ host: cfg.host, port: cfg.port });
  return part(
    "live feed",
    async () => {
      const a = await feed.start();
      const url = `http://${a.host}:${a.port}`;
      bound(url);
      recorder.listen({ readings: (r) => feed.update(r) });
      log.info(`live feed on ${url}/points and /stream`);
    },
    () => feed.stop(),
  );
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
