import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ModbusPoint } from "../../drivers/modbus/types.js";
import {
  crc16,
  crcOk,
  fromHex,
  mbapFrame,
  parseMbap,
  parseRtuRequest,
  rtuFrame,
  toHex,
  type RtuRequest,
} from "../../src/buses/modbus/frames.js";
import { SimDevice, type SimWrite } from "../../src/simulators/modbus/device.js";
import { pointAt, profile } from "../helpers/modbus.js";

// The golden frames of ../shared/reference, copied into test/fixtures (fixtures.test.ts checks the copy).
const VECTORS = fileURLToPath(new URL("../fixtures/vectors.json", import.meta.url));
const vectors = (JSON.parse(readFileSync(VECTORS, "utf8")) as { modbus_rtu_frames: Array<{ what: string; frame: string }> }).modbus_rtu_frames;

function vector(what: RegExp): Buffer {
  const v = vectors.find((x) => what.test(x.what));
  if (!v) throw new Error(`no vector matching ${what} in ${VECTORS}`);
  return fromHex(v.frame);
}

const SDM_READ = vector(/^SDM read/);
const SDM_REPLY = vector(/^SDM reply/);
const EPEVER_READ = vector(/^EPEVER read battery voltage/);
const EPEVER_REPLY = vector(/^EPEVER reply/);
const COIL_WRITE = vector(/write coil/);
const EXCEPTION = vector(/^exception reply/);
const FC16_WRITE = vector(/write holding 0x001C/);



/** What a slave puts on the line for a request frame. */
function answer(device: SimDevice, request: Buffer): Buffer {
  const r = parseRtuRequest(request);
  if (!("frame" in r)) throw new Error(`not a request: ${toHex(request)}`);
  return rtuFrame(r.frame.unit, device.handlePdu(r.frame.pdu));
}

function parseAll(buf: Buffer): RtuRequest[] {
  const out: RtuRequest[] = [];
  for (;;) {
    const r = parseRtuRequest(buf);
    if ("frame" in r) {
      out.push(r.frame);
      buf = r.rest;
    } else if ("garbage" in r) {
      buf = buf.subarray(r.garbage);
    } else return out;
  }
}

describe("golden RTU frames (../shared/reference/vectors.json)", () => {
  it("has the frames this test relies on", () => {
    expect(vectors.length).toBeGreaterThanOrEqual(7);
  });

  it.each(vectors)("CRC of '$what' matches and rtuFrame rebuilds it", ({ frame }) => {
    const buf = fromHex(frame);
    expect(crcOk(buf)).toBe(true);
    expect(crc16(buf.subarray(0, -2))).toBe(buf.readUInt16LE(buf.length - 2));
    expect(toHex(rtuFrame(buf[0]!, buf.subarray(1, -2)))).toBe(toHex(buf));
    const broken = Buffer.from(buf);
    broken[2]! ^= 0x01;
    expect(crcOk(broken)).toBe(false);
  });

  it("parses the requests to unit, function, address and count", () => {
    const parsed = (b: Buffer) => {
      const r = parseRtuRequest(b);
      if (!("frame" in r)) throw new Error(`not parsed: ${JSON.stringify(r)}`);
      expect(r.rest.length).toBe(0);
      const { unit, fc, pdu } = r.frame;
      return { unit, fc, address: pdu.readUInt16BE(1), word: pdu.readUInt16BE(3) };
    };
    expect(parsed(SDM_READ)).toEqual({ unit: 1, fc: 4, address: 0x0000, word: 2 });
    expect(parsed(EPEVER_READ)).toEqual({ unit: 1, fc: 4, address: 0x3104, word: 1 });
    expect(parsed(COIL_WRITE)).toEqual({ unit: 1, fc: 5, address: 0x0002, word: 0xff00 });
    expect(parsed(FC16_WRITE)).toEqual({ unit: 1, fc: 16, address: 0x001c, word: 2 });
    const fc16 = parseRtuRequest(FC16_WRITE);
    expect("frame" in fc16 && fc16.frame.pdu[5]).toBe(4);
    expect("frame" in fc16 && fc16.frame.pdu.readFloatBE(6)).toBe(2.0);
  });

  // The reference reply carries 0x43663334 = 230.20001221 V, one ULP above the float32 nearest to
  // 230.2 (0x43663333 = 230.19999695): a real meter's reading, not an encoding of 230.2.
  const REFERENCE_VOLTS = SDM_REPLY.readFloatBE(3);

  it.each(["sdm630", "sdm120"])("%s: the reference voltage gives the reference reply", (id) => {
    const sdm = profile(id);
    const d = new SimDevice(sdm, { freeze: true });
    const voltage = pointAt(sdm, "input", 0x0000);
    d.set(voltage.name, REFERENCE_VOLTS);
    expect(toHex(answer(d, SDM_READ))).toBe(toHex(SDM_REPLY));
    expect(d.get(voltage.name)).toBeCloseTo(230.2, 4);
    d.set(voltage.name, 230.2);
    expect(toHex(answer(d, SDM_READ))).toBe("01 04 04 43 66 33 33 5A FA");
  });

  it("EPEVER: battery voltage 12.30 V (raw 1230) gives the reference reply", () => {
    const ep = profile("epever");
    const d = new SimDevice(ep, { freeze: true });
    const point = pointAt(ep, "input", 0x3104);
    d.set(point.name, 12.3);
    expect(toHex(answer(d, EPEVER_READ))).toBe(toHex(EPEVER_REPLY));
    expect(d.get(point.name)).toBe(12.3);
  });

  it("EPEVER: the coil write echoes itself, switches the coil and tells onWrite", () => {
    const ep = profile("epever");
    const writes: SimWrite[] = [];
    const d = new SimDevice(ep, { freeze: true, onWrite: (w) => writes.push(w) });
    const coil = pointAt(ep, "coil", 0x0002);
    expect(d.get(coil.name)).toBe(false);
    expect(toHex(answer(d, COIL_WRITE))).toBe(toHex(COIL_WRITE));
    expect(d.get(coil.name)).toBe(true);
    expect(writes).toEqual([{ table: "coil", address: 2, values: [1], points: [{ name: coil.name, value: true }] }]);
  });

  it("a read over an unmapped address gives the reference exception", () => {
    // 0x0200 lies past the SDM630's input map (inside it, unused registers read as zero).
    const request = rtuFrame(1, fromHex("04 02 00 00 02"));
    expect(toHex(answer(new SimDevice(profile("sdm630")), request))).toBe(toHex(EXCEPTION));
    // A range that starts mapped and runs past the block (0x3100–0x3111) is refused as a whole, like a real controller.
    const pastBlock = rtuFrame(1, fromHex("04 31 10 00 04"));
    expect(toHex(answer(new SimDevice(profile("epever")), pastBlock))).toBe(toHex(EXCEPTION));
  });

  it("the FC16 write of baud = 2.0 is accepted and answered with the echo header", () => {
    // The profiles do not map 0x001C (set-up registers): an inline point stands in for it.
    const baud: ModbusPoint = { name: "baud", table: "holding", address: 0x001c, type: "float32", order: "ABCD", writable: true };
    const writes: SimWrite[] = [];
    const d = new SimDevice([baud], { onWrite: (w) => writes.push(w) });
    expect(toHex(answer(d, FC16_WRITE))).toBe(toHex(rtuFrame(1, fromHex("10 00 1C 00 02"))));
    expect(toHex(answer(d, FC16_WRITE))).toBe("01 10 00 1C 00 02 80 0E");
    expect(d.get("baud")).toBe(2);
    expect(writes[0]).toMatchObject({ table: "holding", address: 0x1c, values: [0x4000, 0x0000], points: [{ name: "baud", value: 2 }] });
  });
});

describe("parseRtuRequest", () => {
  it("waits for the rest of a frame that arrives byte by byte", () => {
    for (const frame of [SDM_READ, COIL_WRITE, FC16_WRITE]) {
      for (let n = 0; n < frame.length; n++) {
        const r = parseRtuRequest(frame.subarray(0, n));
        expect(r, `${toHex(frame)} after ${n} bytes`).toHaveProperty("need");
        if ("need" in r) expect(n + r.need).toBeLessThanOrEqual(frame.length);
      }
      const r = parseRtuRequest(frame);
      expect("frame" in r && toHex(r.frame.raw)).toBe(toHex(frame));
    }
  });

  it("splits two frames that arrive in one chunk", () => {
    const both = Buffer.concat([SDM_READ, FC16_WRITE]);
    const first = parseRtuRequest(both);
    if (!("frame" in first)) throw new Error("first frame not parsed");
    expect(toHex(first.frame.raw)).toBe(toHex(SDM_READ));
    const second = parseRtuRequest(first.rest);
    expect("frame" in second && toHex(second.frame.raw)).toBe(toHex(FC16_WRITE));
    expect("frame" in second && second.rest.length).toBe(0);
  });

  it("drops garbage before a frame: line noise, and the tail of a broken frame", () => {
    expect(parseRtuRequest(Buffer.concat([fromHex("FF FF"), SDM_READ]))).toEqual({ garbage: 2 });
    expect(parseAll(Buffer.concat([fromHex("FF FF"), SDM_READ])).map((f) => toHex(f.raw))).toEqual([toHex(SDM_READ)]);
    // A request cut short, then a good one: the CRC fails and parsing resumes at the next start.
    const cut = Buffer.concat([EPEVER_READ.subarray(0, 3), SDM_READ, COIL_WRITE]);
    expect(parseAll(cut).map((f) => toHex(f.raw))).toEqual([toHex(SDM_READ), toHex(COIL_WRITE)]);
    // A byte count no request can have (frame > 256 bytes) is noise, not a reason to wait.
    expect(parseAll(Buffer.concat([fromHex("01 10 00 00 00 7F FE"), SDM_READ])).map((f) => toHex(f.raw))).toEqual([toHex(SDM_READ)]);
    // A bad CRC alone is dropped; nothing is made up.
    const bad = Buffer.from(SDM_READ);
    bad[7]! ^= 0xff;
    expect(parseAll(bad)).toEqual([]);
  });

  it("drops a frame with an unknown function code until the line goes quiet", () => {
    const r = parseRtuRequest(rtuFrame(1, fromHex("2B 0E 01 00")));
    expect(r).toEqual({ garbage: 7, untilSilence: true });
  });

  it("finds every frame however the stream is chunked (property)", () => {
    const requests = [SDM_READ, EPEVER_READ, COIL_WRITE, FC16_WRITE];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...requests), { minLength: 1, maxLength: 6 }), fc.array(fc.nat(40), { maxLength: 8 }), (frames, cuts) => {
        const stream = Buffer.concat(frames);
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        let buf: Buffer = Buffer.alloc(0);
        const got: string[] = [];
        let last = 0;
        for (const at of [...points, stream.length]) {
          buf = Buffer.concat([buf, stream.subarray(last, at)]);
          last = at;
          for (;;) {
            const r = parseRtuRequest(buf);
            if (!("frame" in r)) {
              expect(r).toHaveProperty("need");
              break;
            }
            got.push(toHex(r.frame.raw));
            buf = r.rest;
          }
        }
        expect(got).toEqual(frames.map(toHex));
      }),
    );
  });
});

describe("MBAP", () => {
  it("frames and parses, also when split, and refuses what is not Modbus TCP", () => {
    const adu = mbapFrame(0x1234, 1, fromHex("04 00 00 00 02"));
    expect(toHex(adu)).toBe("12 34 00 00 00 06 01 04 00 00 00 02");
    expect(parseMbap(adu.subarray(0, 5))).toEqual({ need: 2 });
    expect(parseMbap(adu.subarray(0, 9))).toEqual({ need: 3 });
    const r = parseMbap(Buffer.concat([adu, adu.subarray(0, 3)]));
    if (!("frame" in r)) throw new Error("not parsed");
    expect(r.frame).toEqual({ txId: 0x1234, protocol: 0, unit: 1, pdu: fromHex("04 00 00 00 02") });
    expect(r.rest.length).toBe(3);
    expect(parseMbap(fromHex("00 01 00 05 00 06 01 04 00 00 00 02"))).toHaveProperty("invalid");
    expect(parseMbap(fromHex("00 01 00 00 00 01 01"))).toHaveProperty("invalid");
  });
});

describe("SimDevice", () => {
  const pdu = (hex: string) => fromHex(hex);
  const points: ModbusPoint[] = [
    { name: "v", table: "input", address: 0, type: "float32", sim: { wave: "sine", min: 220, max: 240, rate: 10 } },
    { name: "e", table: "input", address: 2, type: "uint32", order: "CDAB", scale: 0.01, sim: { wave: "counter", min: 100, max: 1e6, rate: 2 } },
    { name: "w", table: "input", address: 4, type: "int16", scale: 0.1, sim: { wave: "random-walk", min: -5, max: 5 } },
    { name: "k", table: "input", address: 5, type: "uint16", sim: { wave: "constant", min: 42, max: 42 } },
    { name: "none", table: "input", address: 6, type: "uint16" },
    { name: "set", table: "holding", address: 0, type: "uint16", writable: true },
    { name: "ro", table: "holding", address: 1, type: "uint16" },
    { name: "relay", table: "coil", address: 0, type: "bool", writable: true },
    { name: "locked", table: "coil", address: 1, type: "bool" },
    { name: "alarm", table: "discrete", address: 3, type: "bool", sim: { wave: "constant", min: 1, max: 1 } },
  ];

  it("moves each point by its hint and stays within bounds", () => {
    const d = new SimDevice(points, { startMs: 0, seed: 7 });
    expect(d.get("e")).toBe(100);
    expect(d.get("k")).toBe(42);
    expect(d.get("none")).toBe(0);
    expect(d.get("alarm")).toBe(true);
    const sine = new Set<number>();
    for (let t = 200; t <= 20_000; t += 200) {
      d.tick(t);
      const v = d.get("v") as number;
      sine.add(Math.round(v));
      expect(v).toBeGreaterThanOrEqual(219.99);
      expect(v).toBeLessThanOrEqual(240.01);
      expect(d.get("w")).toBeGreaterThanOrEqual(-5);
      expect(d.get("w")).toBeLessThanOrEqual(5);
      expect(d.get("k")).toBe(42);
    }
    expect(sine.size).toBeGreaterThan(10);
    expect(d.get("e")).toBeCloseTo(140, 5);
  });

  it("does not move when frozen, and keeps values that were set until released", () => {
    const frozen = new SimDevice(points, { startMs: 0, freeze: true });
    const before = frozen.pointNames().map((n) => frozen.get(n));
    frozen.tick(60_000);
    expect(frozen.pointNames().map((n) => frozen.get(n))).toEqual(before);
    const d = new SimDevice(points, { startMs: 0 });
    d.set("e", 12.34);
    d.tick(5_000);
    expect(d.get("e")).toBe(12.34);
    d.release("e");
    d.tick(5_000);
    expect(d.get("e")).toBe(110);
    expect(() => d.get("nope")).toThrow(/no point named 'nope'/);
  });

  it("refuses bad quantities, unmapped or read-only addresses, bad values and unknown functions", () => {
    const d = new SimDevice(points, { freeze: true });
    expect(toHex(d.handlePdu(pdu("04 00 00 00 00")))).toBe("84 03");
    expect(toHex(d.handlePdu(pdu("04 00 00 00 7E")))).toBe("84 03");
    expect(toHex(d.handlePdu(pdu("04 00 00 00 7D")))).toBe("84 02");
    expect(toHex(d.handlePdu(pdu("01 00 00 07 D1")))).toBe("81 03");
    expect(toHex(d.handlePdu(pdu("01 00 00 00 03")))).toBe("81 02");
    expect(toHex(d.handlePdu(pdu("02 00 03 00 01")))).toBe("02 01 01");
    expect(toHex(d.handlePdu(pdu("01 00 00 00 02")))).toBe("01 01 00");
    expect(toHex(d.handlePdu(pdu("03 00 00 00 02")))).toBe("03 04 00 00 00 00");
    expect(toHex(d.handlePdu(pdu("05 00 00 12 34")))).toBe("85 03");
    expect(toHex(d.handlePdu(pdu("05 00 01 FF 00")))).toBe("85 02");
    expect(toHex(d.handlePdu(pdu("06 00 01 00 05")))).toBe("86 02");
    expect(toHex(d.handlePdu(pdu("06 00 00 00 05")))).toBe("06 00 00 00 05");
    expect(d.get("set")).toBe(5);
    expect(toHex(d.handlePdu(pdu("10 00 00 00 02 04 00 01 00 02")))).toBe("90 02");
    expect(toHex(d.handlePdu(pdu("10 00 00 00 01 04 00 01 00 02")))).toBe("90 03");
    expect(toHex(d.handlePdu(pdu("0F 00 00 00 01 01 01")))).toBe("0F 00 00 00 01");
    expect(d.get("relay")).toBe(true);
    expect(toHex(d.handlePdu(pdu("0F 00 00 00 02 01 03")))).toBe("8F 02");
    expect(toHex(d.handlePdu(pdu("2B 0E 01 00")))).toBe("AB 01");
    expect(toHex(d.handlePdu(pdu("04 00 00")))).toBe("84 03");
  });
});
