/**
 * The one source of truth for the configuration: YAML is validated against it, the TypeScript
 * types are derived from it, and `configs/edge-agent.schema.json` is generated from it.
 */
import { z } from "zod";
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

const source = z.discriminatedUnion("type", [simulatedSource], {
  error: (issue) =>
    issue.code === "invalid_union" ? "unknown source type; expected one of: simulated" : undefined,
});

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
    log,
  })
  .superRefine((cfg, ctx) => {
    const seen = new Map<string, number>();
    cfg.sources.forEach((src, i) => {
      const first = seen.get(src.name);
      if (first !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["sources", i, "name"],
          message: `duplicate source name '${src.name}' (also sources[${first}])`,
        });
      } else seen.set(src.name, i);
      const points = new Set<string>();
      src.points.forEach((p, j) => {
        if (points.has(p.name)) {
          ctx.addIssue({
            code: "custom",
            path: ["sources", i, "points", j, "name"],
            message: `duplicate point name '${p.name}' in source '${src.name}'`,
          });
        }
        points.add(p.name);
      });
    });
    if (cfg.uplink.reconnect.max < cfg.uplink.reconnect.min) {
      ctx.addIssue({ code: "custom", path: ["uplink", "reconnect", "max"], message: "must not be below reconnect.min" });
    }
  });

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type UplinkConfig = Config["uplink"];
export type StoreConfig = Config["store"];
export type SourceConfig = Config["sources"][number];
export type SimulatedSourceConfig = z.output<typeof simulatedSource>;
export type SimulatedPointConfig = z.output<typeof simulatedPoint>;
