/**
 * Physical ports by identity. Two names for one port (`/dev/serial/by-id/usb-FTDI…` and the
 * `/dev/ttyUSB0` it points to) give one id, so sources that name the same port share its queue
 * (one writer per physical port) instead of opening it twice.
 *
 * What is one physical port:
 * - an RTU serial device, by its real path;
 * - a serial-to-Ethernet converter (RTU over TCP), by host and port: every connection to it
 *   ends on the same RS-485 line;
 * - an I²C bus, by number.
 * A Modbus TCP server is not one: it answers each connection on its own (transaction ids), so
 * each source keeps its own connection and queue there, as before.
 */
import { realpathSync } from "node:fs";

/** The real path of a device; the path itself while it does not exist (an adapter not plugged yet). */
export function realDevicePath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

export function serialPortId(device: string, resolve: (path: string) => string = realDevicePath): string {
  return `serial:${resolve(device)}`;
}

export function rtuOverTcpPortId(host: string, port: number): string {
  return `rtu-over-tcp:${host.toLowerCase()}:${port}`;
}

export function i2cPortId(bus: number): string {
  return `i2c:${bus}`;
}

/** The port of an id as a technician names it: `/dev/ttyUSB0`, `10.0.0.9:4001`, `i2c-1`. */
export function describePort(id: string): string {
  const [kind, ...rest] = id.split(":");
  return kind === "i2c" ? `i2c-${rest.join(":")}` : rest.join(":");
}

/**
 * The ports of one agent: the first user of an id opens it, later ones get the same object.
 * `kind` says what the port is used as (`modbus-rtu`, `i2c`, and next `bridge`); one port
 * cannot be two kinds at once, and a port opened with other settings is refused, naming both.
 */
export class PortRegistry {
  private readonly ports = new Map<string, { kind: string; settings: string; owner: string; port: unknown }>();

  /**
   * The shared port `id`. `settings` are what must agree between users (`9600 8N1`); `owner`
   * names the first user in a refusal (`source 'rs485-1'`).
   */
  claim<T>(id: string, use: { kind: string; settings?: string; owner: string }, open: () => T): T {
    const known = this.ports.get(id);
    if (!known) {
      const port = open();
      this.ports.set(id, { kind: use.kind, settings: use.settings ?? "", owner: use.owner, port });
      return port;
    }
    const port = describePort(id);
    if (known.kind !== use.kind) {
      throw new Error(`${use.owner}: ${port} is already in use as ${known.kind} by ${known.owner}`);
    }
    if (known.settings !== (use.settings ?? "")) {
      throw new Error(`${use.owner}: ${port} is already open by ${known.owner} with ${known.settings}, not ${use.settings}`);
    }
    return known.port as T;
  }

  get size(): number {
    return this.ports.size;
  }

  /** Who holds a port id, if anyone: `source 'rs485-1'` (a board finder skips such ports). */
  owner(id: string): string | undefined {
    return this.ports.get(id)?.owner;
  }

  /** Lets go of a port (a board that moved to another one); the next claim opens it anew. */
  release(id: string, owner: string): void {
    if (this.ports.get(id)?.owner === owner) this.ports.delete(id);
  }
}


