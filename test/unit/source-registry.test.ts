/**
 * A new kind of source is its folder plus one line in the registry: here a kind the agent has
 * never seen (a weather station) is added to the list, and the config schema, the cross-checks,
 * the factory and the typed status that metrics and /healthz read all take it without any other
 * change. The folder's type.ts holds the config piece, its source.ts the factory the agent loads
 * (sourceModule), only for the kinds a config uses.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { name } from "../../src/config/fields.js";
import { configLoader } from "../../src/config/load.js";
import { buildConfigSchema, type CoreConfig } from "../../src/config/schema.js";
import type { SourceConfigType } from "../../src/config/source-type.js";
import { DAY, duration, SECOND } from "../../src/config/units.js";
import type { AgentStatus } from "../../src/model/status.js";
import { deviceFigures } from "../../src/ops/devices.js";
import { SOURCE_TYPES } from "../../src/sources/registry.js";
import type { Source } from "../../src/sources/source.js";
import { type SourceModule, type SourceType, sourceModule } from "../../src/sources/type.js";

const weatherSchema = z.strictObject({
  type: z.literal("weather"),
  name: name("source name"),
  station: z.string().min(1),
  interval: duration({ min: SECOND, max: DAY }).default(60_000),
});
type WeatherConfig = z.output<typeof weatherSchema>;

/** What src/sources/weather/type.ts would hold. */
const weather: SourceType<WeatherConfig> = {
  type: "weather",
  schema: weatherSchema,
  check(cfg, at, ctx) {
    if (!/^[A-Z]{4}$/.test(cfg.station)) ctx.report([...at, "station"], "expected an ICAO code like LIML");
  },
  facts: (cfg, at) => ({ prefixes: [{ name: cfg.name, path: [...at, "name"] }], points: [{ id: `${cfg.name}/wind`, unit: "m/s" }], claims: [], devices: [] }),
};

/** What src/sources/weather/source.ts would export. */
const weatherSource: SourceModule<WeatherConfig> = {
  create: (cfg): Source[] => [
    {
      name: cfg.name,
      interval: cfg.interval,
      poll: async (ts) => [{ point: `${cfg.name}/wind`, ts, value: 3.5, quality: "good" }],
      status: () => ({ devices: [{ name: cfg.name, online: true, lastError: null, lastOkTs: 1, requests: 4, ok: 4, retries: 0, errors: { timeout: 0 } }], buses: [] }),
    },
  ],
};

type Any = { type: string; name: string };
const TYPES = [...SOURCE_TYPES, weather] as unknown as readonly SourceConfigType<Any>[];
const loader = configLoader<CoreConfig & { sources: Any[] }>(buildConfigSchema<Any>(TYPES) as never);

const base = { site: "s", gateway: "g", uplink: { url: "mqtt://127.0.0.1:1883" } };

describe("source registry", () => {
  it("takes a new kind with no other change: schema, checks, cross-checks, factory, status", async () => {
    // The rooms' cross-check sees the new kind's points.
    const room = (point: string) => loader.validateConfig({ ...base, sources: [{ type: "weather", name: "roof", station: "LIML" }], rooms: [{ name: "lobby", co2: point }] });
    expect(room("roof/wind").ok).toBe(true);
    const missing = room("roof/rain");
    expect(missing.ok ? [] : missing.errors).toEqual(["rooms[0].co2: no source produces 'roof/rain'"]);
    const good = loader.validateConfig({ ...base, sources: [{ type: "weather", name: "roof", station: "LIML" }] });
    expect(good.ok).toBe(true);
    const bad = loader.validateConfig({ ...base, sources: [{ type: "weather", name: "roof", station: "milano" }, { type: "simulated", name: "roof", interval: "1s", points: [{ name: "p" }] }] });
    expect(bad.ok ? [] : bad.errors).toEqual(["sources[0].station: expected an ICAO code like LIML", "sources[1].name: duplicate name 'roof' (also sources[0].name)"]);
    const unknown = loader.validateConfig({ ...base, sources: [{ type: "radar", name: "r" }] });
    expect(unknown.ok ? [] : unknown.errors).toEqual(["sources[0].type: unknown source type 'radar'; expected one of: simulated, modbus, i2c, gpio, opcua, bridge, weather"]);

    const cfg = good.ok ? good.config : null;
    const [source] = weatherSource.create(cfg!.sources[0] as WeatherConfig, {} as never);
    expect(await source!.poll(5)).toEqual([{ point: "roof/wind", ts: 5, value: 3.5, quality: "good" }]);
    const status = { sources: { roof: { type: "weather", polls: 1, overruns: 0, errors: 0, lastError: null, ...source!.status!() } } } as unknown as AgentStatus;
    expect(deviceFigures(status)).toEqual([expect.objectContaining({ device: "roof", source: "roof", up: true, requests: 4, errors: { timeout: 0 } })]);
  });

  it("every kind in the registry has its factory in its folder (src/sources/<type>/source.ts exports create)", async () => {
    for (const kind of SOURCE_TYPES) {
      const m = await sourceModule(kind.type);
      expect(typeof m.create, kind.type).toBe("function");
    }
  });

  it("the JSON Schema lists every kind's type", () => {
    const schema = z.toJSONSchema(buildConfigSchema<Any>(TYPES), { io: "input", unrepresentable: "any" });
    expect(JSON.stringify(schema)).toContain('"const":"weather"');
  });
});
