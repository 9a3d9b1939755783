/**
 * The I2cBus contract: one suite, run against every implementation (as MQTT.js runs its
 * abstract store suite against each store). A driver sees no difference between the simulated
 * bus and the real one, so a driver tested on one works on the other.
 */
import { describe, expect, it } from "vitest";
import { getDriver } from "../../drivers/i2c/registry.js";
import { crc8, decodeWords } from "../../drivers/i2c/sensirion-crc.js";
import { type I2cBus, I2cError } from "../../src/buses/i2c/bus.js";
import type { SimClock } from "../../src/buses/i2c/clock.js";
import { I2cQueue } from "../../src/buses/i2c/queue.js";
import type { I2cTarget } from "../../src/buses/i2c/sim-bus.js";
import { SimBh1750 } from "../../src/simulators/i2c/bh1750.js";
import { SimSht4x } from "../../src/simulators/i2c/sht4x.js";

export interface I2cBusUnderTest {
  /** The clock the chips measure with: the bus's delay() must move it as the chips expect. */
  clock: SimClock;
  /** Bus 1 with these chips on it; `missing`: the bus does not exist; `forbidden`: no access. */
  open(chips: I2cTarget[], opts?: { missing?: boolean; forbidden?: boolean }): Promise<I2cBus>;
}

const SHT = 0x44;
const BH = 0x23;

export function i2cBusContract(name: string, make: () => Promise<I2cBusUnderTest>): void {
  describe(`I2cBus contract: ${name}`, () => {
    async function rig() {
      const u = await make();
      const sht = new SimSht4x(SHT, u.clock);
      const bh = new SimBh1750(BH, u.clock);
      sht.set({ temperature: 21.5, humidity: 40 });
      bh.set({ illuminance: 420 });
      const bus = await u.open([sht, bh]);
      return { bus, sht, bh };
    }

    it("is named after its bus number", async () => {
      const { bus } = await rig();
      expect(bus.name).toBe("i2c-1");
      await bus.close();
    });

    it("writes a command, waits on its clock, reads the reply with its CRCs intact", async () => {
      const { bus } = await rig();
      await bus.write(SHT, Uint8Array.from([0xfd])); // measure, high precision (8.3 ms)
      await bus.delay(10);
      const reply = await bus.read(SHT, 6);
      expect(reply.length).toBe(6);
      expect(crc8(reply.subarray(0, 2))).toBe(reply[2]);
      const [t, rh] = decodeWords(reply);
      expect(-45 + (175 * t!) / 65535).toBeCloseTo(21.5, 1);
      expect(-6 + (125 * rh!) / 65535).toBeCloseTo(40, 1);
      await bus.close();
    });

    it("passes a damaged CRC through untouched: checking it is the driver's job", async () => {
      const { bus, sht } = await rig();
      sht.fault = "bad-crc";
      await bus.write(SHT, Uint8Array.from([0xfd]));
      await bus.delay(10);
      const reply = await bus.read(SHT, 6);
      expect(crc8(reply.subarray(0, 2))).not.toBe(reply[2]);
      expect(decodeWords(reply)).toEqual([null, expect.any(Number)]);
      await bus.close();
    });

    it("a driver reads the same values through it", async () => {
      const { bus } = await rig();
      const queue = new I2cQueue(bus);
      queue.acquire();
      const sht = getDriver("sht4x")!.create(queue.device(SHT));
      const bh = getDriver("bh1750")!.create(queue.device(BH));
      await sht.init();
      await bh.init();
      const values = [...(await sht.read()), ...(await bh.read())].map((v) => [v.quantity, v.value, v.crc]);
      expect(values).toEqual([
        ["temperature", 21.5, "ok"],
        ["humidity", 40, "ok"],
        ["illuminance", expect.closeTo(420, 0), "none"],
      ]);
      await queue.release();
    });

    it("an address nobody answers is a NACK naming bus and address, for writes and reads", async () => {
      const { bus } = await rig();
      const nack = { kind: "nack", bus: "i2c-1", address: 0x10, message: "i2c-1 0x10: no acknowledge (sensor absent or busy?)" };
      await expect(bus.write(0x10, Uint8Array.from([1]))).rejects.toMatchObject(nack);
      await expect(bus.read(0x10, 2)).rejects.toMatchObject(nack);
      await expect(bus.read(0x10, 2)).rejects.toBeInstanceOf(I2cError);
      await bus.close();
    });

    it("a chip that is busy measuring, or unplugged, does not acknowledge; plugged back, it does", async () => {
      const { bus, sht } = await rig();
      await bus.write(SHT, Uint8Array.from([0xfd]));
      await expect(bus.read(SHT, 6)).rejects.toMatchObject({ kind: "nack", address: SHT });
      await bus.delay(10);
      sht.unplug();
      await expect(bus.write(SHT, Uint8Array.from([0xfd]))).rejects.toMatchObject({ kind: "nack" });
      sht.plug();
      await bus.write(SHT, Uint8Array.from([0xfd]));
      await bus.delay(10);
      expect((await bus.read(SHT, 6)).length).toBe(6);
      await bus.close();
    });

    it("a scan lists the chips that acknowledge", async () => {
      const { bus, sht } = await rig();
      expect(await bus.scan()).toEqual([BH, SHT]);
      sht.unplug();
      expect(await bus.scan()).toEqual([BH]);
      await bus.close();
    });

    it("a bus that does not exist says so, and how to enable it", async () => {
      const u = await make();
      const bus = await u.open([new SimSht4x(SHT, u.clock)], { missing: true });
      const missing = { kind: "bus-missing", message: "bus i2c-1 does not exist (enable I²C: raspi-config, dtparam=i2c_arm=on)" };
      await expect(bus.write(SHT, Uint8Array.from([0xfd]))).rejects.toMatchObject(missing);
      await expect(bus.scan()).rejects.toMatchObject(missing);
      await bus.close();
    });

    it("a bus without permission names the device file and the group", async () => {
      const u = await make();
      const bus = await u.open([new SimSht4x(SHT, u.clock)], { forbidden: true });
      await expect(bus.read(SHT, 6)).rejects.toMatchObject({ kind: "permission", message: "no permission on /dev/i2c-1 (add the user to the i2c group)" });
      await bus.close();
    });
  });
}
