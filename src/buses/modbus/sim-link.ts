/**
 * The simulated implementation of ModbusLink: requests go straight to in-process devices as
 * PDUs, with the same faults the network simulator injects (no answer, exception, CRC error,
 * truncated or misaddressed reply, slow answer) surfacing as the same ModbusErrors the real
 * link raises. Unit tests of pollers, planners and actuators run on it without ports.
 *
 * The link knows no device: it talks to PduHandlers, which the device simulator in
 * src/simulators/modbus/ implements.
 */
import { EXCEPTION_NAMES, type ModbusLink, ModbusError, type ModbusTable } from "./link.js";

/** A Modbus server seen from the wire: a request PDU in, a reply PDU (or an exception PDU) out. */
export interface PduHandler {
  handlePdu(pdu: Buffer): Buffer;
}

/** How a unit misbehaves on the wire (the network simulator's faults take the same shape). */
export type LinkFault =
  | { kind: "none" }
  | { kind: "no-answer" }
  | { kind: "exception"; code: number }
  | { kind: "bad-crc" }
  | { kind: "slow"; ms: number }
  | { kind: "truncated" }
  | { kind: "wrong-unit" };

const READ_FC: Record<ModbusTable, number> = { coil: 1, discrete: 2, holding: 3, input: 4 };

export class SimLink implements ModbusLink {
  private open_ = false;
  private readonly faults = new Map<number, LinkFault>();
  /** Requests seen, per unit: what a bus analyser would show. */
  readonly log: Array<{ unit: number; fc: number; address: number; count: number }> = [];
  onDisconnect?: (reason: string) => void;
  /** Set to make open() fail, as an unplugged adapter does. */
  unplugged = false;

  constructor(
    private readonly devices: ReadonlyMap<number, PduHandler>,
    private readonly opts: { latencyMs?: number } = {},
  ) {}

  get isOpen(): boolean {
    return this.open_;
  }

  async open(): Promise<void> {
    if (this.unplugged) throw new ModbusError("disconnected", "cannot open sim: no such device (unplugged? see: edge-agent ports)");
    this.open_ = true;
  }

  async close(): Promise<void> {
    this.open_ = false;
  }

  setFault(unit: number, fault: LinkFault): void {
    if (fault.kind === "none") this.faults.delete(unit);
    else this.faults.set(unit, fault);
  }

  /** Simulates the cable being pulled: the link drops and will not reopen until plug(). */
  unplug(): void {
    this.unplugged = true;
    this.open_ = false;
    this.onDisconnect?.("connection closed");
  }

  plug(): void {
    this.unplugged = false;
  }

  async read(unit: number, table: ModbusTable, address: number, count: number, timeoutMs: number): Promise<number[]> {
    const pdu = Buffer.from([READ_FC[table], address >> 8, address & 0xff, count >> 8, count & 0xff]);
    const reply = await this.transact(unit, pdu, timeoutMs);
    if (table === "coil" || table === "discrete") {
      return Array.from({ length: count }, (_, i) => ((reply[2 + (i >> 3)]! >> (i & 7)) & 1));
    }
    return Array.from({ length: count }, (_, i) => reply.readUInt16BE(2 + i * 2));
  }

  async writeCoil(unit: number, address: number, value: boolean, timeoutMs: number): Promise<void> {
    await this.transact(unit, Buffer.from([5, address >> 8, address & 0xff, value ? 0xff : 0, 0]), timeoutMs);
  }

  async writeRegisters(unit: number, address: number, values: number[], timeoutMs: number): Promise<void> {
    const pdu = Buffer.alloc(6 + values.length * 2);
    pdu.writeUInt8(16, 0);
    pdu.writeUInt16BE(address, 1);
    pdu.writeUInt16BE(values.length, 3);
    pdu.writeUInt8(values.length * 2, 5);
    values.forEach((v, i) => pdu.writeUInt16BE(v & 0xffff, 6 + i * 2));
    await this.transact(unit, pdu, timeoutMs);
  }

  private async transact(unit: number, pdu: Buffer, timeoutMs: number): Promise<Buffer> {
    if (!this.open_) throw new ModbusError("disconnected", "sim is not open");
    this.log.push({ unit, fc: pdu[0]!, address: pdu.readUInt16BE(1), count: pdu[0]! <= 4 ? pdu.readUInt16BE(3) : 1 });
    const fault: LinkFault = this.faults.get(unit) ?? { kind: "none" };
    const device = this.devices.get(unit);
    const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
    if (!device || fault.kind === "no-answer") {
      await wait(timeoutMs);
      throw new ModbusError("timeout", "no answer (timeout)");
    }
    if (fault.kind === "slow" && fault.ms >= timeoutMs) {
      await wait(timeoutMs);
      throw new ModbusError("timeout", "no answer (timeout)");
    }
    await wait(fault.kind === "slow" ? fault.ms : (this.opts.latencyMs ?? 0));
    if (fault.kind === "bad-crc") throw new ModbusError("crc", "CRC error in the reply");
    if (fault.kind === "truncated") throw new ModbusError("truncated", "truncated reply (3 bytes, then silence)");
    if (fault.kind === "wrong-unit") throw new ModbusError("wrong-unit", `reply from unit ${(unit % 247) + 1} instead of ${unit}`);
    if (fault.kind === "exception") throw new ModbusError("exception", `exception ${fault.code} (${EXCEPTION_NAMES[fault.code] ?? "unknown exception"})`, fault.code);
    const reply = device.handlePdu(pdu);
    if (reply[0]! & 0x80) {
      const code = reply[1]!;
      throw new ModbusError("exception", `exception ${code} (${EXCEPTION_NAMES[code] ?? "unknown exception"})`, code);
    }
    return reply;
  }
}
