import { afterEach, describe, expect, it } from "vitest";
import type { AgentStatus } from "../../src/agent/agent.js";
import { gpioDetail } from "../../src/sources/gpio/status.js";
import { i2cDetail } from "../../src/sources/i2c/status.js";
import { modbusDetail } from "../../src/sources/modbus/status.js";
import { MetricsEndpoint, type MetricsOptions } from "../../src/ops/metrics.js";
import type { GpioSourceHealth } from "../../src/sources/gpio/source.js";
import type { SensorHealth } from "../../src/sources/i2c/sensor.js";
import type { DeviceHealth } from "../../src/sources/modbus/device.js";

const NOW = Date.UTC(2025, 5, 1, 12, 0, 0);

const meterCounters = (over: Partial<DeviceHealth["counters"]>): DeviceHealth["counters"] => ({
  polls: 0, requests: 0, ok: 0, retries: 0, timeout: 0, crc: 0, exception: 0, "wrong-unit": 0, truncated: 0, disconnected: 0, other: 0,
  ...over,
});

const noWrites: DeviceHealth["writes"] = { sent: 0, ok: 0, failed: 0, refusedOffline: 0, refusedFull: 0, pending: 0 };

const sensorCounters = (over: Partial<SensorHealth["counters"]>): SensorHealth["counters"] => ({
  reads: 0, ok: 0, inits: 0, waits: 0, nack: 0, "bus-missing": 0, permission: 0, io: 0, crc: 0, "not-ready": 0, identity: 0, reset: 0, other: 0,
  ...over,
});

/** A gateway in a street cabinet during an uplink outage: one meter offline, one CO₂ sensor missing. */
function cabinetStatus(): AgentStatus {
  const meter1: DeviceHealth = {
    online: true, offlineSince: null, lastError: null, lastOkTs: NOW - 1000, requestsPerPoll: 3, wireMsPerPoll: 12, excluded: [],
    counters: meterCounters({ polls: 3600, requests: 10_812, ok: 10_800, retries: 12, timeout: 9, crc: 3 }),
    unsupported: [],
    writes: noWrites,
    bus: { name: "meter-room", open: true, opens: 1, openFailures: 0, queued: 0, lastError: null },
  };
  const meter2: DeviceHealth = {
    online: false, offlineSince: NOW - 590_000, lastError: "timeout after 500 ms (unit 2)", lastOkTs: NOW - 600_000, requestsPerPoll: 2, wireMsPerPoll: 8,
    excluded: [{ what: "thd_v1 (input 0x00fa)", since: NOW - 900_000, retryAt: NOW + 300_000 }],
    counters: meterCounters({ polls: 3600, requests: 7000, ok: 6900, retries: 60, timeout: 40, crc: 5, exception: 2, "wrong-unit": 1 }),
    unsupported: ["thd_v1"],
    writes: noWrites,
    bus: { name: "meter-room", open: true, opens: 1, openFailures: 0, queued: 0, lastError: null },
  };
  const sht: SensorHealth = {
    driver: "sht4x", address: "0x44", online: true, initialised: true, lastError: null, lastOkTs: NOW - 2000, info: { serial: "0x1234abcd" },
    counters: sensorCounters({ reads: 720, ok: 718, inits: 1, crc: 2 }),
  };
  const scd: SensorHealth = {
    driver: "scd4x", address: "0x62", online: false, initialised: false, lastError: "no answer at 0x62 (nack)", lastOkTs: null, info: {},
    counters: sensorCounters({ reads: 30, inits: 30, nack: 30 }),
  };
  const pir: GpioSourceHealth = { open: true, edges: 57, dropped: 2, lastError: null };
  return {
    commands: [{ id: "c-17", target: "light-1", action: "override", status: "ok", ts: NOW - 5000 }],
    stored: 123_456,
    events: 42,
    refused: 0,
    storeErrors: 0,
    thinned: 0,
    outbox: {
      depth: 1500, firstSeq: 98_001, lastSeq: 99_500, oldestTs: NOW - 90_000, oldestAgeMs: 90_000,
      usedBytes: 3_145_728, fileBytes: 4_194_304, quota: 268_435_456,
      dropped: { quota_oldest: 17, quota_newest: 0, max_age: 5, purged: 1 },
      streams: {
        telemetry: { depth: 1500, lastSeq: 99_500, dropped: { quota_oldest: 17, quota_newest: 0, max_age: 3, purged: 1 }, deadLetters: 2, kept: 5000 },
        events: { depth: 4, lastSeq: 42, dropped: { quota_oldest: 0, quota_newest: 0, max_age: 2, purged: 0 }, deadLetters: 0, kept: 0 },
        results: { depth: 1, lastSeq: 7, dropped: { quota_oldest: 0, quota_newest: 0, max_age: 0, purged: 0 }, deadLetters: 1, kept: 0 },
      },
      deadLetters: { count: 3, reasons: [{ reason: "refused by the broker: payload format invalid (0x99)", count: 3 }] },
      kept: 5000,
      replayWindowMs: 21_600_000,
      droppedRanges: 4,
      format: 4,
    },
    uplink: {
      state: "offline", broker: "mqtts://broker.example.net:8883", protocol: "5", maxPacketSize: null, connects: 3, messagesAcked: 9000, readingsAcked: 98_000,
      publishFailures: 2, refused: 4, deadLettered: 3, inflight: 0, backlogRemaining: 1500, lastError: "connect ECONNREFUSED", payloadBytes: 12_345_678, otherAcked: 45,
    },
    sources: {
      "meter-1": { type: "modbus", polls: 3600, overruns: 0, errors: 0, lastError: null, health: meter1, ...modbusDetail("meter-1", meter1) },
      "meter-2": { type: "modbus", polls: 3600, overruns: 4, errors: 0, lastError: null, health: meter2, ...modbusDetail("meter-2", meter2) },
      "room-101": { type: "i2c", polls: 720, overruns: 0, errors: 0, lastError: null, health: [sht, scd], ...i2cDetail("room-101", "i2c-1", [sht, scd], { jobs: 750, failed: 30, queued: 0, lastError: null }) },
      "pir-hall": { type: "gpio", polls: 3600, overruns: 0, errors: 0, lastError: null, health: pir, ...gpioDetail("pir-hall", pir) },
      "sim-1": { type: "simulated", polls: 100, overruns: 1, errors: 1, lastError: "simulated fault", devices: [], buses: [] },
      "node-1": {
        type: "bridge", polls: 9000, overruns: 0, errors: 0, lastError: null,
        devices: [{ name: "node-1", online: true, lastError: null, lastOkTs: NOW - 100, errors: { crc: 3 }, bus: "/dev/ttyACM0", board: {
          port: "/dev/ttyACM0", state: "online", refusedReason: null, id: "a1b2c3d4", hardware: "room-node/rev-c", firmware: "1.0.0", bootId: "0badcafe", resetReason: "power-on",
          sessions: 2, framesIn: 5000, framesOut: 1200, retransmits: 7, crcErrors: 3, garbage: 4, oversized: 1, unknownChannel: 0, naksSent: 3, naksReceived: 0, duplicates: 12,
          rttMs: 4.5, clockOffsetMs: -1e12, clockDriftPpm: 21.5, clockErrorMs: 0.4, bootedAt: NOW - 3_600_000, boardBuffered: 2, boardDropped: 0, children: ["sensor-a"],
        } }],
        buses: [{ name: "/dev/ttyACM0", open: true, queued: 0, lastError: null }],
      },
    },
    parts: [{ name: "outbox", state: "running", error: null }],
    actuators: {
      "light-1": { mode: "override", on: true, level: 80 },
      "charger-1": { charging: false, relay: "off", power_w: 0, energy_kwh: 1234.5, meter: "online", fault: "relay did not confirm off" },
    },
  };
}

// --- a small parser of the Prometheus text exposition format --------------------------------

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Exposition {
  help: Map<string, string>;
  type: Map<string, string>;
  samples: Sample[];
}

/** Prometheus reads values with Go's ParseFloat: Inf and NaN in any case (prom-client writes "Nan"). */
function parseValue(text: string): number {
  const special = text.toLowerCase();
  if (special === "+inf" || special === "inf") return Infinity;
  if (special === "-inf") return -Infinity;
  if (special === "nan") return NaN;
  const n = Number(text);
  if (text === "" || Number.isNaN(n)) throw new Error(`not a sample value: ${text}`);
  return n;
}

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/y;
  let m: RegExpExecArray | null;
  while (re.lastIndex < text.length && (m = re.exec(text))) {
    labels[m[1]!] = m[2]!.replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c));
  }
  if (re.lastIndex !== text.length && text.length > 0) throw new Error(`bad labels: {${text}}`);
  return labels;
}

function parseExposition(text: string): Exposition {
  const out: Exposition = { help: new Map(), type: new Map(), samples: [] };
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      (meta[1] === "HELP" ? out.help : out.type).set(meta[2]!, meta[3]!);
      continue;
    }
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    out.samples.push({ name: m[1]!, labels: parseLabels(m[2] ?? ""), value: parseValue(m[3]!) });
  }
  return out;
}

/** The family a sample belongs to: histograms and summaries add _bucket, _sum, _count. */
function familyOf(e: Exposition, name: string): string {
  if (e.type.has(name)) return name;
  const base = name.replace(/_(bucket|sum|count)$/, "");
  return e.type.has(base) ? base : name;
}

function value(e: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  const hits = e.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (hits.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${hits.length} samples`);
  return hits[0]?.value;
}

// --- the endpoint ------------------------------------------------------------------------

const endpoints: MetricsEndpoint[] = [];
afterEach(async () => {
  for (const e of endpoints.splice(0).reverse()) await e.stop();
});

async function startEndpoint(over: Partial<MetricsOptions> = {}): Promise<{ endpoint: MetricsEndpoint; url: string }> {
  const endpoint = new MetricsEndpoint({ port: 0, status: cabinetStatus, healthy: () => true, version: "9.9.9", ...over });
  endpoints.push(endpoint);
  const address = await endpoint.start();
  expect(address.host).toBe("127.0.0.1");
  expect(address.port).toBeGreaterThan(0);
  return { endpoint, url: `http://127.0.0.1:${address.port}` };
}

async function scrape(url: string): Promise<Exposition> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

describe("metrics endpoint", () => {
  it("does not listen before start() and reports the bound port", async () => {
    const endpoint = new MetricsEndpoint({ port: 0, status: cabinetStatus, healthy: () => true });
    endpoints.push(endpoint);
    expect(endpoint.address).toBeNull();
    const { port } = await endpoint.start();
    expect(endpoint.url).toBe(`http://127.0.0.1:${port}`);
    await endpoint.stop();
    expect(endpoint.address).toBeNull();
    await expect(fetch(`http://127.0.0.1:${port}/metrics`)).rejects.toThrow();
  });

  it("names metrics.port when the port is taken", async () => {
    const { endpoint } = await startEndpoint();
    const second = new MetricsEndpoint({ port: endpoint.address!.port, status: cabinetStatus, healthy: () => true });
    await expect(second.start()).rejects.toThrow(/cannot listen on 127\.0\.0\.1:\d+ \(EADDRINUSE\); change metrics\.port/);
    expect(second.address).toBeNull();
  });

  it("serves the status figures, parsed from the exposition format", async () => {
    let calls = 0;
    const { url } = await startEndpoint({ status: () => (calls++, cabinetStatus()) });
    const before = calls;
    const e = await scrape(url);
    expect(calls - before).toBe(1); // one status per scrape, shared by every family

    expect(value(e, "edge_agent_readings_stored_total")).toBe(123_456);
    expect(value(e, "edge_agent_outbox_depth", { stream: "telemetry" })).toBe(1500);
    expect(value(e, "edge_agent_outbox_depth", { stream: "events" })).toBe(4);
    expect(value(e, "edge_agent_outbox_depth", { stream: "results" })).toBe(1);
    expect(value(e, "edge_agent_outbox_oldest_unsent_age_seconds")).toBe(90);
    expect(value(e, "edge_agent_outbox_bytes")).toBe(3_145_728);
    expect(value(e, "edge_agent_outbox_quota_bytes")).toBe(268_435_456);
    expect(value(e, "edge_agent_readings_dropped_total", { reason: "quota_oldest" })).toBe(17);
    expect(value(e, "edge_agent_readings_dropped_total", { reason: "quota_newest" })).toBe(0);
    expect(value(e, "edge_agent_readings_dropped_total", { reason: "max_age" })).toBe(5);
    expect(value(e, "edge_agent_readings_dropped_total", { reason: "purged" })).toBe(1);
    expect(value(e, "edge_agent_outbox_dropped_total", { stream: "events", reason: "max_age" })).toBe(2);
    expect(value(e, "edge_agent_outbox_dropped_total", { stream: "telemetry", reason: "quota_oldest" })).toBe(17);
    expect(value(e, "edge_agent_outbox_dead_letters", { stream: "telemetry" })).toBe(2);
    expect(value(e, "edge_agent_outbox_dead_letters", { stream: "results" })).toBe(1);
    expect(value(e, "edge_agent_outbox_kept_for_replay", { stream: "telemetry" })).toBe(5000);
    expect(value(e, "edge_agent_outbox_kept_for_replay", { stream: "events" })).toBe(0);
    expect(value(e, "edge_agent_uplink_refused_total")).toBe(4);
    expect(value(e, "edge_agent_uplink_dead_lettered_total")).toBe(3);

    expect(value(e, "edge_agent_uplink_connected")).toBe(0);
    expect(value(e, "edge_agent_uplink_state", { state: "offline" })).toBe(1);
    expect(value(e, "edge_agent_uplink_state", { state: "online" })).toBe(0);
    expect(value(e, "edge_agent_uplink_connects_total")).toBe(3);
    expect(value(e, "edge_agent_uplink_readings_acked_total")).toBe(98_000);
    expect(value(e, "edge_agent_uplink_publish_failures_total")).toBe(2);
    expect(value(e, "edge_agent_uplink_backlog_readings")).toBe(1500);

    expect(value(e, "edge_agent_device_up", { device: "meter-1" })).toBe(1);
    expect(value(e, "edge_agent_device_up", { device: "meter-2" })).toBe(0);
    expect(value(e, "edge_agent_device_up", { device: "room-101/sht4x@0x44" })).toBe(1);
    expect(value(e, "edge_agent_device_up", { device: "room-101/scd4x@0x62" })).toBe(0);
    expect(value(e, "edge_agent_device_up", { device: "pir-hall" })).toBe(1);
    expect(value(e, "edge_agent_device_up", { device: "sim-1" })).toBeUndefined(); // no health, not a device

    expect(value(e, "edge_agent_device_errors_total", { device: "meter-2", kind: "timeout" })).toBe(40);
    expect(value(e, "edge_agent_device_errors_total", { device: "meter-2", kind: "crc" })).toBe(5);
    expect(value(e, "edge_agent_device_errors_total", { device: "meter-2", kind: "wrong-unit" })).toBe(1);
    expect(value(e, "edge_agent_device_errors_total", { device: "room-101/scd4x@0x62", kind: "nack" })).toBe(30);
    // Work counters are not error kinds.
    expect(e.samples.filter((s) => s.name === "edge_agent_device_errors_total" && ["polls", "requests", "ok", "retries", "reads", "inits"].includes(s.labels.kind!))).toEqual([]);
    expect(value(e, "edge_agent_device_requests_total", { device: "meter-1" })).toBe(10_812);
    expect(value(e, "edge_agent_device_requests_total", { device: "room-101/sht4x@0x44" })).toBe(720);
    expect(value(e, "edge_agent_device_retries_total", { device: "meter-2" })).toBe(60);
    expect(value(e, "edge_agent_device_last_ok_timestamp_seconds", { device: "meter-2" })).toBe((NOW - 600_000) / 1000);
    expect(value(e, "edge_agent_device_last_ok_timestamp_seconds", { device: "room-101/scd4x@0x62" })).toBeUndefined();
    expect(value(e, "edge_agent_device_unsupported_points", { device: "meter-2" })).toBe(1);

    expect(value(e, "edge_agent_source_polls_total", { source: "meter-1" })).toBe(3600);
    expect(value(e, "edge_agent_source_overruns_total", { source: "meter-2" })).toBe(4);
    expect(value(e, "edge_agent_source_errors_total", { source: "sim-1" })).toBe(1);
    expect(value(e, "edge_agent_gpio_edges_total", { source: "pir-hall" })).toBe(57);
    expect(value(e, "edge_agent_device_up", { device: "node-1" })).toBe(1);
    expect(value(e, "edge_agent_bridge_crc_errors_total", { board: "node-1" })).toBe(3);
    expect(value(e, "edge_agent_bridge_retransmits_total", { board: "node-1" })).toBe(7);
    expect(value(e, "edge_agent_bridge_resyncs_total", { board: "node-1" })).toBe(5);
    expect(value(e, "edge_agent_bridge_duplicates_total", { board: "node-1" })).toBe(12);
    expect(value(e, "edge_agent_bridge_round_trip_seconds", { board: "node-1" })).toBe(0.0045);
    expect(value(e, "edge_agent_bridge_clock_drift_ppm", { board: "node-1" })).toBe(21.5);
    expect(value(e, "edge_agent_bridge_sessions_total", { board: "node-1" })).toBe(2);
    expect(value(e, "edge_agent_gpio_edges_dropped_total", { source: "pir-hall" })).toBe(2);
    expect(value(e, "edge_agent_actuator_fault", { actuator: "charger-1" })).toBe(1);
    expect(value(e, "edge_agent_actuator_fault", { actuator: "light-1" })).toBe(0);
    expect(value(e, "edge_agent_build_info", { version: "9.9.9" })).toBe(1);
    expect(value(e, "edge_agent_commands_total", { status: "ok" })).toBe(0);

    // The process itself: memory, CPU, event loop lag.
    expect(value(e, "edge_agent_process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(value(e, "edge_agent_process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(e.type.get("edge_agent_nodejs_eventloop_lag_seconds")).toBe("gauge");
  });

  it("names every family by the conventions and gives each HELP and TYPE", async () => {
    const { url } = await startEndpoint();
    const e = await scrape(url);
    expect(e.samples.length).toBeGreaterThan(50);
    for (const s of e.samples) {
      expect(s.name).toMatch(/^edge_agent_[a-z0-9_]+$/);
      const family = familyOf(e, s.name);
      expect(e.type.has(family), `TYPE of ${s.name}`).toBe(true);
      expect(e.help.get(family), `HELP of ${s.name}`).toMatch(/\w{3,}/);
    }
    for (const [family, type] of e.type) {
      expect(family).toMatch(/^edge_agent_/);
      if (type === "counter") expect(family).toMatch(/_total$/);
      // prom-client's own nodejs_active_resources_total is a gauge; ours never end so.
      else if (!/^edge_agent_(nodejs|process)_/.test(family)) expect(family).not.toMatch(/_total$/);
      expect(e.help.has(family), `HELP of ${family}`).toBe(true);
    }
  });

  it("counts commands as the agent reports them", async () => {
    const { endpoint, url } = await startEndpoint();
    endpoint.countCommand("ok");
    endpoint.countCommand("ok");
    endpoint.countCommand("rejected");
    const e = await scrape(url);
    expect(value(e, "edge_agent_commands_total", { status: "ok" })).toBe(2);
    expect(value(e, "edge_agent_commands_total", { status: "rejected" })).toBe(1);
    expect(value(e, "edge_agent_commands_total", { status: "error" })).toBe(0);
  });

  it("reads the figures anew at every scrape; devices that disappear leave no stale series", async () => {
    let s = cabinetStatus();
    const { url } = await startEndpoint({ status: () => s });
    expect(value(await scrape(url), "edge_agent_device_up", { device: "meter-2" })).toBe(0);
    s = cabinetStatus();
    s.outbox.depth = 0;
    s.outbox.oldestAgeMs = null;
    s.uplink.state = "online";
    delete s.sources["meter-2"];
    const e = await scrape(url);
    expect(value(e, "edge_agent_outbox_depth", { stream: "telemetry" })).toBe(0);
    expect(value(e, "edge_agent_outbox_oldest_unsent_age_seconds")).toBe(0);
    expect(value(e, "edge_agent_uplink_connected")).toBe(1);
    expect(e.samples.some((x) => x.labels.device === "meter-2" || x.labels.source === "meter-2")).toBe(false);
  });

  it("answers 503 on /metrics when the agent's status cannot be read", async () => {
    const { url } = await startEndpoint({
      status: () => {
        throw new Error("agent not started");
      },
    });
    const res = await fetch(`${url}/metrics`);
    expect(res.status).toBe(503);
    expect(await res.text()).toContain("agent not started");
  });

  it("keeps two endpoints in one process apart (own registries)", async () => {
    const small = cabinetStatus();
    small.outbox.depth = 7;
    delete small.sources["meter-1"];
    const a = await startEndpoint();
    const b = await startEndpoint({ status: () => small, version: "1.2.3" });
    a.endpoint.countCommand("error");
    const [ea, eb] = [await scrape(a.url), await scrape(b.url)];
    expect(value(ea, "edge_agent_outbox_depth", { stream: "telemetry" })).toBe(1500);
    expect(value(eb, "edge_agent_outbox_depth", { stream: "telemetry" })).toBe(7);
    expect(value(ea, "edge_agent_device_up", { device: "meter-1" })).toBe(1);
    expect(value(eb, "edge_agent_device_up", { device: "meter-1" })).toBeUndefined();
    expect(value(ea, "edge_agent_commands_total", { status: "error" })).toBe(1);
    expect(value(eb, "edge_agent_commands_total", { status: "error" })).toBe(0);
    expect(value(eb, "edge_agent_build_info", { version: "9.9.9" })).toBeUndefined();
    expect(value(eb, "edge_agent_build_info", { version: "1.2.3" })).toBe(1);
    // Both carry the process metrics, each in its own registry.
    expect(value(ea, "edge_agent_process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(value(eb, "edge_agent_process_resident_memory_bytes")).toBeGreaterThan(0);
  });

  it("serves GET and HEAD only, on /metrics and /healthz only", async () => {
    const { url } = await startEndpoint();
    for (const path of ["/", "/metric", "/metrics/x", "/favicon.ico", "/healthz/"]) {
      expect((await fetch(`${url}${path}`)).status, path).toBe(404);
    }
    expect((await fetch(`${url}/metrics?x=1`)).status).toBe(200);
    const head = await fetch(`${url}/metrics`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    const post = await fetch(`${url}/metrics`, { method: "POST", body: "x" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
    expect((await fetch(`${url}/healthz`, { method: "DELETE" })).status).toBe(405);
  });
});

describe("/healthz", () => {
  async function health(url: string): Promise<{ code: number; body: Record<string, unknown> }> {
    const res = await fetch(`${url}/healthz`);
    expect(res.headers.get("content-type")).toBe("application/json");
    return { code: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  it("is 200 while offline but buffering, 503 when the loops stall or the status throws", async () => {
    let healthy = true;
    let broken = false;
    const { url } = await startEndpoint({
      healthy: () => healthy,
      status: () => {
        if (broken) throw new Error("agent not started");
        return cabinetStatus();
      },
    });
    const ok = await health(url);
    expect(ok.code).toBe(200);
    expect(ok.body).toEqual({
      status: "ok",
      uplink: "offline",
      outbox: { depth: 1500, oldestUnsentAgeSeconds: 90, dropped: 23 },
      devices: { up: 4, total: 6, offline: ["meter-2", "room-101/scd4x@0x62"] },
      version: "9.9.9",
    });

    healthy = false;
    const stuck = await health(url);
    expect(stuck.code).toBe(503);
    expect(stuck.body).toMatchObject({ status: "error", uplink: "offline" });
    expect(stuck.body.reason).toMatch(/loops are not running on time/);

    healthy = true;
    expect((await health(url)).code).toBe(200);
    broken = true;
    const down = await health(url);
    expect(down.code).toBe(503);
    expect(down.body).toMatchObject({ status: "error", reason: "agent status unavailable: agent not started" });

    const head = await fetch(`${url}/healthz`, { method: "HEAD" });
    expect(head.status).toBe(503);
    expect(await head.text()).toBe("");
  });

  it("is 503 when the outbox drops readings while offline, or cannot be written", async () => {
    let s = cabinetStatus();
    const { url } = await startEndpoint({ status: () => s });
    expect((await health(url)).code).toBe(200);

    s = cabinetStatus();
    s.outbox.dropped.quota_oldest += 500; // offline and full: no longer merely buffering
    const full = await health(url);
    expect(full.code).toBe(503);
    expect(full.body.reason).toMatch(/offline and the outbox is dropping readings \(500 since the last check\)/);
    expect((await health(url)).code).toBe(200); // nothing more lost since

    s = cabinetStatus();
    s.outbox.dropped.quota_oldest += 500;
    s.storeErrors = 2;
    const broken = await health(url);
    expect(broken.code).toBe(503);
    expect(broken.body.reason).toMatch(/2 writes to the outbox failed/);

    s = cabinetStatus();
    s.outbox.dropped.quota_oldest += 500;
    s.storeErrors = 2;
    s.uplink.state = "stopped";
    const stopped = await health(url);
    expect(stopped.code).toBe(503);
    expect(stopped.body.reason).toBe("the uplink is stopped");

    s = cabinetStatus();
    s.uplink.state = "online";
    s.outbox.dropped.max_age += 10; // online: expiring old readings is not an outage
    s.storeErrors = 2;
    expect((await health(url)).body).toMatchObject({ status: "ok", uplink: "online" });
  });
});
