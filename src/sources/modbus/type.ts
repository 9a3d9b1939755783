/** `type: modbus`: one line (RS-485 RTU, Modbus TCP, RTU over TCP) and the devices on it. */
import { z } from "zod";
import { devicePoints, getProfile, profileIds } from "../../../drivers/modbus/registry.js";
import { describePort, rtuOverTcpPortId, serialPortId } from "../../buses/ports.js";
import { hostPort, name, type Path, type Report } from "../../config/fields.js";
import type { SourceFacts } from "../../config/source-type.js";
import { DAY, duration, MINUTE } from "../../config/units.js";
import type { SourceType } from "../type.js";
import { uniqueNames } from "../unique.js";

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

const UNIT_ERROR = "expected a unit id 1–247";

/**
 * A built-in profile, from the profile registry: listed in the JSON Schema (editors complete it);
 * checked with the rest of the file, so an unknown one does not hide the other errors.
 */
export const profileName = () =>
  z.string().meta({ description: `Built-in profile: ${profileIds().join(", ")} (edge-agent modbus profiles).`, enum: profileIds() });

export function unknownProfile(id: string): string {
  return `unknown profile '${id}'; built in: ${profileIds().join(", ")}`;
}

const modbusDevice = z.strictObject({
  name: name("device name"),
  unit: z.int({ error: UNIT_ERROR }).min(1, { error: UNIT_ERROR }).max(247, { error: UNIT_ERROR }),
  profile: profileName().optional(),
  only: z.array(z.string()).optional().meta({ description: "Read only these points of the profile." }),
  points: z.array(modbusPoint).default([]).meta({ description: "Points of a generic device, or added to the profile's." }),
  interval: duration({ min: 50, max: DAY }).optional(),
  timeout: duration({ min: 10, max: MINUTE }).optional(),
  retries: z.int().min(0).max(5).optional(),
  max_registers: z.int().min(1).max(125).optional(),
  max_gap: z.int().min(0).max(100).optional().meta({ description: "Registers a read may skip to join two points, at most (default: as the planner's cost model finds best)." }),
  offline_after: z.int().min(1).max(100).default(3).meta({ description: "Failed polls in a row before the device is marked offline and backed off." }),
  probe_interval: duration({ min: 100, max: DAY, description: "How often an offline device is tried again." }).default(10_000),
  reprobe_interval: duration({
    min: 10_000,
    max: DAY,
    description: "How long a range or point the device refused stays out of its polls before it is tried again (also at once when an offline device answers again).",
  }).default(600_000),
});

const schema = z.strictObject({
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
  max_gap: z.int().min(0).max(100).optional().meta({
    description: "Registers a read may skip to join two points, at most; by default the planner merges whenever one read costs less time on the wire than two.",
  }),
  devices: z.array(modbusDevice).min(1, { error: "needs at least one device" }),
});

export type ModbusSourceConfig = z.output<typeof schema>;
export type ModbusDeviceConfig = z.output<typeof modbusDevice>;

function checkDevice(dev: ModbusDeviceConfig, at: Path, report: Report): void {
  if (dev.profile !== undefined) {
    const profile = getProfile(dev.profile);
    if (!profile) return report([...at, "profile"], unknownProfile(dev.profile));
    const missing = (dev.only ?? []).filter((n) => !profile.points.some((p) => p.name === n));
    if (missing.length > 0) report([...at, "only"], `not points of ${profile.id}: ${missing.join(", ")}`);
  } else {
    if (dev.only) report([...at, "only"], "only: needs a profile");
    else if (dev.points.length === 0) report([...at, "points"], "a device needs a profile or points");
  }
}

export const modbus: SourceType<ModbusSourceConfig> = {
  type: "modbus",
  schema,
  check(src, at, ctx) {
    const transports = (["rtu", "tcp", "rtu_over_tcp", "simulator"] as const).filter((k) => src[k] !== undefined);
    if (transports.length !== 1) {
      ctx.report(at, transports.length === 0 ? "needs one of: rtu, tcp, rtu_over_tcp, simulator" : `has ${transports.join(" and ")}: choose one`);
    }
    if (src.simulator !== undefined && !ctx.simulators.has(src.simulator)) {
      ctx.report([...at, "simulator"], `no simulator named '${src.simulator}' under simulators:`);
    }
    const units = new Map<number, string>();
    src.devices.forEach((dev, j) => {
      const here = [...at, "devices", j];
      ctx.claimName(dev.name, [...here, "name"]);
      const other = units.get(dev.unit);
      if (other !== undefined) ctx.report([...here, "unit"], `unit ${dev.unit} is also '${other}' on this line`);
      units.set(dev.unit, dev.name);
      checkDevice(dev, here, ctx.report);
      uniqueNames(devicePoints(dev), dev.name, [...here, "points"], ctx.report);
    });
  },
  facts(src, at) {
    const claims: SourceFacts["claims"] = [];
    // One writer per physical line: two sources on one serial port would open it twice.
    // The same identities the running agent's port registry uses (a by-id link is its tty).
    const hint = "put both lines' devices under one source";
    if (src.rtu) {
      const id = serialPortId(src.rtu.device);
      const real = describePort(id);
      claims.push({ key: id, path: [...at, "rtu", "device"], what: src.rtu.device === real ? real : `${src.rtu.device} (→ ${real})`, hint });
    }
    if (src.rtu_over_tcp) {
      const { host, port } = src.rtu_over_tcp;
      claims.push({ key: rtuOverTcpPortId(host, port), path: [...at, "rtu_over_tcp"], what: `converter ${host}:${port}`, hint });
    }
    return {
      prefixes: src.devices.map((d, j) => ({ name: d.name, path: [...at, "devices", j, "name"] })),
      points: src.devices.flatMap((d) => [
        ...devicePoints(d).map((p) => ({ id: `${d.name}/${p.name}`, ...(p.unit ? { unit: p.unit } : {}) })),
        { id: `${d.name}/online` },
      ]),
      claims,
      devices: src.devices.map((d) => {
        const points = devicePoints(d);
        return { name: d.name, kind: "Modbus device", switches: points.filter((p) => p.table === "coil" && p.writable).map((p) => p.name), points: points.map((p) => p.name) };
      }),
    };
  },
  summary: (src) => ({ devices: src.devices.length, deviceKind: "Modbus device", points: src.devices.reduce((n, d) => n + devicePoints(d).length, 0) }),
};
