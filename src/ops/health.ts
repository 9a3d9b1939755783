/**
 * Gateway health, published on `<root>/<site>/<gateway>/health` at an interval: what an operator
 * looks at first for a gateway left alone in a cabinet — up how long, which versions, how busy,
 * how full, how many devices answer.
 */
import { statfsSync } from "node:fs";
import { cpus, freemem, loadavg, totalmem, uptime as osUptime } from "node:os";
import type { AgentStatus } from "../model/status.js";
import { droppedTotal } from "../store/drops.js";
import { deviceFigures } from "./devices.js";

export interface GatewayHealth {
  v: 1;
  gw: string;
  ts: number;
  uptime_s: number;
  host_uptime_s: number;
  versions: { agent: string; node: string };
  cpu: { process_pct: number; load1: number; cores: number };
  memory: { rss_bytes: number; host_free_bytes: number; host_total_bytes: number };
  disk: { path: string; free_bytes: number; total_bytes: number } | null;
  outbox: { pending: number; oldest_age_s: number | null; bytes: number; quota_bytes: number; dropped: number; events_pending: number; results_pending: number };
  uplink: { connects: number; readings_sent: number; publish_failures: number; budget?: { month: string; bytes: number; limit: number; forecast: number; saving: boolean } };
  devices: { online: number; offline: number };
}

export class HealthReporter {
  private lastCpu = process.cpuUsage();
  private lastAt = process.hrtime.bigint();
  private readonly started = Date.now();

  constructor(
    private readonly gateway: string,
    private readonly version: string,
    private readonly diskPath: string | null,
  ) {}

  snapshot(status: AgentStatus, now = Date.now()): GatewayHealth {
    const cpu = process.cpuUsage(this.lastCpu);
    const at = process.hrtime.bigint();
    const elapsedUs = Number(at - this.lastAt) / 1000;
    this.lastCpu = process.cpuUsage();
    this.lastAt = at;
    let disk: GatewayHealth["disk"] = null;
    if (this.diskPath) {
      try {
        const s = statfsSync(this.diskPath);
        disk = { path: this.diskPath, free_bytes: s.bavail * s.bsize, total_bytes: s.blocks * s.bsize };
      } catch {
        disk = null;
      }
    }
    const devices = deviceFigures(status);
    const online = devices.filter((d) => d.up).length;
    const offline = devices.length - online;
    const o = status.outbox;
    return {
      v: 1,
      gw: this.gateway,
      ts: now,
      uptime_s: Math.round((now - this.started) / 1000),
      host_uptime_s: Math.round(osUptime()),
      versions: { agent: this.version, node: process.version },
      cpu: { process_pct: elapsedUs > 0 ? Math.round(((cpu.user + cpu.system) / elapsedUs) * 1000) / 10 : 0, load1: loadavg()[0] ?? 0, cores: cpus().length },
      memory: { rss_bytes: process.memoryUsage().rss, host_free_bytes: freemem(), host_total_bytes: totalmem() },
      disk,
      outbox: {
        pending: o.depth,
        oldest_age_s: o.oldestAgeMs === null ? null : Math.round(o.oldestAgeMs / 1000),
        bytes: o.fileBytes,
        quota_bytes: o.quota,
        dropped: droppedTotal(o.dropped),
        events_pending: o.streams.events.depth,
        results_pending: o.streams.results.depth,
      },
      uplink: {
        connects: status.uplink.connects,
        readings_sent: status.uplink.readingsAcked,
        publish_failures: status.uplink.publishFailures,
        ...(status.uplink.budget ? { budget: status.uplink.budget } : {}),
      },
      devices: { online, offline },
    };
  }
}
