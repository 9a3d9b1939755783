/** The ByteLink contract against the in-memory pipe and real serial ports over a socat pty pair. */
import { MemoryPipe } from "../../src/buses/serial/memory-link.js";
import { SerialLink } from "../../src/buses/serial/serial-link.js";
import { PtyPair } from "../helpers/socat.js";
import { tempDir } from "../helpers/tmp.js";
import { byteLinkContract } from "./byte-link.js";

byteLinkContract("MemoryPipe", async () => {
  const pipe = new MemoryPipe("room-node");
  return {
    gateway: pipe.a,
    board: pipe.b,
    unplug: async () => pipe.unplug(),
    close: async () => {
      await pipe.a.close();
      await pipe.b.close();
    },
  };
});

const BAUD = 115200;
byteLinkContract(
  "SerialLink over a socat pty pair",
  async () => {
    const pty = await PtyPair.open(tempDir());
    const gateway = new SerialLink({ path: pty.a, baudRate: BAUD });
    const board = new SerialLink({ path: pty.b, baudRate: BAUD });
    return {
      gateway,
      board,
      unplug: () => pty.unplug(),
      close: async () => {
        await gateway.close();
        await board.close();
        await pty.unplug();
      },
    };
  },
  { secondOpener: (pair) => new SerialLink({ path: pair.gateway.name, baudRate: BAUD }) },
);
