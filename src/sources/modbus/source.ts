/**
 * Builds the devices of a `type: modbus` source: one ModbusLine per physical line (shared by
 * every device on it, and by every source naming the same port), one ModbusDevice per device,
 * each polled at its own interval.
 */
import { devicePoints, getProfile } from "../../../drivers/modbus/registry.js";
import type { ModbusSourceConfig } from "./type.js";
import { describeTransport, interFrameMs, ModbusSerialLink, type ModbusTransport } from "../../buses/modbus/link.js";
import { ModbusLine } from "../../buses/modbus/line.js";
import { PortRegistry, rtuOverTcpPortId, serialPortId } from "../../buses/ports.js";
import type { Logger } from "../../model/logger.js";
import { ModbusDevice } from "./device.js";
import { type PlanLimits, PROTOCOL_LIMITS } from "./planner.js";
import { wireModel } from "./wire-cost.js";
import type { Source } from "../source.js";
import type { SourceDeps } from "../type.js";

export function transportOf(src: ModbusSourceConfig, simulators: ReadonlyMap<string, { host: string; port: number }>): ModbusTransport {
  if (src.rtu) {
    const r = src.rtu;
    return { kind: "rtu", device: r.device, baud: r.baud, parity: r.parity, dataBits: r.data_bits, stopBits: r.stop_bits };
  }
  if (src.tcp) return { kind: "tcp", host: src.tcp.host, port: src.tcp.port };
  if (src.rtu_over_tcp) return { kind: "rtu-over-tcp", host: src.rtu_over_tcp.host, port: src.rtu_over_tcp.port };
  const sim = src.simulator ? simulators.get(src.simulator) : undefined;
  if (!sim) throw new Error(`sources: line '${src.name}' has no transport`);
  return { kind: "tcp", host: sim.host, port: sim.port };
}

/**
 * The line of a source: on a serial device or a serial-to-Ethernet converter, the one line of
 * that port (another source naming it shares it); on Modbus TCP, a connection of its own.
 */
export function lineFor(name: string, transport: ModbusTransport, ports: PortRegistry): ModbusLine {
  const open = () => new ModbusLine(name, new ModbusSerialLink(transport), { interFrameMs: interFrameMs(transport) });
  const owner = `source '${name}'`;
  switch (transport.kind) {
    case "rtu":
      // The same line cannot run at two speeds: its settings must agree (the path may be another name for it).
      return ports.claim(serialPortId(transport.device), { kind: "modbus-rtu", settings: describeTransport({ ...transport, device: "" }).trim(), owner }, open);
    case "rtu-over-tcp":
      return ports.claim(rtuOverTcpPortId(transport.host, transport.port), { kind: "modbus-rtu", owner }, open);
    case "tcp":
      return open();
  }
}

/**
 * What the planner may do for a device: the profile's facts (registers per read, ranges where
 * holes read as zero) within the user's limits; a user's max_gap is a hard cap.
 */
export function readLimits(profileId: string | undefined, user: { maxRegisters?: number | undefined; maxGap?: number | undefined }): PlanLimits {
  const profile = profileId ? getProfile(profileId) : undefined;
  return {
    maxRegisters: Math.min(user.maxRegisters ?? PROTOCOL_LIMITS.maxRegisters, profile?.maxRegisters ?? PROTOCOL_LIMITS.maxRegisters),
    maxBits: PROTOCOL_LIMITS.maxBits,
    ...(user.maxGap !== undefined ? { maxGap: user.maxGap } : {}),
    ...(profile?.readable ? { readable: profile.readable } : {}),
  };
}

export function createModbusDevices(
  src: ModbusSourceConfig,
  deps: { log: Logger; simulators: ReadonlyMap<string, { host: string; port: number }>; ports?: PortRegistry },
): { line: ModbusLine; devices: ModbusDevice[] } {
  const transport = transportOf(src, deps.simulators);
  const line = lineFor(src.name, transport, deps.ports ?? new PortRegistry());
  const wire = wireModel(transport);
  const devices = src.devices.map(
    (dev) => {
      return new ModbusDevice(
        {
          name: dev.name,
          unit: dev.unit,
          points: devicePoints(dev),
          interval: dev.interval ?? src.interval,
          timeout: dev.timeout ?? src.timeout,
          retries: dev.retries ?? src.retries,
          limits: readLimits(dev.profile, { maxRegisters: dev.max_registers ?? src.max_registers, maxGap: dev.max_gap ?? src.max_gap }),
          wire,
          offlineAfter: dev.offline_after,
          probeInterval: dev.probe_interval,
          reprobeInterval: dev.reprobe_interval,
        },
        line,
        deps.log.child({ line: src.name }),
      );
    },
  );
  return { line, devices };
}

/** The agent's factory for `type: modbus` (SourceModule): one source per device. */
export function create(src: ModbusSourceConfig, deps: SourceDeps): Source[] {
  return createModbusDevices(src, deps).devices;
}
