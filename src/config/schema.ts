/**
 * The one source of truth for the configuration: YAML is validated against it, the TypeScript
 * types are derived from it, and `configs/edge-agent.schema.json` is generated from it.
 */
import { z } from "zod";
import { getProfile, profileIds } from "../../drivers/modbus/registry.js";
import { formatPath } from "./path.js";
import { duration, size } from "./units.js";

/** Names that end up in MQTT topics and point ids: no separators, no wildcards. */
const name = (what: string) =>
  z
    .string({ error: `expected a ${what}` })
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, {
      error: `expected a ${what} of letters, digits, '-', '_' or '.' (no '/', '+', '#' or spaces)`,
    })
    .max(64);

const tls = z
  .strictObject({
    ca: z.string().optional().meta({ description: "PEM file of the CA that signed the broker's certificate." }),
    cert: z.string().optional().meta({ description: "PEM client certificate, for brokers that require one." }),
    key: z.string().optional().meta({ description: "PEM private key of the client certificate." }),
    reject_unauthorized: z.boolean().default(true),
  })
  .meta({ description: "TLS settings; used when the URL is mqtts:// or tls://." });

const batch = z
  .strictObject({
    max_readings: z.int().min(1).max(100_000).default(1000),
    max_bytes: size().default(262_144),
    linger: duration().default(200),
  })
  .prefault({})
  .meta({ description: "How readings are grouped into telemetry messages." });

const backlog = z
  .strictObject({
    max_inflight: z.int().min(1).max(1000).default(12).meta({
      description: "Messages of backlog that may await their PUBACK at once.",
    }),
    rate: z.number().min(0).default(0).meta({
      description: "Readings per second the backlog may use at most; 0 = no limit beyond max_inflight.",
    }),
  })
  .prefault({})
  .meta({ description: "How a backlog is drained after an outage. Live readings always go first." });

const reconnect = z
  .strictObject({
    min: duration({ min: 100 }).default(1000),
    max: duration({ min: 100 }).default(60_000),
  })
  .prefault({});

const embeddedBroker = z
  .strictObject({
    port: z.int().min(0).max(65535).default(1883).meta({
      description: "Loopback port; when taken, a free port is used instead and logged.",
    }),
  })
  .meta({ description: "Start an MQTT broker inside the agent (zero-setup demo only)." });

const uplink = z.strictObject({
  url: z.string().regex(/^(mqtt|mqtts|tcp|tls|ws|wss):\/\/.+/, {
    error: "expected a broker URL like mqtt://host:1883 or mqtts://host:8883",
  }),
  root: name("topic root").default("edge"),
  client_id: z.string().min(1).max(128).optional(),
  protocol: z.enum(["3.1.1", "5"]).default("3.1.1"),
  username: z.string().optional(),
  password: z.string().optional(),
  tls: tls.optional(),
  keepalive: duration({ min: 1000 }).default(30_000),
  connect_timeout: duration({ min: 100 }).default(10_000),
  publish_timeout: duration({ min: 100 }).default(10_000),
  max_inflight: z.int().min(1).max(1000).default(16).meta({
    description: "Telemetry messages that may await their PUBACK at once.",
  }),
  batch,
  backlog,
  reconnect,
  embedded_broker: embeddedBroker.optional(),
});

const store = z
  .strictObject({
    path: z.string().min(1).default("./data/outbox.db"),
    quota: size().default(268_435_456),
    when_full: z.enum(["drop-oldest", "drop-newest"]).default("drop-oldest"),
    max_age: duration({ min: 1000 }).default(30 * 86_400_000),
    sync: z.enum(["full", "normal"]).default("full").meta({
      description: "full: every commit survives a power cut. normal: faster, may lose the last commits on power loss.",
    }),
  })
  .prefault({});

const wave = z.enum(["sine", "ramp", "random-walk", "square", "constant"]);

const simulatedPoint = z.strictObject({
  name: name("point name"),
  wave: wave.default("sine"),
  min: z.number().default(0),
  max: z.number().default(100),
  period: duration({ min: 1 }).default(60_000),
  step: z.number().min(0).optional().meta({ description: "random-walk: largest change per reading." }),
  unit: z.string().optional(),
  decimals: z.int().min(0).max(12).default(2),
});

const simulatedSource = z.strictObject({
  type: z.literal("simulated"),
  name: name("source name"),
  interval: duration({ min: 1 }),
  points: z.array(simulatedPoint).min(1, { error: "needs at least one point" }),
});

const hostPort = (defaultPort: number) =>
  z.strictObject({
    host: z.string().min(1),
    port: z.int().min(1).max(65535).default(defaultPort),
  });

const rtuSerial = z.strictObject({
  device: z.string().min(1).meta({ description: "Serial device; prefer the stable /dev/serial/by-id/… name (edge-agent ports)." }),
  baud: z.int().min(300).max(921_600).default(9600),
  parity: z.enum(["none", "even", "odd"]).default("none"),
  data_bits: z.union([z.literal(7), z.literal(8)]).default(8),
  stop_bits: z.union([z.literal(1), z.literal(2)]).default(1),
});

const modbusPoint = z.strictObject({
  name: name("point name"),
  table: z.enum(["coil", "discrete", "input", "holding"]),
  address: z.int().min(0).max(0xffff).meta({ description: "0-based protocol address, as in the datasheets' hex tables (0x0000 = register 30001/40001)." }),
  type: z.enum(["int16", "uint16", "int32", "uint32", "float32", "float64", "bool", "string"]).default("uint16"),
  order: z.enum(["ABCD", "CDAB", "BADC", "DCBA"]).optional().meta({ description: "Byte order of multi-register values; ABCD = high word first (default)." }),
  scale: z.number().optional(),
  offset: z.number().optional(),
  unit: z.string().optional(),
  length: z.int().min(1).max(125).optional().meta({ description: "string: length in registers." }),
  bit: z.int().min(0).max(15).optional().meta({ description: "bool in a register: which bit." }),
  writable: z.boolean().optional(),
});

const modbusDevice = z.strictObject({
  name: name("device name"),
  unit: z.int({ error: "expected a unit id 1–247" }).min(1, { error: "expected a unit id 1–247" }).max(247, { error: "expected a unit id 1–247" }),
  profile: z.string().optional().meta({ description: "Built-in profile: sdm120, sdm630, epever (edge-agent modbus profiles)." }),
  only: z.array(z.string()).optional().meta({ description: "Read only these points of the profile." }),
  points: z.array(modbusPoint).default([]).meta({ description: "Points of a generic device, or added to the profile's." }),
  interval: duration({ min: 50 }).optional(),
  timeout: duration({ min: 10 }).optional(),
  retries: z.int().min(0).max(5).optional(),
  max_registers: z.int().min(1).max(125).optional(),
  max_gap: z.int().min(0).max(100).optional(),
  offline_after: z.int().min(1).max(100).default(3).meta({ description: "Failed polls in a row before the device is marked offline and backed off." }),
  probe_interval: duration({ min: 100 }).default(10_000).meta({ description: "How often an offline device is tried again." }),
});

const modbusSource = z.strictObject({
  type: z.literal("modbus"),
  name: name("line name"),
  rtu: rtuSerial.optional(),
  tcp: hostPort(502).optional(),
  rtu_over_tcp: hostPort(502).optional(),
  simulator: name("simulator name").optional().meta({ description: "Poll an embedded simulator (simulators: in this file), over TCP." }),
  interval: duration({ min: 50 }).default(5000),
  timeout: duration({ min: 10 }).default(1000),
  retries: z.int().min(0).max(5).default(1),
  max_registers: z.int().min(1).max(125).default(125),
  max_gap: z.int().min(0).max(100).default(10),
  devices: z.array(modbusDevice).min(1, { error: "needs at least one device" }),
});

const source = z.discriminatedUnion("type", [simulatedSource, modbusSource], {
  error: (issue) =>
    issue.code === "invalid_union" ? "unknown source type; expected one of: simulated, modbus" : undefined,
});

const modbusSimulator = z
  .strictObject({
    type: z.literal("modbus"),
    name: name("simulator name"),
    host: z.string().default("127.0.0.1"),
    port: z.int().min(0).max(65535).default(0).meta({ description: "TCP port; 0 = any free port." }),
    units: z
      .array(z.strictObject({ unit: z.int().min(1).max(247), profile: z.string() }))
      .min(1),
  })
  .meta({ description: "A Modbus TCP simulator inside the agent, for demos and tests." });

const log = z
  .strictObject({
    level: z.enum(["trace", "debug", "info", "warn", "error"]).default("info"),
    status_interval: duration().default(0).meta({
      description: "Print a one-line status (stored, sent, pending, broker) this often; 0 = never.",
    }),
  })
  .prefault({});

export const configSchema = z
  .strictObject({
    site: name("site id"),
    gateway: name("gateway id"),
    uplink,
    store,
    sources: z.array(source).default([]),
    simulators: z.array(modbusSimulator).default([]),
    log,
  })
  .superRefine((cfg, ctx) => {
    // Point ids are <source or device>/<point>: those prefixes must be unique across the file.
    const prefixes = new Map<string, string>();
    const claim = (prefix: string, path: (string | number)[]) => {
      const first = prefixes.get(prefix);
      if (first !== undefined) {
        ctx.addIssue({ code: "custom", path, message: `duplicate name '${prefix}' (also ${first})` });
      } else prefixes.set(prefix, formatPath(path));
    };
    const uniquePoints = (points: { name: string }[], owner: string, path: (string | number)[]) => {
      const seen = new Set<string>();
      points.forEach((p, j) => {
        if (seen.has(p.name)) {
          ctx.addIssue({ code: "custom", path: [...path, j, "name"], message: `duplicate point name '${p.name}' in '${owner}'` });
        }
        seen.add(p.name);
      });
    };
    const simulators = new Set(cfg.simulators.map((s) => s.name));
    cfg.sources.forEach((src, i) => {
      if (src.type === "simulated") {
        claim(src.name, ["sources", i, "name"]);
        uniquePoints(src.points, src.name, ["sources", i, "points"]);
        return;
      }
      const transports = (["rtu", "tcp", "rtu_over_tcp", "simulator"] as const).filter((k) => src[k] !== undefined);
      if (transports.length !== 1) {
        ctx.addIssue({
          code: "custom",
          path: ["sources", i],
          message: transports.length === 0 ? "needs one of: rtu, tcp, rtu_over_tcp, simulator" : `has ${transports.join(" and ")}: choose one`,
        });
      }
      if (src.simulator !== undefined && !simulators.has(src.simulator)) {
        ctx.addIssue({ code: "custom", path: ["sources", i, "simulator"], message: `no simulator named '${src.simulator}' under simulators:` });
      }
      const units = new Map<number, string>();
      src.devices.forEach((dev, j) => {
        const at = ["sources", i, "devices", j];
        claim(dev.name, [...at, "name"]);
        const other = units.get(dev.unit);
        if (other !== undefined) ctx.addIssue({ code: "custom", path: [...at, "unit"], message: `unit ${dev.unit} is also '${other}' on this line` });
        units.set(dev.unit, dev.name);
        const issue = checkModbusDevice(dev);
        if (issue) ctx.addIssue({ code: "custom", path: [...at, issue.key], message: issue.message });
        uniquePoints([...profilePointNames(dev), ...dev.points], dev.name, [...at, "points"]);
      });
    });
    cfg.simulators.forEach((sim, i) =>
      sim.units.forEach((u, j) => {
        if (!getProfile(u.profile)) {
          ctx.addIssue({ code: "custom", path: ["simulators", i, "units", j, "profile"], message: unknownProfile(u.profile) });
        }
      }),
    );
    if (cfg.uplink.reconnect.max < cfg.uplink.reconnect.min) {
      ctx.addIssue({ code: "custom", path: ["uplink", "reconnect", "max"], message: "must not be below reconnect.min" });
    }
  });

function unknownProfile(id: string): string {
  return `unknown profile '${id}'; built in: ${profileIds().join(", ")}`;
}

function profilePointNames(dev: { profile?: string | undefined; only?: string[] | undefined }): { name: string }[] {
  const profile = dev.profile ? getProfile(dev.profile) : undefined;
  if (!profile) return [];
  return profile.points.filter((p) => !dev.only || dev.only.includes(p.name));
}

function checkModbusDevice(dev: z.output<typeof modbusDevice>): { key: string; message: string } | null {
  if (dev.profile !== undefined) {
    const profile = getProfile(dev.profile);
    if (!profile) return { key: "profile", message: unknownProfile(dev.profile) };
    const missing = (dev.only ?? []).filter((n) => !profile.points.some((p) => p.name === n));
    if (missing.length > 0) return { key: "only", message: `not points of ${profile.id}: ${missing.join(", ")}` };
  } else {
    if (dev.only) return { key: "only", message: "only: needs a profile" };
    if (dev.points.length === 0) return { key: "points", message: "a device needs a profile or points" };
  }
  return null;
}

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type UplinkConfig = Config["uplink"];
export type StoreConfig = Config["store"];
export type SourceConfig = Config["sources"][number];
export type SimulatedSourceConfig = z.output<typeof simulatedSource>;
export type SimulatedPointConfig = z.output<typeof simulatedPoint>;
export type ModbusSourceConfig = z.output<typeof modbusSource>;
export type ModbusDeviceConfig = z.output<typeof modbusDevice>;
export type ModbusSimulatorConfig = z.output<typeof modbusSimulator>;
