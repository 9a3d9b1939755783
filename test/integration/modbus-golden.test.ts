/**
 * The reference frames of devices.md through the agent's own Modbus master (modbus-serial on a
 * real serial path): what it puts on the wire is byte for byte the reference request, and the
 * reference reply decodes to the reference value.
 */
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { SerialPort } from "serialport";
import { getProfile } from "../../drivers/modbus/registry.js";
import { ModbusSerialLink } from "../../src/buses/modbus/link.js";
import { ModbusLine } from "../../src/buses/modbus/line.js";
import { silentLogger } from "../../src/ops/logger.js";
import { ModbusDevice } from "../../src/sources/modbus/device.js";
import { PtyPair } from "../helpers/socat.js";
import { tempDir } from "../helpers/tmp.js";

const vectors = JSON.parse(readFileSync("test/fixtures/vectors.json", "utf8")) as { modbus_rtu_frames: { what: string; frame: string }[] };
const frame = (prefix: string) => Buffer.from(vectors.modbus_rtu_frames.find((f) => f.what.startsWith(prefix))!.frame.replace(/ /g, ""), "hex");

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The far end of the pty: records what arrives and answers each request with a canned reply. */
async function peer(path: string, answers: Buffer[]) {
  const port = new SerialPort({ path, baudRate: 9600, autoOpen: false });
  await new Promise<void>((res, rej) => port.open((e) => (e ? rej(e) : res())));
  const seen: Buffer[] = [];
  let pending = Buffer.alloc(0);
  port.on("data", (d: Buffer) => {
    pending = Buffer.concat([pending, d]);
    const len = pending[1] === 0x10 ? 9 + (pending[6] ?? 0) : 8;
    if (pending.length >= len) {
      seen.push(pending.subarray(0, len));
      pending = pending.subarray(len);
      const reply = answers.shift();
      if (reply) port.write(reply);
    }
  });
  cleanups.push(() => new Promise<void>((r) => port.close(() => r())));
  return seen;
}

async function line(path: string) {
  const l = new ModbusLine("golden", new ModbusSerialLink({ kind: "rtu", device: path, baud: 9600, parity: "none", dataBits: 8, stopBits: 1 }), { interFrameMs: 4 });
  l.acquire();
  cleanups.push(() => l.release());
  return l;
}

describe("golden frames through the agent's RTU master", () => {
  it("SDM voltage: request 01 04 00 00 00 02 71 CB, reply 43 66 33 34 → 230.2 V", async () => {
    const pty = await PtyPair.open(tempDir());
    cleanups.push(() => pty.unplug());
    const seen = await peer(pty.a, [frame("SDM reply")]);
    const voltage = getProfile("sdm120")!.points.find((p) => p.table === "input" && p.address === 0)!;
    const dev = new ModbusDevice(
      { name: "m", unit: 1, points: [voltage], interval: 1000, timeout: 500, retries: 0, limits: { maxRegisters: 125, maxBits: 2000, maxGap: 0 }, offlineAfter: 3, probeInterval: 1000 },
      await line(pty.b),
      silentLogger(),
    );
    const [r] = await dev.poll(1);
    expect(seen[0]!.toString("hex")).toBe(frame("SDM read").toString("hex"));
    expect(r).toMatchObject({ point: `m/${voltage.name}`, quality: "good", value: 230.2 });
  });

  it("EPEVER battery voltage: request 01 04 31 04 00 01 7E F7, reply 04 CE → 12.30 V", async () => {
    const pty = await PtyPair.open(tempDir());
    cleanups.push(() => pty.unplug());
    const seen = await peer(pty.a, [frame("EPEVER reply")]);
    const battery = getProfile("epever")!.points.find((p) => p.table === "input" && p.address === 0x3104)!;
    const dev = new ModbusDevice(
      { name: "s", unit: 1, points: [battery], interval: 1000, timeout: 500, retries: 0, limits: { maxRegisters: 125, maxBits: 2000, maxGap: 0 }, offlineAfter: 3, probeInterval: 1000 },
      await line(pty.b),
      silentLogger(),
    );
    const [r] = await dev.poll(1);
    expect(seen[0]!.toString("hex")).toBe(frame("EPEVER read").toString("hex"));
    expect(r).toMatchObject({ value: 12.3, quality: "good" });
  });

  it("EPEVER load on: 01 05 00 02 FF 00 2D FA, echoed, then read back", async () => {
    const pty = await PtyPair.open(tempDir());
    cleanups.push(() => pty.unplug());
    const loadOn = frame("EPEVER write coil");
    // Read-back of coil 2: FC01, one byte, bit 0 set.
    const readBack = Buffer.from("0101010190 48".replace(/ /g, ""), "hex");
    const seen = await peer(pty.a, [loadOn, readBack]);
    const load = getProfile("epever")!.points.find((p) => p.table === "coil" && p.address === 2)!;
    const l = await line(pty.b);
    const { writeVerified } = await import("../../src/sources/modbus/write.js");
    expect(await writeVerified(l, "t", 1, load, true, 500)).toMatchObject({ readBack: true });
    expect(seen[0]!.toString("hex")).toBe(loadOn.toString("hex"));
    expect(seen[1]!.toString("hex")).toBe("010100020001 5c0a".replace(/ /g, ""));
  });

  it("an exception reply (01 84 02 C2 C1) is reported as illegal data address, not as a value", async () => {
    const pty = await PtyPair.open(tempDir());
    cleanups.push(() => pty.unplug());
    await peer(pty.a, [frame("exception reply")]);
    const l = await line(pty.b);
    await expect(l.run("t", (link) => link.read(1, "input", 0, 2, 500))).rejects.toMatchObject({ kind: "exception", exceptionCode: 2 });
  });
});
