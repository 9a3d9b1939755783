/**
 * Builds the devices of a `type: modbus` source: one ModbusLine per physical line (shared by
 * every device on it, and by every source naming the same port), one ModbusDevice per device,
 * each polled at its own interval.
 */
import { devicePoints, getProfile } from "../../../drivers/modbus/registry.js";
import type { ModbusDeviceConfig, ModbusSourceConfig } from "./type.js";
import { describeTransport, interFrameMs, ModbusSerialLink, type ModbusTransport } from "../../buses/modbus/link.js";
import { ModbusLine } from "../../buses/modbus/line.js";
import { PortRegistry, rtuOverTcpPortId, serialPortId } from "../../buses/ports.js";
import type { Logger } from "../../ops/logger.js";
import { ModbusDevice } from "./device.js";
import { PROTOCOL_LIMITS } from "./planner.js";

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

export function createModbusDevices(
  src: ModbusSourceConfig,
  deps: { log: Logger; simulators: ReadonlyMap<string, { host: string; port: number }>; ports?: PortRegistry },
): { line: ModbusLine; devices: ModbusDevice[] } {
  const transport = transportOf(src, deps.simulators);
  const line = lineFor(src.name, transport, deps.ports ?? new PortRegistry());
  const profileLimit = (dev: ModbusDeviceConfig) => (dev.profile ? getProfile(dev.profile)?.maxRegisters : undefined);
  const devices = src.devices.map(
    (dev) =>
      new ModbusDevice(
        {
          name: dev.name,
          unit: dev.unit,
          points: devicePoints(dev),
          interval: dev.interval ?? src.interval,
          timeout: dev.timeout ?? src.timeout,
          retries: dev.retries ?? src.retries,
          limits: {
            maxRegisters: Math.min(dev.max_registers ?? src.max_registers, profileLimit(dev) ?? PROTOCOL_LIMITS.maxRegisters),
            maxBits: PROTOCOL_LIMITS.maxBits,
            maxGap: dev.max_gap ?? src.max_gap,
          },
          offlineAfter: dev.offline_after,
          probeInterval: dev.probe_interval,
        },
        line,
        deps.log.child({ line: src.name }),
      ),
  );
  return { line, devices };
}
