/**
 * The one source of truth for the configuration: YAML is validated against it, the TypeScript
 * types are derived from it, and `configs/edge-agent.schema.json` is generated from it.
 *
 * The sections of the agent itself live here; each kind of source brings its own piece
 * (src/sources/<type>/type.ts), and buildConfigSchema() composes them with the checks that
 * span the file (names, point ids, ports, actuators, rooms) from the facts each kind gives.
 */
import { z } from "zod";
import { getProfile, profileIds } from "../../drivers/modbus/registry.js";
import { chargerConfig, type RelayConfig, streetlightConfig } from "./control-schema.js";
import { ed25519PublicKey } from "../model/ed25519.js";
import { OPCUA_POLICIES } from "../model/opcua.js";
import { name, type Path, pointRef, type Report } from "./fields.js";
import { formatPath } from "../model/path.js";
import type { SourceConfigType, SourceFacts } from "./source-type.js";
import { DAY, duration, HOUR, MINUTE, SECOND, size } from "./units.js";

// Duration bounds: polls and periodic reports at most daily; a network or device timeout at most
// minutes (a longer one only delays the retry); backoff at most an hour.

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
    max_bytes: size().default(65_536).meta({
      description:
        "Largest telemetry payload. 64KB by default: under every common broker's limit (AWS IoT Core 128 KB, Azure IoT Hub 256 KB, EMQX 1 MB, Mosquitto and HiveMQ unlimited unless set). Over MQTT 5 a smaller Maximum Packet Size from the broker wins.",
    }),
    linger: duration({ max: HOUR }).default(200),
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
    min: duration({ min: 100, max: HOUR }).default(1000),
    max: duration({ min: 100, max: HOUR }).default(60_000),
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
  protocol: z.enum(["auto", "5", "3.1.1"]).default("auto").meta({
    description:
      "auto: MQTT 5, or 3.1.1 when the broker refuses 5 (logged once). MQTT 5 lets the gateway see a message the broker refuses (and its size limit); over 3.1.1 a broker may acknowledge and drop it unseen.",
  }),
  encoding: z.enum(["json", "compact"]).default("json").meta({
    description:
      "Telemetry and events payload: json (contract v1, ~45 bytes a reading) or compact (v2: a few bytes a reading, with a point dictionary published retained at <root>/<site>/<gateway>/dict; docs/mqtt-contract.md). Command results stay JSON.",
  }),
  budget: z
    .union([
      z
        .string()
        .regex(/^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB)\s*\/\s*month\s*$/i, { error: "expected a monthly budget like 100MB/month" })
        .transform((t) => ({ limit: t.replace(/\/\s*month\s*$/i, "").trim(), saving_linger: "60s", non_critical: [] as string[], non_critical_interval: "5m" })),
      z.strictObject({
        limit: z.string(),
        saving_linger: z.string().default("60s"),
        non_critical: z.array(z.string().min(1).max(200).regex(/^[A-Za-z0-9_.*/-]+$/, { error: "expected a point id or a glob like room-*/humidity" })).max(1000).default([]),
        non_critical_interval: z.string().default("5m"),
      }),
    ])
    .pipe(
      z.strictObject({
        limit: size(),
        saving_linger: duration({ min: SECOND, max: HOUR }),
        non_critical: z.array(z.string()),
        non_critical_interval: duration({ min: SECOND, max: DAY }),
      }),
    )
    .optional()
    .meta({
      description:
        "Monthly data budget, e.g. 100MB/month (or {limit, saving_linger, non_critical, non_critical_interval}): bytes sent are counted per calendar month (UTC); when the month's forecast is over it, live readings wait up to saving_linger (default 60s) to travel in fewer, larger messages, and points matching non_critical (globs over point ids) are stored at most once per non_critical_interval (default 5m), the others counted as thinned. Nothing stored is dropped for it.",
    }),
  username: z.string().optional(),
  password: z.string().optional(),
  tls: tls.optional(),
  // MQTT sends the keepalive in seconds as a 16-bit number (MQTT 3.1.1 §3.1.2.10, 5.0 §3.1.2.10).
  keepalive: duration({ min: SECOND, max: 65_535 * SECOND }).default(30_000),
  connect_timeout: duration({ min: 100, max: 5 * MINUTE }).default(10_000),
  // A full batch over a slow cellular link may take minutes to be acknowledged.
  publish_timeout: duration({ min: 100, max: 10 * MINUTE }).default(10_000),
  max_inflight: z.int().min(1).max(1000).default(16).meta({
    description: "Telemetry messages that may await their PUBACK at once.",
  }),
  health_interval: duration({
    max: DAY,
    description: "Publish gateway health (uptime, CPU, memory, disk, outbox, devices) on <root>/<site>/<gateway>/health this often; 0 = never.",
  }).default(60_000),
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
    // Not a timer (compared with reading times): ten years is beyond any outage worth keeping.
    max_age: duration({ min: SECOND, max: 3650 * DAY }).default(30 * DAY),
    sync: z.enum(["full", "normal"]).default("full").meta({
      description: "full: every commit survives a power cut. normal: faster, may lose the last commits on power loss.",
    }),
    // Not a timer either (compared with acknowledgement times).
    replay_window: duration({
      max: 3650 * DAY,
      description:
        "Keep rows the broker acknowledged this long after the acknowledgement, within the quota (the first to go when it is reached), so the platform can ask for them again (a replay on cmd/outbox); 0s = off, rows are deleted once acknowledged.",
    }).default(0),
  })
  .prefault({});

const room = z
  .strictObject({
    name: name("room name"),
    title: z.string().min(1).max(60).optional().meta({ description: "The name on the room display, e.g. Sala Verdi (default: the room's name)." }),
    presence: pointRef("A presence point (true while someone is detected), e.g. room-101-pir/presence.").optional(),
    co2: pointRef("A CO₂ point in ppm.").optional(),
    temperature: pointRef("A temperature point in °C (for the dew point).").optional(),
    humidity: pointRef("A relative humidity point in % (for the dew point).").optional(),
    hold: duration({ min: SECOND, max: DAY, description: "The room counts as free when no presence was seen for this long." }).default(600_000),
    co2_bands: z
      .strictObject({
        good: z.number().positive().default(800).meta({ description: "Below this (ppm): good." }),
        fair: z.number().positive().default(1200).meta({ description: "Below this (ppm): fair; at or above: poor." }),
        hysteresis: z.number().min(0).default(25).meta({ description: "ppm a value must fall below a threshold to return to the better band (no flapping)." }),
      })
      .prefault({}),
  })
  .meta({ description: "Room metrics derived on the gateway: <name>/occupied, <name>/co2_band, <name>/dew_point; changes are events." });

const modbusSimulator = z
  .strictObject({
    type: z.literal("modbus"),
    name: name("simulator name"),
    host: z.string().default("127.0.0.1"),
    port: z.int().min(0).max(65535).default(0).meta({ description: "TCP port; 0 = any free port." }),
    units: z
      .array(z.strictObject({ unit: z.int().min(1).max(247), profile: z.string().meta({ description: `Built-in profile: ${profileIds().join(", ")}.`, enum: profileIds() }) }))
      .min(1),
  })
  .meta({ description: "A Modbus TCP simulator inside the agent, for demos and tests." });

const opcuaServer = z
  .strictObject({
    host: z.string().min(1).default("127.0.0.1").meta({ description: "Loopback by default; give the gateway's LAN address (or 0.0.0.0) for a BMS or SCADA to reach it." }),
    port: z.int().min(0).max(65535).default(4840),
    allow_anonymous: z.boolean().default(false).meta({ description: "Let clients in without a user (read only: methods always need a user)." }),
    users: z
      .array(z.strictObject({ username: z.string().min(1).max(64), password: z.string().min(1) }))
      .default([]),
    read_only: z.boolean().default(false).meta({ description: "Expose the points only: no actuator methods." }),
    security: z
      .array(z.enum(OPCUA_POLICIES))
      .min(1)
      .default(["Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"])
      .meta({ description: "Security policies offered (each with Sign and SignAndEncrypt); add None to allow unsecured channels." }),
    pki_dir: z.string().min(1).optional().meta({
      description: "Server certificate and trusted clients; default opcua-pki next to the outbox. A client is let in once its certificate is moved from rejected/ to trusted/certs/.",
    }),
  })
  .meta({ description: "OPC UA server: every point as a variable (folder per device), actuator actions as methods." });

const log = z
  .strictObject({
    level: z.enum(["trace", "debug", "info", "warn", "error"]).default("info"),
    status_interval: duration({
      max: DAY,
      description: "Print a one-line status (stored, sent, pending, broker) this often; 0 = never.",
    }).default(0),
  })
  .prefault({});

const metrics = z
  .strictObject({
    host: z.string().default("127.0.0.1").meta({ description: "Loopback by default: put a reverse proxy or an SSH tunnel in front to reach it from elsewhere." }),
    port: z.int().min(0).max(65535).default(9464),
  })
  .optional()
  .meta({ description: "Prometheus endpoint (/metrics) and /healthz; off unless present." });

/** Texts of the pages a config may change (docs/pages.md): each a short string. */
export const PAGE_LABELS = ["co2", "temperature", "humidity", "dew_point", "occupancy", "occupied", "free", "good", "fair", "poor", "updated", "no_data_since", "waiting"] as const;

const loopbackHost = (h: string) => h === "localhost" || h === "::1" || /^127\./.test(h);

const liveFeed = z
  .strictObject({
    host: z.string().default("127.0.0.1").meta({ description: "Loopback by default. Another address (0.0.0.0 for the LAN) needs a token." }),
    port: z.int().min(0).max(65535).default(8080),
    token: z
      .string()
      .min(16, { error: "expected at least 16 characters (e.g. from: openssl rand -hex 16)" })
      .max(256)
      .regex(/^[\x21-\x7e]+$/, { error: "expected printable ASCII without spaces" })
      .optional()
      .meta({ description: "Required to bind another address than loopback: pages and data then need ?token=… (or Authorization: Bearer …)." }),
    language: z.enum(["en", "it"]).default("en").meta({ description: "Language of the room display and the gateway page." }),
    labels: z
      .strictObject(Object.fromEntries(PAGE_LABELS.map((k) => [k, z.string().min(1).max(40).optional()])) as Record<(typeof PAGE_LABELS)[number], z.ZodOptional<z.ZodString>>)
      .optional()
      .meta({ description: "Your own words for the pages' labels (e.g. co2: Aria), over the language's." }),
    stale_after: duration({ min: SECOND, max: DAY, description: "A room display with no new value for this long says 'no data since …'." }).default(2 * MINUTE),
    history: duration({ min: MINUTE, max: HOUR, description: "How far back the gateway page plots each point (kept in memory, bounded)." }).default(10 * MINUTE),
  })
  .superRefine((f, ctx) => {
    if (!loopbackHost(f.host) && f.token === undefined) {
      ctx.addIssue({ code: "custom", path: ["token"], message: `required when host is '${f.host}' (not loopback): anyone on that network could read the pages otherwise` });
    }
  })
  .optional()
  .meta({ description: "Read-only HTTP: the gateway page (/), room displays (/display/<room>), the latest values (/points) and their changes (/stream, Server-Sent Events)." });

const updateKey = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, { error: "expected a key name of letters, digits, '_', '.' or '-' (the manifests' `key`)" })
    .meta({ description: "The name manifests signed with this key carry in their `key` field." }),
  key: z
    .string()
    .min(1)
    .max(4096)
    .superRefine((text, ctx) => {
      try {
        ed25519PublicKey(text);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: `expected an ed25519 public key (base64 of its 32 bytes, base64 SPKI, or PEM): ${(err as Error).message}` });
      }
    })
    .meta({ description: "ed25519 public key: base64 of the raw 32 bytes (as `edge-agent bridge keygen` prints it), base64 SPKI DER, or PEM." }),
});

const updates = z
  .strictObject({
    keys: z.array(updateKey).min(1, { error: "an update needs at least one trusted key" }).meta({ description: "Keys whose signed manifests this gateway accepts." }),
    allow_downgrade: z.boolean().default(false).meta({ description: "Accept an image older than the board's firmware." }),
    images_max: size().default(64 * 1024 * 1024).meta({ description: "Disk kept for firmware images (<data dir>/images)." }),
    health: z
      .strictObject({
        heartbeats: z.int().min(1).max(1000).default(5).meta({ description: "Heartbeats the new image must send within the window." }),
        window: duration({ min: SECOND, max: HOUR, description: "How long the new image is watched (heartbeats, telemetry, no reset) before it is confirmed." }).default(30 * SECOND),
        boot_timeout: duration({ min: SECOND, max: HOUR, description: "How long a board may take to come back after its reset." }).default(2 * MINUTE),
      })
      .prefault({}),
    offline_timeout: duration({ min: SECOND, max: 30 * DAY, description: "How long an update waits for an offline board before it fails." }).default(HOUR),
    download: z
      .strictObject({
        hosts: z
          .array(z.string().min(1).max(253).regex(/^[A-Za-z0-9.:-]+$/, { error: "expected a host name or an IP address" }))
          .default([])
          .meta({ description: "Hosts images may be downloaded from (https only); none by default: images are then staged with `edge-agent bridge update`." }),
        ca: z.string().optional().meta({ description: "PEM file of a private CA the image server's certificate is signed by (besides the system's)." }),
        timeout: duration({ min: SECOND, max: HOUR, description: "A download with no data for this long is retried (three times without progress, then the update fails)." }).default(30 * SECOND),
      })
      .prefault({}),
  })
  .optional()
  .meta({ description: "Firmware updates of bridged boards (docs/firmware-updates.md); off unless present." });

/** The sections that do not depend on the kinds of source. */
const core = {
  site: name("site id"),
  gateway: name("gateway id"),
  uplink,
  store,
  simulators: z.array(modbusSimulator).default([]),
  rooms: z.array(room).default([]),
  metrics,
  live_feed: liveFeed,
  streetlights: z.array(streetlightConfig).default([]),
  chargers: z.array(chargerConfig).default([]),
  opcua: z
    .strictObject({ server: opcuaServer.optional() })
    .optional()
    .meta({ description: "OPC UA; node-opcua is loaded only when this is present." }),
  updates,
  log,
};

/** The config without its sources. */
export type CoreConfig = z.output<z.ZodObject<typeof core>>;

/**
 * The whole schema, with `sources:` made of the given kinds (a discriminated union on `type`:
 * an unknown type is an error that lists the known ones).
 */
export function buildConfigSchema<S extends { type: string; name: string }>(types: readonly SourceConfigType<S>[]) {
  const known = types.map((t) => t.type);
  const byType = new Map<string, SourceConfigType<S>>(types.map((t) => [t.type, t]));
  const options = types.map((t) => t.schema) as unknown as [z.ZodObject, ...z.ZodObject[]];
  const source = z.discriminatedUnion("type", options, {
    error: (issue) => {
      if (issue.code !== "invalid_union") return undefined;
      const type = (issue.input as { type?: unknown } | undefined)?.type;
      if (type === undefined) return `a source needs a type; expected one of: ${known.join(", ")}`;
      const got = typeof type === "string" ? `'${type.slice(0, 40)}'` : (JSON.stringify(type) ?? String(type)).slice(0, 40);
      return `unknown source type ${got}; expected one of: ${known.join(", ")}`;
    },
  }) as unknown as z.ZodType<S>;
  const { site, gateway, uplink: up, store: st, ...rest } = core;
  // `sources` where it always was (errors come in the order of the keys).
  return z.strictObject({ site, gateway, uplink: up, store: st, sources: z.array(source).default([]), ...rest }).superRefine((cfg, ctx) => {
    const report: Report = (path, message) => ctx.addIssue({ code: "custom", path, message });
    checkFile(cfg as CoreConfig & { sources: S[] }, byType, report);
  });
}

/** The checks that span the file, from each source's facts. */
function checkFile<S extends { type: string; name: string }>(cfg: CoreConfig & { sources: S[] }, byType: ReadonlyMap<string, SourceConfigType<S>>, report: Report): void {
  // Point ids are <source or device>/<point>: those prefixes must be unique across the file.
  const prefixes = new Map<string, string>();
  const claim = (prefix: string, path: Path) => {
    const first = prefixes.get(prefix);
    if (first !== undefined) report(path, `duplicate name '${prefix}' (also ${first})`);
    else prefixes.set(prefix, formatPath(path));
  };
  const simulators = new Set(cfg.simulators.map((s) => s.name));
  const owners = new Map<string, { path: Path; source: number }>();
  const points = new Set<string>();
  const devices = new Map<string, SourceFacts["devices"][number]>();
  cfg.sources.forEach((src, i) => {
    const at: Path = ["sources", i];
    const type = byType.get(src.type);
    if (!type) return;
    const claimed = new Set<string>();
    const claimName = (name: string, path: Path) => {
      claimed.add(formatPath(path));
      claim(name, path);
    };
    type.check?.(src, at, { simulators, report, claimName });
    const facts = type.facts(src, at);
    for (const p of facts.prefixes) if (!claimed.has(formatPath(p.path))) claim(p.name, p.path);
    for (const p of facts.points) points.add(p.id);
    for (const d of facts.devices) devices.set(d.name, d);
    // One owner per physical thing: two sources naming the same port, pin or address.
    for (const c of facts.claims) {
      const first = owners.get(c.key);
      if (first === undefined) owners.set(c.key, { path: c.path, source: i });
      else if (first.source !== i) report(c.path, `${c.what} is also ${formatPath(first.path)}${c.hint ? `; ${c.hint}` : ""}`);
    }
  });
  checkRooms(cfg, points, report);
  checkActuators(cfg, claim, devices, points, report);
  checkOpcuaServer(cfg, report);
  cfg.simulators.forEach((sim, i) =>
    sim.units.forEach((u, j) => {
      if (!getProfile(u.profile)) report(["simulators", i, "units", j, "profile"], `unknown profile '${u.profile}'; built in: ${profileIds().join(", ")}`);
    }),
  );
  if (cfg.uplink.reconnect.max < cfg.uplink.reconnect.min) report(["uplink", "reconnect", "max"], "must not be below reconnect.min");
}

/** Streetlights and chargers: relays on real, switchable outputs; meters that are polled; unique names. */
function checkActuators(cfg: CoreConfig, claim: (prefix: string, path: Path) => void, devices: ReadonlyMap<string, SourceFacts["devices"][number]>, points: ReadonlySet<string>, report: Report): void {
  const checkRelay = (relay: RelayConfig, at: Path) => {
    if (!("modbus" in relay)) return;
    const d = devices.get(relay.modbus.device);
    if (!d) return report([...at, "relay", "modbus", "device"], `no Modbus device named '${relay.modbus.device}' under sources:`);
    // The device writes only points it knows (its `only` list, when it has one).
    if (!d.points.includes(relay.modbus.point)) return report([...at, "relay", "modbus", "point"], `'${relay.modbus.device}' has no point '${relay.modbus.point}'`);
    if (!d.switches.includes(relay.modbus.point)) report([...at, "relay", "modbus", "point"], `'${relay.modbus.device}.${relay.modbus.point}' is not a writable coil`);
  };
  cfg.streetlights.forEach((l, i) => {
    const at = ["streetlights", i];
    claim(l.name, [...at, "name"]);
    checkRelay(l.relay, at);
    if (l.part_night?.mode === "dim" && !l.dimmable) report([...at, "part_night", "mode"], "dim needs a dimmable lamp (dimmable: true); this one would stay fully on");
    if (l.presence_boost && !l.presence) report([...at, "presence_boost"], "needs presence: the point id of a presence input");
    try {
      new Intl.DateTimeFormat("en", { timeZone: l.timezone });
    } catch {
      report([...at, "timezone"], `unknown time zone '${l.timezone}' (expected an IANA name like Europe/Rome)`);
    }
  });
  cfg.chargers.forEach((c, i) => {
    const at = ["chargers", i];
    claim(c.name, [...at, "name"]);
    checkRelay(c.relay, at);
    if (!devices.has(c.meter)) return report([...at, "meter"], `no Modbus device named '${c.meter}' under sources:`);
    for (const key of ["power_point", "energy_point"] as const) {
      if (!points.has(`${c.meter}/${c[key]}`)) report([...at, key], `'${c.meter}' does not read a point '${c[key]}'`);
    }
  });
}

/** Somebody must be able to log in, and a user name means one user. */
function checkOpcuaServer(cfg: CoreConfig, report: Report): void {
  const server = cfg.opcua?.server;
  if (!server) return;
  const at = ["opcua", "server"];
  if (!server.allow_anonymous && server.users.length === 0) report([...at, "users"], "nobody can log in: add users, or set allow_anonymous: true");
  const seen = new Set<string>();
  server.users.forEach((u, i) => {
    if (seen.has(u.username)) report([...at, "users", i, "username"], `duplicate user '${u.username}'`);
    seen.add(u.username);
  });
  if (new Set(server.security).size !== server.security.length) report([...at, "security"], "lists a policy twice");
}

/** The derived points of a room, with the inputs each needs. */
export const ROOM_OUTPUTS = [
  { point: "occupied", needs: ["presence"] },
  { point: "co2_band", needs: ["co2"] },
  { point: "dew_point", needs: ["temperature", "humidity"] },
] as const;

function checkRooms(cfg: CoreConfig, points: ReadonlySet<string>, report: Report): void {
  const names = new Map<string, number>();
  cfg.rooms.forEach((room, i) => {
    const at = ["rooms", i];
    const first = names.get(room.name);
    if (first !== undefined) report([...at, "name"], `duplicate room '${room.name}' (also rooms[${first}])`);
    else names.set(room.name, i);
    const inputs = (["presence", "co2", "temperature", "humidity"] as const).filter((k) => room[k] !== undefined);
    if (inputs.length === 0) report(at, "a room needs at least one of: presence, co2, temperature, humidity");
    for (const k of inputs) {
      if (!points.has(room[k]!)) report([...at, k], `no source produces '${room[k]}'`);
    }
    if (room.co2_bands.fair <= room.co2_bands.good) report([...at, "co2_bands", "fair"], `must be above good (${room.co2_bands.good})`);
    for (const out of ROOM_OUTPUTS) {
      const id = `${room.name}/${out.point}`;
      if (out.needs.every((k) => room[k] !== undefined) && points.has(id)) report([...at, "name"], `'${id}' is already a point of a source`);
    }
  });
}

export type UplinkConfig = CoreConfig["uplink"];
export type StoreConfig = CoreConfig["store"];
export type LogConfig = CoreConfig["log"];
export type ModbusSimulatorConfig = z.output<typeof modbusSimulator>;
export type OpcuaServerConfig = z.output<typeof opcuaServer>;
export type RoomConfig = z.output<typeof room>;
