/**
 * Framing of the firmware bridge (docs/firmware-bridge.md, sections 2, 3 and 10): COBS, CRC-32,
 * frames, the streaming decoder, and the golden frames both implementations check.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { cobsDecode, cobsEncode } from "../../src/bridge/cobs.js";
import { crc32, crc32Table } from "../../src/bridge/crc32.js";
import { FrameDecoder } from "../../src/bridge/decoder.js";
import { type Frame, FLAG, decodeWireFrame, encodeFrame, frameBytes, parseFrame } from "../../src/bridge/frame.js";
import { decodeEnvelope, envelopeJson } from "../../src/bridge/messages.js";

interface Golden {
  name: string;
  description: string;
  chan: number;
  flags: number;
  seq: number;
  ack: number;
  payload_hex: string;
  message: unknown;
  wire_hex: string;
}

const GOLDEN = fileURLToPath(new URL("../../drivers/bridge/golden.json", import.meta.url));
const golden = JSON.parse(readFileSync(GOLDEN, "utf8")) as Golden[];
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const bytes = (h: string) => new Uint8Array(Buffer.from(h, "hex"));

const frameArb = fc.record({
  chan: fc.constantFrom(0, 1, 2, 3, 7, 5),
  flags: fc.integer({ min: 0, max: 15 }),
  seq: fc.integer({ min: 0, max: 0xffff }),
  ack: fc.integer({ min: 0, max: 0xffff }),
  payload: fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 40, max: 1 })),
});

function stream(frames: Frame[]): Uint8Array {
  const parts = frames.map((f, i) => encodeFrame(f, { afterDelimiter: i > 0 }));
  return new Uint8Array(Buffer.concat(parts));
}

function same(a: Frame, b: Frame): boolean {
  return a.chan === b.chan && a.flags === b.flags && a.seq === b.seq && a.ack === b.ack && hex(a.payload) === hex(b.payload);
}

describe("COBS", () => {
  it("matches the published examples, shortest form after a full block", () => {
    expect(hex(cobsEncode(bytes("00")))).toBe("0101");
    expect(hex(cobsEncode(bytes("0000")))).toBe("010101");
    expect(hex(cobsEncode(bytes("11220033")))).toBe("03112202" + "33");
    expect(hex(cobsEncode(bytes("11223344")))).toBe("0511223344");
    const run254 = Uint8Array.from({ length: 254 }, (_, i) => i + 1);
    expect(hex(cobsEncode(run254))).toBe("ff" + hex(run254));
    const run255 = Uint8Array.from({ length: 255 }, (_, i) => (i % 255) + 1);
    expect(hex(cobsEncode(run255))).toBe("ff" + hex(run255.subarray(0, 254)) + "02" + hex(run255.subarray(254)));
    expect(hex(cobsEncode(Uint8Array.from([0, ...run254])))).toBe("01ff" + hex(run254));
  });

  it("decodes both forms of a final full block, and refuses what is not COBS", () => {
    const run254 = Uint8Array.from({ length: 254 }, (_, i) => i + 1);
    expect(hex(cobsDecode(bytes("ff" + hex(run254) + "01"))!)).toBe(hex(run254));
    expect(cobsDecode(bytes("0511"))).toBeUndefined();
    expect(cobsDecode(bytes("020100"))).toBeUndefined();
  });

  it("round-trips any bytes, with no 0x00 in the encoding", () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 1200 }), fc.uint8Array({ maxLength: 600, max: 1 })), (data) => {
        const enc = cobsEncode(data);
        expect(enc.includes(0)).toBe(false);
        expect(enc.length).toBeLessThanOrEqual(data.length + Math.floor(data.length / 254) + 1);
        expect(hex(cobsDecode(enc)!)).toBe(hex(data));
      }),
    );
  });
});

describe("CRC-32", () => {
  it("has the check value of CRC-32/ISO-HDLC, native and table alike", () => {
    const check = new TextEncoder().encode("123456789");
    expect(crc32(check)).toBe(0xcbf43926);
    expect(crc32Table(check)).toBe(0xcbf43926);
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (d) => crc32(d) === crc32Table(d)));
  });

  it("is sent little-endian after the payload", () => {
    const raw = frameBytes({ chan: 0, flags: 0, seq: 0, ack: 0, payload: new Uint8Array(0) });
    const crc = crc32(raw.subarray(0, 7));
    expect(hex(raw.subarray(7))).toBe(hex(Uint8Array.from([crc & 0xff, (crc >>> 8) & 0xff, (crc >>> 16) & 0xff, crc >>> 24])));
  });
});

describe("golden frames (drivers/bridge/golden.json)", () => {
  it("are the ones the spec prints, byte for byte (docs/firmware-bridge.md, section 12)", () => {
    const doc = readFileSync("docs/firmware-bridge.md", "utf8");
    const section = doc.slice(doc.indexOf("<!-- golden frames:"), doc.indexOf("<!-- end of golden frames -->"));
    const inDoc = new Map([...section.matchAll(/\*\*([a-z0-9_]+)\*\* —[^\n]*\n\n```\n([0-9a-f \n]+)```/g)].map((m) => [m[1]!, m[2]!.replace(/\s+/g, "")]));
    const golden = JSON.parse(readFileSync("drivers/bridge/golden.json", "utf8")) as Array<{ name: string; wire_hex: string }>;
    expect(inDoc.size).toBe(golden.length);
    for (const g of golden) expect(inDoc.get(g.name), g.name).toBe(g.wire_hex.replace(/\s+/g, "").toLowerCase());
  });

  it("cover what the spec lists", () => {
    const names = golden.map((g) => g.name);
    for (const n of ["pure_ack", "hello_request", "hello", "hello_reply_accepted", "hello_reply_refused", "heartbeat", "time_request", "time_reply", "describe", "readings", "readings_ack", "command_write_number", "command_result", "log", "nak_busy", "readings_zeros", "describe_long", "management_smp", "cobs_exact_block"]) {
      expect(names).toContain(n);
    }
    for (const g of golden) expect(Object.keys(g).sort()).toEqual(["ack", "chan", "description", "flags", "message", "name", "payload_hex", "seq", "wire_hex"]);
  });

  it.each(golden.map((g) => [g.name, g] as const))("%s decodes and re-encodes byte for byte", (_name, g) => {
    const r = decodeWireFrame(bytes(g.wire_hex));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect({ ...r.frame, payload: hex(r.frame.payload) }).toEqual({ chan: g.chan, flags: g.flags, seq: g.seq, ack: g.ack, payload: g.payload_hex });
    expect(hex(encodeFrame(r.frame))).toBe(g.wire_hex);
    const env = decodeEnvelope(g.chan, r.frame.payload);
    if (g.message === null) expect(g.chan === 7 || g.payload_hex === "").toBe(true);
    else {
      expect(env.ok).toBe(true);
      if (env.ok) expect(envelopeJson(env.message)).toEqual(g.message);
    }
    // The streaming decoder takes it too, fed one byte at a time.
    const dec = new FrameDecoder();
    const got = [...bytes(g.wire_hex)].flatMap((b) => dec.push(Uint8Array.of(b)));
    expect(got).toHaveLength(1);
    expect(dec.stats()).toMatchObject({ frames: 1, garbage: 0, crcErrors: 0 });
  });

  it("include a full 254-byte COBS block at the end of a frame, with no code byte after it", () => {
    const g = golden.find((x) => x.name === "cobs_exact_block")!;
    expect(g.wire_hex.slice(0, 4)).toBe("00ff");
    expect(g.wire_hex.length / 2).toBe(1 + 1 + 254 + 1);
  });
});

describe("FrameDecoder", () => {
  it("gives the same frames for any chunking of the stream", () => {
    fc.assert(
      fc.property(fc.array(frameArb, { minLength: 1, maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1 }), (frames, cuts) => {
        const s = stream(frames);
        const dec = new FrameDecoder();
        const got: Frame[] = [];
        let at = 0;
        for (let i = 0; at < s.length; i++) {
          const n = cuts[i % cuts.length]!;
          got.push(...dec.push(s.subarray(at, at + n)));
          at += n;
        }
        expect(got.map((f) => ({ ...f, payload: hex(f.payload) }))).toEqual(frames.map((f) => ({ ...f, payload: hex(f.payload) })));
        expect(dec.stats()).toMatchObject({ frames: frames.length, garbage: 0, oversized: 0, crcErrors: 0, badVersion: 0 });
      }),
    );
  });

  it("never throws on random bytes, and counts every chunk it discards", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.uint8Array({ maxLength: 3000 }), fc.uint8Array({ maxLength: 50, max: 2 }))), (chunks) => {
        const dec = new FrameDecoder({ maxFrame: 256, onGarbage: () => undefined });
        for (const c of chunks) dec.push(c);
        const s = dec.stats();
        expect(s.bytes).toBe(chunks.reduce((n, c) => n + c.length, 0));
        expect(s.garbageBytes).toBeLessThanOrEqual(s.bytes);
      }),
      { numRuns: 300 },
    );
  });

  it("after random corruption, every frame that passes the CRC is one that was sent, in order", () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { minLength: 1, maxLength: 10 }),
        fc.array(fc.record({ at: fc.nat(), op: fc.constantFrom("flip", "drop", "insert", "zero"), v: fc.integer({ min: 0, max: 255 }) }), { maxLength: 6 }),
        (frames, hits) => {
          const s = [...stream(frames)];
          for (const h of hits) {
            const i = h.at % s.length;
            if (h.op === "flip") s[i] = s[i]! ^ (1 << (h.v & 7));
            else if (h.op === "drop") s.splice(i, 1);
            else if (h.op === "insert") s.splice(i, 0, h.v);
            else s[i] = 0;
          }
          const got = new FrameDecoder().push(Uint8Array.from(s));
          let j = 0;
          for (const f of got) {
            while (j < frames.length && !same(frames[j]!, f)) j++;
            expect(j).toBeLessThan(frames.length);
            j++;
          }
          if (hits.length === 0) expect(got).toHaveLength(frames.length);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("skips log text between frames: counted as garbage, the first chunk of a burst shown as text", () => {
    const texts: string[] = [];
    const dec = new FrameDecoder({ onGarbage: (t) => texts.push(t) });
    const f = { chan: 1, flags: FLAG.REL, seq: 1, ack: 0, payload: Uint8Array.of(1, 2, 3) };
    const enc = new TextEncoder();
    const got = [
      ...dec.push(enc.encode("ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13\r\n")),
      ...dec.push(encodeFrame(f)),
      ...dec.push(enc.encode("Guru Meditation Error: Core 0 panic'ed\x07\r\n")),
      ...dec.push(Uint8Array.of(0)),
      ...dec.push(enc.encode("abc")),
      ...dec.push(encodeFrame(f)),
    ];
    expect(got).toHaveLength(2);
    expect(texts).toEqual(["ets Jun  8 2016 00:22:57    rst:0x1 (POWERON_RESET),boot:0x13", "Guru Meditation Error: Core 0 panic'ed\\x07"]);
    // The second burst had two chunks (the panic line, then "abc"), one text.
    expect(dec.stats()).toMatchObject({ frames: 2, garbage: 3, oversized: 0 });
  });

  it("drops an oversized chunk as it grows, and takes the next frame", () => {
    const texts: string[] = [];
    const dec = new FrameDecoder({ maxFrame: 256, garbageTextMax: 20, onGarbage: (t) => texts.push(t) });
    const f = { chan: 1, flags: 0, seq: 0, ack: 0, payload: Uint8Array.of(9) };
    const flood = new Uint8Array(100_000).fill(0x41);
    dec.push(flood);
    // Counted and shown as soon as it outgrows the largest frame: a talker that never sends a
    // delimiter is seen at once, not at its (maybe never coming) end.
    expect(dec.stats()).toMatchObject({ oversized: 1, frames: 0 });
    expect(texts).toHaveLength(1);
    for (let i = 1; i < 10; i++) dec.push(flood);
    const got = dec.push(encodeFrame(f));
    expect(got).toHaveLength(1);
    expect(dec.stats()).toMatchObject({ oversized: 1, garbageBytes: 1_000_000, frames: 1 });
    expect(texts).toEqual(["AAAAAAAAAAAAAAAAAAAA…"]);
  });

  it("refuses a frame larger than max_frame even when its chunk fits (COBS of zeros)", () => {
    const dec = new FrameDecoder({ maxFrame: 256 });
    const raw = frameBytes({ chan: 1, flags: 0, seq: 0, ack: 0, payload: new Uint8Array(250) });
    expect(raw.length).toBe(261);
    expect(dec.push(Uint8Array.from([0, ...cobsEncode(raw), 0]))).toHaveLength(0);
    expect(dec.stats().oversized).toBe(1);
  });

  it("counts short, CRC and version errors apart", () => {
    const dec = new FrameDecoder();
    const raw = frameBytes({ chan: 1, flags: 0, seq: 0, ack: 0, payload: Uint8Array.of(1, 2) });
    const badCrc = raw.slice();
    badCrc[8]! ^= 1;
    const v2 = raw.slice();
    v2[0] = 2;
    const c = crc32(v2.subarray(0, v2.length - 4));
    v2.set([c & 0xff, (c >>> 8) & 0xff, (c >>> 16) & 0xff, c >>> 24], v2.length - 4);
    const wire = (r: Uint8Array) => Uint8Array.from([...cobsEncode(r), 0]);
    dec.push(wire(raw.subarray(0, 10)));
    dec.push(wire(badCrc));
    dec.push(wire(v2));
    dec.push(Uint8Array.of(0, 0, 0));
    expect(dec.stats()).toMatchObject({ frames: 0, garbage: 1, crcErrors: 1, badVersion: 1 });
    expect(parseFrame(v2)).toEqual({ ok: false, error: "version" });
    expect(parseFrame(badCrc)).toEqual({ ok: false, error: "crc" });
  });
});
