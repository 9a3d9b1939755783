/**
 * A stand-in for the native i2c-bus module: the part of its promise API NodeI2cBus uses
 * (openPromisified; i2cWrite, i2cRead, writeQuick, receiveByte, close), backed by simulated
 * chips, with the kernel's errno where a real adapter gives one (bcm2835: EREMOTEIO for a NACK).
 * No kernel bus here: this is how the real backend's own code runs in tests.
 */
import type { PromisifiedBus } from "i2c-bus";
import type { I2cTarget } from "../../src/buses/i2c/sim-bus.js";

function errno(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

const nack = () => errno("EREMOTEIO", "EREMOTEIO: remote I/O error");

export function i2cBusStandIn(targets: readonly I2cTarget[]): { openPromisified(bus: number): Promise<PromisifiedBus> } {
  const at = new Map(targets.map((t) => [t.address, t]));
  const bus = (): PromisifiedBus => {
    let closed = false;
    const check = () => {
      if (closed) throw errno("EBADF", "EBADF: bad file descriptor");
    };
    return {
      async i2cWrite(address, length, buffer) {
        check();
        if (!at.get(address)?.write(buffer.subarray(0, length))) throw nack();
        return { bytesWritten: length, buffer };
      },
      async i2cRead(address, length, buffer) {
        check();
        const data = at.get(address)?.read(length);
        if (!data) throw nack();
        data.copy(buffer, 0, 0, length);
        return { bytesRead: length, buffer };
      },
      async writeQuick(address) {
        check();
        if (!at.get(address)?.acknowledges()) throw nack();
      },
      async receiveByte(address) {
        check();
        const data = at.get(address)?.read(1);
        if (!data) throw nack();
        return data[0]!;
      },
      async close() {
        closed = true;
      },
    };
  };
  return { openPromisified: async () => bus() };
}
