/**
 * Every duration has bounds that the schema states and `config check` enforces: a value above
 * Node's timer limit (2^31-1 ms) would otherwise become a 1 ms timer (a log or health flood, a
 * connect that can never succeed).
 */
import { describe, expect, it } from "vitest";
import { configJsonSchema } from "../../src/cli/config.js";
import { parseDuration } from "../../src/cli/output.js";
import { parseConfigText } from "../../src/agent/config.js";
import { formatDuration, TIMER_MAX_MS } from "../../src/config/limits.js";
import { UserError } from "../../src/model/errors.js";

const head = 'site: s1\ngateway: gw1\n';
const uplink = (extra: string) => `${head}uplink: { url: "mqtt://127.0.0.1:1883", ${extra} }\n`;
const minimal = uplink("root: edge");
const errorsOf = (text: string) => {
  const r = parseConfigText(text, "/etc/edge-agent");
  return r.ok ? [] : r.errors;
};
const modbus = (line: string, device = "") =>
  `${minimal}sources:\n  - { type: modbus, name: l, tcp: { host: h }, ${line}devices: [{ name: d, unit: 1, profile: sdm120${device} }] }\n`;
const simulated = (source: string, point = "") => `${minimal}sources:\n  - { type: simulated, name: m, interval: ${source}, points: [{ name: p${point} }] }\n`;

describe("duration bounds", () => {
  it.each([
    // The three of the issue: a 1 ms status log, a 1 ms health publish, a connect that never waits.
    { text: `${minimal}log: { status_interval: 25d }\n`, message: "log.status_interval: must be at most 24h" },
    { text: uplink("health_interval: 25d"), message: "uplink.health_interval: must be at most 24h" },
    { text: uplink("connect_timeout: 25d"), message: "uplink.connect_timeout: must be at most 5m" },
    // MQTT carries the keepalive in seconds as a 16-bit number.
    { text: uplink("keepalive: 65536s"), message: "uplink.keepalive: must be at most 65535s" },
    { text: uplink("publish_timeout: 11m"), message: "uplink.publish_timeout: must be at most 10m" },
    { text: uplink("batch: { linger: 2h }"), message: "uplink.batch.linger: must be at most 1h" },
    { text: uplink("reconnect: { min: 1s, max: 2h }"), message: "uplink.reconnect.max: must be at most 1h" },
    // Not a timer: kept readings may be old, but not older than ten years.
    { text: `${minimal}store: { max_age: 3651d }\n`, message: "store.max_age: must be at most 3650d" },
    { text: simulated("25h"), message: "sources[0].interval: must be at most 24h" },
    { text: simulated("1s", ", period: 366d"), message: "sources[0].points[0].period: must be at most 365d" },
    { text: modbus("timeout: 61s, "), message: "sources[0].timeout: must be at most 1m" },
    { text: modbus("interval: 2d, "), message: "sources[0].interval: must be at most 24h" },
    { text: modbus("", ", timeout: 2m"), message: "sources[0].devices[0].timeout: must be at most 1m" },
    { text: modbus("", ", probe_interval: 25h"), message: "sources[0].devices[0].probe_interval: must be at most 24h" },
    { text: `${minimal}sources:\n  - { type: gpio, name: pir, pin: 17, debounce: 2m }\n`, message: "sources[0].debounce: must be at most 1m" },
    { text: `${minimal}sources:\n  - { type: i2c, name: r, interval: 2d, sensors: [{ driver: sht3x }] }\n`, message: "sources[0].interval: must be at most 24h" },
    { text: `${minimal}chargers:\n  - { name: c, relay: { simulated: true }, meter: m, max_power: 800, meter_timeout: 11m }\n`, message: "chargers[0].meter_timeout: must be at most 10m" },
    { text: `${minimal}chargers:\n  - { name: c, relay: { simulated: true }, meter: m, max_power: 800, max_duration: 25h }\n`, message: "chargers[0].max_duration: must be at most 24h" },
    { text: `${minimal}streetlights:\n  - { name: s, relay: { simulated: true }, latitude: 45, longitude: 9, max_override: 8d }\n`, message: "streetlights[0].max_override: must be at most 7d" },
    // Digits that overflow: a clear bound, not Infinity or an undefined field.
    { text: `${minimal}log: { status_interval: 99999999999999999999999999d }\n`, message: "log.status_interval: must be at most 24h" },
    { text: `${minimal}log: { status_interval: ${"9".repeat(120)}s }\n`, message: "log.status_interval: must be at most 24h" },
  ])("$message", ({ text, message }) => {
    expect(errorsOf(text)).toContain(message);
  });

  it("the lower bounds stay, named the same way", () => {
    expect(errorsOf(uplink("keepalive: 500ms"))).toEqual(["uplink.keepalive: must be at least 1s"]);
    expect(errorsOf(modbus("interval: 10ms, "))).toEqual(["sources[0].interval: must be at least 50ms"]);
  });

  it("values at the bounds are accepted, and mean what they say", () => {
    const r = parseConfigText(`${uplink("keepalive: 65535s, connect_timeout: 5m, health_interval: 24h")}store: { max_age: 3650d }\nlog: { status_interval: 24h }\n`);
    expect(r.ok ? [] : r.errors).toEqual([]);
    if (!r.ok) return;
    expect(r.config.uplink.keepalive).toBe(65_535_000);
    expect(r.config.uplink.connect_timeout).toBe(300_000);
    expect(r.config.store.max_age).toBe(3650 * 86_400_000);
  });

  it("a size too large to count in bytes is refused, not read as Infinity", () => {
    expect(errorsOf(`${minimal}store: { quota: ${"9".repeat(400)}TB }\n`)).toEqual(["store.quota: must be at most 8191TB"]);
  });

  it("the JSON Schema states the bounds of every duration", () => {
    const durations: Array<[string, string]> = [];
    const walk = (node: unknown, path: string): void => {
      if (Array.isArray(node)) return node.forEach((n, i) => walk(n, `${path}[${i}]`));
      if (!node || typeof node !== "object") return;
      const o = node as Record<string, unknown>;
      if (typeof o.pattern === "string" && o.pattern.includes("(ms|s|m|h|d)")) durations.push([path, String(o.description)]);
      for (const [k, v] of Object.entries(o)) walk(v, `${path}.${k}`);
    };
    const schema = configJsonSchema();
    walk(schema, "");
    expect(durations.length).toBeGreaterThan(25);
    for (const [path, description] of durations) expect(description, path).toMatch(/: \d+(ms|s|m|h|d) to \d+(ms|s|m|h|d)\b[^:]*\.$/);
    const uplinkProps = (schema.properties as Record<string, { properties: Record<string, { description: string }> }>).uplink!.properties;
    expect(uplinkProps.keepalive!.description).toContain("1s to 65535s");
    expect(uplinkProps.connect_timeout!.description).toContain("100ms to 5m");
    expect(uplinkProps.health_interval!.description).toMatch(/^Publish gateway health .*0 = never\. .*: 0ms to 24h\.$/);
  });
});

describe("durations on the command line", () => {
  it("are bounded by the timer limit, with a message that names it", () => {
    expect(parseDuration("24d", ["d"])).toBe(24 * 86_400_000);
    expect(parseDuration("2147483647ms", ["ms"])).toBe(TIMER_MAX_MS);
    expect(() => parseDuration("25d", ["d"], { flag: "--for" })).toThrow(new UserError("--for: '25d' is too long: at most 2147483647ms (about 24.8d, Node's timer limit)"));
    expect(() => parseDuration(`${"9".repeat(120)}s`, ["s"])).toThrow(/is too long: at most 2147483647ms/);
    expect(() => parseDuration("2h", ["h"], { max: 3_600_000 })).toThrow(new UserError("'2h' is too long: at most 1h"));
    // Anything not a duration is still the caller's to word.
    expect(parseDuration("soon", ["s"])).toBeUndefined();
    expect(parseDuration("5d", ["s"])).toBeUndefined();
  });

  it("formats a bound the way it can be written back", () => {
    expect(formatDuration(65_535_000)).toBe("65535s");
    expect(formatDuration(86_400_000)).toBe("24h");
    expect(formatDuration(3650 * 86_400_000)).toBe("3650d");
    expect(formatDuration(100)).toBe("100ms");
    expect(formatDuration(0)).toBe("0ms");
    expect(formatDuration(TIMER_MAX_MS)).toBe("2147483647ms (about 24.8d, Node's timer limit)");
    expect(formatDuration(2500)).toBe("2500ms (about 2.5s)");
  });
});
