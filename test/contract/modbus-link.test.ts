/**
 * The ModbusLink contract against the simulated link and the real one (modbus-serial on our
 * port) over a socat pty pair, Modbus TCP and RTU over TCP, the simulator at the far end.
 */
import { join } from "node:path";
import { expect, vi } from "vitest";
import { ModbusSerialLink } from "../../src/buses/modbus/link.js";
import { SimLink } from "../../src/buses/modbus/sim-link.js";
import { ModbusSimulator } from "../../src/simulators/modbus/server.js";
import { freePort } from "../helpers/broker.js";
import { PtyPair } from "../helpers/socat.js";
import { tempDir } from "../helpers/tmp.js";
import { type MakeLink, modbusLinkContract } from "./modbus-link.js";

const HOST = "127.0.0.1";

/** The far end's late reply has come in: the link holds bytes while no request is out. */
async function lateReply(link: ModbusSerialLink): Promise<void> {
  await vi.waitFor(() => expect(link.received().length).toBeGreaterThan(0), { timeout: 5000 });
}
/** Fast enough that line time does not count, slow enough to be a real serial path. */
const BAUD = 115200;

modbusLinkContract("SimLink", async (units) => {
  const link = new SimLink(units);
  return {
    link,
    setFault: (unit, fault) => link.setFault(unit, fault),
    peerAway: async () => link.unplug(),
    peerBack: async () => link.plug(),
    lateReplyIn: async () => {},
    nowhere: async () => Object.assign(new SimLink(new Map()), { unplugged: true }),
    close: async () => {},
    damaged: { badCrc: "crc", truncated: "truncated" },
  };
});

function simulator(units: Parameters<MakeLink>[0]): ModbusSimulator {
  const sim = new ModbusSimulator();
  for (const [id, device] of units) sim.addUnit(id, device);
  return sim;
}

modbusLinkContract("ModbusSerialLink, RTU over a socat pty pair", async (units) => {
  const dir = tempDir();
  const pty = await PtyPair.open(dir);
  let sim = simulator(units);
  await sim.openSerial({ path: pty.a, baudRate: BAUD });
  const rtu = (device: string) => new ModbusSerialLink({ kind: "rtu", device, baud: BAUD, parity: "none", dataBits: 8, stopBits: 1 });
  const link = rtu(pty.b);
  return {
    link,
    setFault: (unit, fault) => sim.setFault(unit, fault),
    peerAway: async () => {
      await sim.close();
      await pty.unplug(); // both ends vanish, as when the USB adapter is pulled
    },
    peerBack: async () => {
      await pty.plug();
      const faults = sim;
      sim = simulator(units);
      for (const id of units.keys()) sim.setFault(id, faults.fault(id));
      await sim.openSerial({ path: pty.a, baudRate: BAUD });
    },
    lateReplyIn: () => lateReply(link),
    nowhere: async () => rtu(join(dir, "ttyNone")),
    close: async () => {
      await sim.close();
      await pty.unplug();
    },
    damaged: { badCrc: "crc", truncated: "truncated" },
  };
});

function overTcp(kind: "tcp" | "rtu-over-tcp"): MakeLink {
  return async (units) => {
    const sim = simulator(units);
    const listen = (port: number) => (kind === "tcp" ? sim.listenTcp({ host: HOST, port }) : sim.listenRtuOverTcp({ host: HOST, port }));
    const listener = await listen(0);
    if (listener.transport === "rtu") throw new Error("unexpected listener");
    const port = listener.port;
    const link = new ModbusSerialLink({ kind, host: HOST, port });
    return {
      link,
      setFault: (unit, fault) => sim.setFault(unit, fault),
      peerAway: () => sim.close(), // the converter closes its connections and stops listening
      peerBack: async () => void (await listen(port)),
      // Modbus TCP drops the connection after a timeout: nothing late can reach the link.
      lateReplyIn: kind === "tcp" ? async () => expect(link.isOpen).toBe(false) : () => lateReply(link),
      nowhere: async () => new ModbusSerialLink({ kind, host: HOST, port: await freePort() }),
      close: () => sim.close(),
      // No CRC in MBAP: a damaged frame is one shorter than its header says, silence after it.
      damaged: kind === "tcp" ? { badCrc: "timeout", truncated: "timeout" } : { badCrc: "crc", truncated: "truncated" },
    };
  };
}

modbusLinkContract("ModbusSerialLink, Modbus TCP", overTcp("tcp"));
modbusLinkContract("ModbusSerialLink, RTU over TCP", overTcp("rtu-over-tcp"));
