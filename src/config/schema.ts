/**
 * The one source of truth for the configuration: YAML is validated against it, the TypeScript
 * types are derived from it, and `configs/edge-agent.schema.json` is generated from it.
 */
import { z } from "zod";
import { checkAddress, checkDriver, getDriver, knownDrivers, sensorQuantities } from "../../drivers/i2c/registry.js";
import { pointName, QUANTITIES } from "../../drivers/i2c/types.js";
import { devicePoints, getProfile, profileIds } from "../../drivers/modbus/registry.js";
import { chargerConfig, type RelayConfig, streetlightConfig } from "./control-schema.js";
import { OPCUA_ENDPOINT, OPCUA_POLICIES } from "../opcua/endpoint.js";
import { TRUST_MODES } from "../opcua/trust.js";
import { formatPath } from "./path.js";
import { DAY, duration, HOUR, MINUTE, SECOND, size } from "./units.js";

// Duration bounds: polls and periodic reports at most daily; a network or device timeout at most
// minutes (a longer one only delays the retry); backoff at most an hour.

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
  })
  .prefault({});

const wave = z.enum(["sine", "ramp", "random-walk", "square", "constant"]);

const simulatedPoint = z.strictObject({
  name: name("point name"),
  wave: wave.default("sine"),
  min: z.number().default(0),
  max: z.number().default(100),
  // Not a timer (the phase of a wave): a yearly cycle is the longest worth simulating.
  period: duration({ min: 1, max: 365 * DAY }).default(60_000),
  step: z.number().min(0).optional().meta({ description: "random-walk: largest change per reading." }),
  unit: z.string().optional(),
  decimals: z.int().min(0).max(12).default(2),
});

const simulatedSource = z.strictObject({
  type: z.literal("simulated"),
  name: name("source name"),
  interval: duration({ min: 1, max: DAY }),
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
  interval: duration({ min: 50, max: DAY }).optional(),
  timeout: duration({ min: 10, max: MINUTE }).optional(),
  retries: z.int().min(0).max(5).optional(),
  max_registers: z.int().min(1).max(125).optional(),
  max_gap: z.int().min(0).max(100).optional(),
  offline_after: z.int().min(1).max(100).default(3).meta({ description: "Failed polls in a row before the device is marked offline and backed off." }),
  probe_interval: duration({ min: 100, max: DAY, description: "How often an offline device is tried again." }).default(10_000),
});

const modbusSource = z.strictObject({
  type: z.literal("modbus"),
  name: name("line name"),
  rtu: rtuSerial.optional(),
  tcp: hostPort(502).optional(),
  rtu_over_tcp: hostPort(502).optional(),
  simulator: name("simulator name").optional().meta({ description: "Poll an embedded simulator (simulators: in this file), over TCP." }),
  interval: duration({ min: 50, max: DAY }).default(5000),
  // Even at 300 baud a full Modbus reply (256 bytes) takes under 10 s.
  timeout: duration({ min: 10, max: MINUTE }).default(1000),
  retries: z.int().min(0).max(5).default(1),
  max_registers: z.int().min(1).max(125).default(125),
  max_gap: z.int().min(0).max(100).default(10),
  devices: z.array(modbusDevice).min(1, { error: "needs at least one device" }),
});

const ADDRESS_ERROR = 'expected a 7-bit I²C address 0x03–0x77, like 0x44 or "0x44"';

const addressNumber = () => z.int({ error: ADDRESS_ERROR }).min(0x03, { error: ADDRESS_ERROR }).max(0x77, { error: ADDRESS_ERROR });

const i2cAddress = z
  .union(
    [
      addressNumber(),
      z
        .string()
        .regex(/^0x[0-9a-fA-F]{1,2}$/, { error: ADDRESS_ERROR })
        .transform((text) => Number.parseInt(text.slice(2), 16))
        .pipe(addressNumber()),
    ],
    { error: ADDRESS_ERROR },
  )
  .meta({ description: "7-bit I²C address, written 0x44 or \"0x44\"; default: the driver's usual one." });

const i2cSensor = z.strictObject({
  driver: z.string({ error: "expected a driver id" }).meta({ description: `Sensor driver: ${knownDrivers()} (edge-agent i2c read --help).` }),
  address: i2cAddress.optional(),
  prefix: name("prefix").optional().meta({
    description: "Point names become <prefix>_<quantity>; needed when two sensors of a source measure the same quantity.",
  }),
  only: z.array(z.enum(QUANTITIES)).min(1).optional().meta({ description: "Publish only these quantities of the sensor." }),
  precision: z.enum(["high", "medium", "low"]).optional().meta({ description: "sht3x, sht4x: measurement repeatability (default high)." }),
  mtreg: z.int().min(31).max(254).optional().meta({ description: "bh1750: measurement time register, 31–254 (default 69)." }),
  resolution: z.enum(["high", "high2", "low"]).optional().meta({ description: "bh1750: 1 lx (high), 0.5 lx (high2) or 4 lx (low); default high." }),
});

const i2cSource = z
  .strictObject({
    type: z.literal("i2c"),
    name: name("source name"),
    bus: z.int().min(0).max(255).default(1).meta({ description: "The N of /dev/i2c-N: 1 on a Raspberry Pi's header (pins 3 and 5)." }),
    interval: duration({ min: SECOND, max: DAY }).default(10_000),
    simulated: z.boolean().default(false).meta({ description: "Use a simulated bus with chip models and moving values (demo, tests)." }),
    sensors: z.array(i2cSensor).min(1, { error: "needs at least one sensor" }),
  })
  .meta({ description: "Sensors on one I²C bus; points are <name>/<quantity>: temperature, humidity, co2, pressure, illuminance." });

const gpioSource = z
  .strictObject({
    type: z.literal("gpio"),
    name: name("source name"),
    pin: z
      .int({ error: "expected a BCM GPIO number 0–53" })
      .min(0, { error: "expected a BCM GPIO number 0–53" })
      .max(53, { error: "expected a BCM GPIO number 0–53" })
      .meta({ description: "BCM GPIO number (GPIO17 is header pin 11), not the header pin number." }),
    point: name("point name").default("presence"),
    edge: z.enum(["rising", "falling", "both"]).default("both"),
    debounce: duration({ max: MINUTE, description: "A change counts once the input has held it this long." }).default(50),
    active_low: z.boolean().default(false).meta({ description: "The input is active when low (e.g. a contact to ground)." }),
    interval: duration({ min: SECOND, max: DAY, description: "The current value is also reported this often; edges are reported as they happen." }).default(60_000),
    simulated: z.boolean().default(false).meta({ description: "Use a simulated pin driven by a simulated presence (demo, tests)." }),
  })
  .meta({ description: "A digital input, e.g. a PIR presence sensor: point <name>/<point> (true = active)." });


const opcuaNodeId = z
  .string({ error: "expected a node id like ns=2;s=FlowTemp or ns=3;i=1001" })
  .regex(/^(ns=\d+;)?(i=\d+|s=.+|g=[0-9A-Fa-f-]{36}|b=[A-Za-z0-9+/=]+)$/, { error: "expected a node id like ns=2;s=FlowTemp or ns=3;i=1001" });

const opcuaSource = z
  .strictObject({
    type: z.literal("opcua"),
    name: name("source name"),
    endpoint: z
      .string({ error: "expected an endpoint like opc.tcp://plc-1:4840" })
      .regex(OPCUA_ENDPOINT, { error: "expected an endpoint like opc.tcp://plc-1:4840" }),
    security: z
      .strictObject({
        mode: z.enum(["None", "Sign", "SignAndEncrypt"]).default("SignAndEncrypt"),
        policy: z.enum(OPCUA_POLICIES).default("Basic256Sha256"),
      })
      .optional()
      .meta({
        description:
          "Secure channel; default none (then nothing proves the PLC's identity: its certificate only tells a swapped PLC apart). The PLC's certificate is checked as `trust` says; ours must be trusted by the PLC.",
      }),
    trust: z
      .enum(TRUST_MODES)
      .default("first-use")
      .meta({
        description:
          "first-use: the PLC's certificate is pinned to this endpoint on first contact (logged with its thumbprints), and a different one later is refused until `edge-agent opcua trust` pins it. explicit: an unknown certificate is refused and kept in the PKI's rejected/ until moved to trusted/certs/.",
      }),
    username: z.string().min(1).optional(),
    password: z.string().min(1).optional(),
    nodes: z
      .array(
        z.strictObject({
          name: name("point name"),
          node: opcuaNodeId,
          unit: z.string().optional(),
        }),
      )
      .min(1, { error: "needs at least one node" }),
    interval: duration({ min: 100, max: DAY, description: "Sampling and publishing interval; the points are also reported this often." }).default(5000),
    reconnect: z
      .strictObject({
        min: duration({ min: 100, max: HOUR }).default(1000),
        max: duration({ min: 100, max: HOUR }).default(30_000),
      })
      .prefault({}),
    pki_dir: z.string().min(1).optional().meta({ description: "The client's certificates; default opcua-client-pki next to the outbox." }),
  })
  .meta({ description: "Nodes of a PLC or BMS read over OPC UA (subscriptions): points <name>/<node name>, quality from the status code." });

const source = z.discriminatedUnion("type", [simulatedSource, modbusSource, i2cSource, gpioSource, opcuaSource], {
  error: (issue) =>
    issue.code === "invalid_union" ? "unknown source type; expected one of: simulated, modbus, i2c, gpio, opcua" : undefined,
});

const pointRef = (what: string) =>
  z
    .string({ error: "expected a point id like room-101/co2" })
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/, { error: "expected a point id like room-101/co2" })
    .meta({ description: what });

const room = z
  .strictObject({
    name: name("room name"),
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
      .array(z.strictObject({ unit: z.int().min(1).max(247), profile: z.string() }))
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

export const configSchema = z
  .strictObject({
    site: name("site id"),
    gateway: name("gateway id"),
    uplink,
    store,
    sources: z.array(source).default([]),
    simulators: z.array(modbusSimulator).default([]),
    rooms: z.array(room).default([]),
    metrics: z
      .strictObject({
        host: z.string().default("127.0.0.1").meta({ description: "Loopback by default: put a reverse proxy or an SSH tunnel in front to reach it from elsewhere." }),
        port: z.int().min(0).max(65535).default(9464),
      })
      .optional()
      .meta({ description: "Prometheus endpoint (/metrics) and /healthz; off unless present." }),
    live_feed: z
      .strictObject({
        host: z.string().default("127.0.0.1").meta({ description: "0.0.0.0 to serve panels on the LAN." }),
        port: z.int().min(0).max(65535).default(8080),
      })
      .optional()
      .meta({ description: "Read-only HTTP feed of the latest values (/points) and their changes (/stream, Server-Sent Events)." }),
    streetlights: z.array(streetlightConfig).default([]),
    chargers: z.array(chargerConfig).default([]),
    opcua: z
      .strictObject({ server: opcuaServer.optional() })
      .optional()
      .meta({ description: "OPC UA; node-opcua is loaded only when this is present." }),
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
    const i2cAddresses = new Map<string, string>();
    const gpioPins = new Map<number, string>();
    cfg.sources.forEach((src, i) => {
      if (src.type === "simulated") {
        claim(src.name, ["sources", i, "name"]);
        uniquePoints(src.points, src.name, ["sources", i, "points"]);
        return;
      }
      if (src.type === "i2c") {
        claim(src.name, ["sources", i, "name"]);
        checkI2cSource(src, ["sources", i], i2cAddresses, (path, message) => ctx.addIssue({ code: "custom", path, message }));
        return;
      }
      if (src.type === "opcua") {
        claim(src.name, ["sources", i, "name"]);
        uniquePoints(src.nodes, src.name, ["sources", i, "nodes"]);
        checkOpcuaSource(src, ["sources", i], (path, message) => ctx.addIssue({ code: "custom", path, message }));
        return;
      }
      if (src.type === "gpio") {
        claim(src.name, ["sources", i, "name"]);
        // A simulated pin is the source's own; real ones are one per physical pin.
        if (src.simulated) return;
        const other = gpioPins.get(src.pin);
        if (other !== undefined) ctx.addIssue({ code: "custom", path: ["sources", i, "pin"], message: `GPIO ${src.pin} is also ${other}` });
        else gpioPins.set(src.pin, formatPath(["sources", i, "pin"]));
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
        uniquePoints(devicePoints(dev), dev.name, [...at, "points"]);
      });
    });
    cfg.simulators.forEach((sim, i) =>
      sim.units.forEach((u, j) => {
        if (!getProfile(u.profile)) {
          ctx.addIssue({ code: "custom", path: ["simulators", i, "units", j, "profile"], message: unknownProfile(u.profile) });
        }
      }),
    );
    checkRooms(cfg, (path, message) => ctx.addIssue({ code: "custom", path, message }));
    checkActuators(cfg, claim, (path, message) => ctx.addIssue({ code: "custom", path, message }));
    checkOpcuaServer(cfg, (path, message) => ctx.addIssue({ code: "custom", path, message }));
    if (cfg.uplink.reconnect.max < cfg.uplink.reconnect.min) {
      ctx.addIssue({ code: "custom", path: ["uplink", "reconnect", "max"], message: "must not be below reconnect.min" });
    }
  });

/** Streetlights and chargers: relays on real, writable coils; meters that are polled; unique names. */
function checkActuators(cfg: z.output<typeof configSchema>, claim: (prefix: string, path: (string | number)[]) => void, report: Report): void {
  const devices = new Map<string, z.output<typeof modbusDevice>>();
  for (const src of cfg.sources) if (src.type === "modbus") for (const d of src.devices) devices.set(d.name, d);
  const checkRelay = (relay: RelayConfig, at: (string | number)[]) => {
    if (!("modbus" in relay)) return;
    const d = devices.get(relay.modbus.device);
    if (!d) return report([...at, "relay", "modbus", "device"], `no Modbus device named '${relay.modbus.device}' under sources:`);
    // The device writes only points it knows (its `only` list, when it has one).
    const point = devicePoints(d).find((p) => p.name === relay.modbus.point);
    if (!point) return report([...at, "relay", "modbus", "point"], `'${relay.modbus.device}' has no point '${relay.modbus.point}'`);
    if (point.table !== "coil" || !point.writable) report([...at, "relay", "modbus", "point"], `'${relay.modbus.device}.${point.name}' is not a writable coil`);
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
    const meter = devices.get(c.meter);
    if (!meter) return report([...at, "meter"], `no Modbus device named '${c.meter}' under sources:`);
    const names = new Set(devicePoints(meter).map((p) => p.name));
    for (const key of ["power_point", "energy_point"] as const) {
      if (!names.has(c[key])) report([...at, key], `'${c.meter}' does not read a point '${c[key]}'`);
    }
  });
}

/** Credentials come in pairs; a security mode and its policy agree; backoff bounds are ordered. */
function checkOpcuaSource(src: z.output<typeof opcuaSource>, at: (string | number)[], report: Report): void {
  if ((src.username === undefined) !== (src.password === undefined)) {
    report([...at, src.username === undefined ? "username" : "password"], "username and password go together");
  }
  const sec = src.security;
  if (sec && (sec.mode === "None") !== (sec.policy === "None")) {
    report([...at, "security", "policy"], sec.mode === "None" ? "mode None needs policy None" : `mode ${sec.mode} needs a policy other than None`);
  }
  if (src.reconnect.max < src.reconnect.min) report([...at, "reconnect", "max"], "must not be below reconnect.min");
}

/** Somebody must be able to log in, and a user name means one user. */
function checkOpcuaServer(cfg: z.output<typeof configSchema>, report: Report): void {
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

function unknownProfile(id: string): string {
  return `unknown profile '${id}'; built in: ${profileIds().join(", ")}`;
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

type Report = (path: (string | number)[], message: string) => void;
type I2cSourceOutput = z.output<typeof i2cSource>;

/** The point names an i2c sensor entry publishes (empty for an unknown driver). */
export function i2cSensorPoints(sensor: Pick<z.output<typeof i2cSensor>, "driver" | "only" | "prefix">): string[] {
  const driver = getDriver(sensor.driver);
  if (!driver) return [];
  return sensorQuantities(driver, sensor.only).map((q) => pointName(q, sensor.prefix));
}

/** Drivers, addresses and options exist and fit; no two sensors publish the same point or share an address. */
function checkI2cSource(src: I2cSourceOutput, at: (string | number)[], busAddresses: Map<string, string>, report: Report): void {
  const points = new Map<string, number>();
  const addresses = new Map<number, number>();
  src.sensors.forEach((sensor, j) => {
    const here = [...at, "sensors", j];
    const driverIssue = checkDriver(sensor.driver);
    const driver = getDriver(sensor.driver);
    if (!driver) {
      report([...here, "driver"], driverIssue!);
      return;
    }
    const address = sensor.address ?? driver.addresses[0]!;
    const addressIssue = checkAddress(driver, address);
    if (addressIssue) report([...here, "address"], addressIssue);
    for (const option of ["precision", "mtreg", "resolution"] as const) {
      if (sensor[option] !== undefined && !driver.options.includes(option)) {
        report([...here, option], `not an option of ${driver.id}${driver.options.length ? ` (it has: ${driver.options.join(", ")})` : ""}`);
      }
    }
    const foreign = (sensor.only ?? []).filter((q) => !driver.quantities.includes(q));
    if (foreign.length) report([...here, "only"], `${driver.id} does not measure ${foreign.join(", ")} (it measures ${driver.quantities.join(", ")})`);
    const sameAddress = addresses.get(address);
    if (sameAddress !== undefined) {
      report([...here, "address"], `address 0x${address.toString(16)} is also sensors[${sameAddress}] (${src.sensors[sameAddress]!.driver}) on this bus`);
    } else addresses.set(address, j);
    if (!src.simulated) {
      const key = `${src.bus}:${address}`;
      const other = busAddresses.get(key);
      const path = formatPath([...here, "address"]);
      if (other !== undefined && other.split(".sensors")[0] !== formatPath(at)) {
        report([...here, "address"], `address 0x${address.toString(16)} on bus ${src.bus} is also ${other}`);
      } else if (other === undefined) busAddresses.set(key, path);
    }
    for (const p of i2cSensorPoints(sensor)) {
      const first = points.get(p);
      if (first !== undefined) {
        report(here, `point '${src.name}/${p}' is also produced by sensors[${first}] (${src.sensors[first]!.driver}); give one of them a prefix (or an only: list)`);
      } else points.set(p, j);
    }
  });
}

/** Every point id the sources produce. */
function sourcePointIds(cfg: z.output<typeof configSchema>): Set<string> {
  const ids = new Set<string>();
  for (const src of cfg.sources) {
    switch (src.type) {
      case "simulated":
        for (const p of src.points) ids.add(`${src.name}/${p.name}`);
        break;
      case "modbus":
        for (const dev of src.devices) {
          for (const p of devicePoints(dev)) ids.add(`${dev.name}/${p.name}`);
          ids.add(`${dev.name}/online`);
        }
        break;
      case "i2c":
        for (const sensor of src.sensors) for (const p of i2cSensorPoints(sensor)) ids.add(`${src.name}/${p}`);
        break;
      case "gpio":
        ids.add(`${src.name}/${src.point}`);
        break;
      case "opcua":
        for (const n of src.nodes) ids.add(`${src.name}/${n.name}`);
        break;
    }
  }
  return ids;
}

/** The derived points of a room, with the inputs each needs. */
export const ROOM_OUTPUTS = [
  { point: "occupied", needs: ["presence"] },
  { point: "co2_band", needs: ["co2"] },
  { point: "dew_point", needs: ["temperature", "humidity"] },
] as const;

function checkRooms(cfg: z.output<typeof configSchema>, report: Report): void {
  const points = sourcePointIds(cfg);
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
export type I2cSourceConfig = z.output<typeof i2cSource>;
export type I2cSensorConfig = z.output<typeof i2cSensor>;
export type GpioSourceConfig = z.output<typeof gpioSource>;
export type OpcuaSourceConfig = z.output<typeof opcuaSource>;
export type OpcuaServerConfig = z.output<typeof opcuaServer>;
export type RoomConfig = z.output<typeof room>;
