/** The I2cBus contract against the simulated bus and the real backend (node-bus.ts) on an i2c-bus stand-in. */
import { mkdirSync } from "node:fs";
import { ManualClock, realClock } from "../../src/buses/i2c/clock.js";
import { NodeI2cBus } from "../../src/buses/i2c/node-bus.js";
import { SimI2cBus } from "../../src/buses/i2c/sim-bus.js";
import { i2cBusStandIn } from "../helpers/i2c-bus-standin.js";
import { tempDir } from "../helpers/tmp.js";
import { i2cBusContract } from "./i2c-bus.js";

i2cBusContract("SimI2cBus", async () => {
  const clock = new ManualClock(1000);
  return {
    clock,
    open: async (chips, opts = {}) => new SimI2cBus(1, clock, opts).attach(...chips),
  };
});

i2cBusContract("NodeI2cBus on an i2c-bus stand-in", async () => ({
  // The real bus waits in real time, so the chips measure in real time too.
  clock: realClock(),
  open: async (chips, opts = {}) => {
    const standIn = i2cBusStandIn(chips);
    if (opts.missing) {
      const devDir = tempDir(); // no i2c-1 in it: the file check fails as on a Pi with I²C off
      mkdirSync(devDir, { recursive: true });
      return new NodeI2cBus(1, { devDir, load: async () => standIn });
    }
    const denied = Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" });
    // Tests run as root, where file modes deny nothing: the access check is injected.
    const access = opts.forbidden ? () => Promise.reject(denied) : async () => {};
    return new NodeI2cBus(1, { access, load: async () => standIn });
  },
}));
