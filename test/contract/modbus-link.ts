/**
 * The ModbusLink contract: one suite, run against every implementation (as MQTT.js runs its
 * abstract store suite against each store): the simulated link, and the real link over a
 * serial line (socat pty pair), Modbus TCP and RTU over TCP, each with the simulator on the
 * far end. Pollers, planners and actuators are unit-tested on the simulated link; this suite is
 * what makes that worth something.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import type { ModbusPoint } from "../../drivers/modbus/types.js";
import { type ModbusLink, ModbusError, type ModbusErrorKind } from "../../src/buses/modbus/link.js";
import type { LinkFault } from "../../src/buses/modbus/sim-link.js";
import { SimDevice } from "../../src/simulators/modbus/device.js";

export interface LinkUnderTest {
  link: ModbusLink;
  /** Changes how a unit misbehaves at the far end, from the next request. */
  setFault(unit: number, fault: LinkFault): void;
  /** The far end goes away (adapter unplugged, converter closed the connection)… */
  peerAway(): Promise<void>;
  /** …and comes back, at the same place. */
  peerBack(): Promise<void>;
  /**
   * Resolves once a reply the far end sent after the timeout has reached the link, or cannot
   * any more (the link dropped the connection; the simulated link has no late replies).
   */
  lateReplyIn(): Promise<void>;
  /** A link of the same kind to a place where nothing is. */
  nowhere(): Promise<ModbusLink>;
  close(): Promise<void>;
  /**
   * What a damaged or cut-short reply looks like on this transport. Frames with a CRC (RTU)
   * show a CRC error and a truncated frame; Modbus TCP has no CRC, and a frame shorter than its
   * header says is silence until the timeout.
   */
  damaged: { badCrc: ModbusErrorKind; truncated: ModbusErrorKind };
}

export type MakeLink = (units: ReadonlyMap<number, SimDevice>) => Promise<LinkUnderTest>;

const POINTS: ModbusPoint[] = [
  { name: "relay_1", table: "coil", address: 0, type: "bool", writable: true },
  { name: "relay_2", table: "coil", address: 1, type: "bool", writable: true },
  { name: "door", table: "discrete", address: 0, type: "bool" },
  { name: "alarm", table: "discrete", address: 1, type: "bool" },
  { name: "voltage", table: "input", address: 0, type: "uint16" },
  { name: "current", table: "input", address: 1, type: "uint16" },
  { name: "setpoint", table: "holding", address: 0, type: "uint16", writable: true },
  { name: "limit", table: "holding", address: 1, type: "uint16", writable: true },
];

function device(values: Record<string, number | boolean>): SimDevice {
  const d = new SimDevice(POINTS, { freeze: true });
  for (const [name, v] of Object.entries(values)) d.set(name, v);
  return d;
}

/**
 * Timeout of a request expected to fail: a fault on the wire shows at the latest then. Short
 * enough for a quick suite, long enough for a damaged reply to come in on a loaded CI machine.
 */
const TIMEOUT = 300;
/**
 * Timeout of a request expected to succeed: only a bound, the answer comes long before — but on a
 * shared CI machine under load a reply through socat's pty pair has taken over 2 s (seen twice),
 * so the bound is generous.
 */
const ANSWER = 10_000;

export function modbusLinkContract(name: string, make: MakeLink): void {
  describe(`ModbusLink contract: ${name}`, () => {
    const cleanups: Array<() => Promise<void>> = [];
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
    });

    async function rig() {
      const units = new Map([
        [1, device({ relay_1: true, relay_2: false, door: false, alarm: true, voltage: 2301, current: 57, setpoint: 500, limit: 1000 })],
        [2, device({ voltage: 2297 })],
      ]);
      const u = await make(units);
      cleanups.push(() => u.close());
      await u.link.open();
      cleanups.push(() => u.link.close());
      /** A request as the line makes it: the link reopened first if it closed itself. */
      const call = async <T>(job: (link: ModbusLink) => Promise<T>): Promise<T> => {
        if (!u.link.isOpen) await u.link.open();
        return job(u.link);
      };
      const failure = (p: Promise<unknown>) =>
        p.then(
          () => expect.fail("expected the request to fail"),
          (err: unknown) => {
            expect(err).toBeInstanceOf(ModbusError);
            return err as ModbusError;
          },
        );
      return { ...u, unit: (id: number) => units.get(id)!, call, failure };
    }

    it("reads each table", async () => {
      const { call } = await rig();
      expect(await call((l) => l.read(1, "coil", 0, 2, ANSWER))).toEqual([1, 0]);
      expect(await call((l) => l.read(1, "discrete", 0, 2, ANSWER))).toEqual([0, 1]);
      expect(await call((l) => l.read(1, "input", 0, 2, ANSWER))).toEqual([2301, 57]);
      expect(await call((l) => l.read(1, "holding", 0, 2, ANSWER))).toEqual([500, 1000]);
      expect(await call((l) => l.read(2, "input", 0, 1, ANSWER))).toEqual([2297]);
    });

    it("writes a coil and registers; the device holds them and reads them back", async () => {
      const { call, unit } = await rig();
      await call((l) => l.writeCoil(1, 1, true, ANSWER));
      await call((l) => l.writeCoil(1, 0, false, ANSWER));
      expect([unit(1).get("relay_1"), unit(1).get("relay_2")]).toEqual([false, true]);
      expect(await call((l) => l.read(1, "coil", 0, 2, ANSWER))).toEqual([0, 1]);
      await call((l) => l.writeRegisters(1, 0, [1234, 0xfffe], ANSWER));
      expect([unit(1).get("setpoint"), unit(1).get("limit")]).toEqual([1234, 0xfffe]);
      expect(await call((l) => l.read(1, "holding", 0, 2, ANSWER))).toEqual([1234, 0xfffe]);
    });

    it("an exception reply is an error with its code and name, never a value", async () => {
      const { call, failure, setFault } = await rig();
      const refused = await failure(call((l) => l.read(1, "holding", 100, 2, ANSWER)));
      expect(refused).toMatchObject({ kind: "exception", exceptionCode: 2, message: "exception 2 (illegal data address)", retryable: false });
      setFault(1, { kind: "exception", code: 4 });
      expect(await failure(call((l) => l.writeCoil(1, 0, true, ANSWER)))).toMatchObject({ kind: "exception", exceptionCode: 4, message: "exception 4 (server device failure)" });
      setFault(1, { kind: "none" });
      expect(await call((l) => l.read(1, "input", 0, 1, ANSWER))).toEqual([2301]);
    });

    it("a silent unit times out; the next request, to a unit that answers, gets its answer", async () => {
      const { call, failure, setFault } = await rig();
      expect(await failure(call((l) => l.read(9, "input", 0, 2, TIMEOUT)))).toMatchObject({ kind: "timeout", message: "no answer (timeout)", retryable: true });
      setFault(1, { kind: "no-answer" });
      expect(await failure(call((l) => l.writeRegisters(1, 0, [1], TIMEOUT)))).toMatchObject({ kind: "timeout" });
      expect(await call((l) => l.read(2, "input", 0, 1, ANSWER))).toEqual([2297]);
    });

    it("a damaged reply is an error of its kind, and the line goes on", async () => {
      const { call, failure, setFault, damaged } = await rig();
      setFault(1, { kind: "bad-crc" });
      const crc = await failure(call((l) => l.read(1, "input", 0, 2, TIMEOUT)));
      expect(crc.kind).toBe(damaged.badCrc);
      if (crc.kind === "crc") expect(crc.message).toBe("CRC error in the reply");
      setFault(1, { kind: "truncated" });
      const cut = await failure(call((l) => l.read(1, "input", 0, 2, TIMEOUT)));
      expect(cut.kind).toBe(damaged.truncated);
      // Explained from the bytes that did come: not mistaken for silence.
      if (cut.kind === "truncated") expect(cut.message).toMatch(/^truncated reply \(\d+ bytes, then silence\)$/);
      expect(cut.retryable).toBe(true);
      setFault(1, { kind: "none" });
      expect(await call((l) => l.read(1, "input", 0, 2, ANSWER))).toEqual([2301, 57]);
    });

    it("a reply from another unit is named as such", async () => {
      const { call, failure, setFault } = await rig();
      setFault(1, { kind: "wrong-unit" });
      expect(await failure(call((l) => l.read(1, "input", 0, 2, TIMEOUT)))).toMatchObject({ kind: "wrong-unit", message: "reply from unit 2 instead of 1" });
      setFault(1, { kind: "none" });
      expect(await call((l) => l.read(1, "input", 0, 2, ANSWER))).toEqual([2301, 57]);
    });

    /*
     * RTU frames carry no transaction id: a late reply that comes in after the next request has
     * gone out cannot be told from that request's answer (the link waits a little after a
     * timeout to make it rare). What must hold: one that came in before is never taken for it.
     */
    it("a slow answer within the timeout is an answer; a late one is not taken for the next request's", async () => {
      const { call, failure, setFault, lateReplyIn } = await rig();
      setFault(1, { kind: "slow", ms: 40 });
      expect(await call((l) => l.read(1, "input", 0, 1, ANSWER))).toEqual([2301]);
      setFault(1, { kind: "slow", ms: TIMEOUT + 5 });
      expect(await failure(call((l) => l.read(1, "input", 0, 1, TIMEOUT)))).toMatchObject({ kind: "timeout" });
      await lateReplyIn();
      setFault(1, { kind: "none" });
      // Same unit, function and length as the late reply (2301): only its own answer will do.
      expect(await call((l) => l.read(1, "input", 1, 1, ANSWER))).toEqual([57]);
      expect(await call((l) => l.read(1, "input", 0, 1, ANSWER))).toEqual([2301]);
    });

    it("closes and opens again on the same port", async () => {
      const { link, call } = await rig();
      await link.close();
      expect(link.isOpen).toBe(false);
      await link.open();
      expect(link.isOpen).toBe(true);
      expect(await call((l) => l.read(1, "input", 0, 1, ANSWER))).toEqual([2301]);
    });

    it("notices the far end going away, and opens again once it is back", async () => {
      const { link, call, failure, peerAway, peerBack } = await rig();
      const drops: string[] = [];
      link.onDisconnect = (reason) => drops.push(reason);
      await peerAway();
      // The link notices by itself: the port or the socket closes.
      await vi.waitFor(() => expect(drops).toEqual(["connection closed"]), { timeout: 5000 });
      expect(link.isOpen).toBe(false);
      expect(await failure(call((l) => l.read(1, "input", 0, 1, TIMEOUT)))).toMatchObject({ kind: "disconnected", message: expect.stringMatching(/^cannot open .+: /) });
      await peerBack();
      await vi.waitFor(() => link.open(), { timeout: 5000, interval: 50 });
      expect(await call((l) => l.read(1, "input", 0, 2, ANSWER))).toEqual([2301, 57]);
    });

    it("cannot open where nothing is, and says why", async () => {
      const { nowhere } = await rig();
      const link = await nowhere();
      const err = await link.open().then(
        () => expect.fail("opened a link to nowhere"),
        (e: unknown) => e as ModbusError,
      );
      expect(err).toBeInstanceOf(ModbusError);
      expect(err.kind).toBe("disconnected");
      expect(err.message).toMatch(/^cannot open .+: (no such device \(unplugged\? see: edge-agent ports\)|connection refused)$/);
      expect(link.isOpen).toBe(false);
    });
  });
}
