/** How our client port finds an RTU reply in the bytes off the line (frames.ts: findRtuReply). */
import { describe, expect, it } from "vitest";
import { findRtuReply, fromHex, rtuFrame, rtuReplyLength, toHex } from "../../src/buses/modbus/frames.js";

const readInput = fromHex("01 04 00 00 00 02 71 CB"); // devices.md: SDM voltage
const reply = fromHex("01 04 04 43 66 33 34 1B 38");

describe("RTU reply framing", () => {
  it("knows each request's reply length from its function code", () => {
    expect(rtuReplyLength(readInput)).toBe(9);
    expect(rtuReplyLength(rtuFrame(1, fromHex("01 00 00 00 0A")))).toBe(3 + 2 + 2); // 10 coils: 2 bytes
    expect(rtuReplyLength(rtuFrame(1, fromHex("05 00 02 FF 00")))).toBe(8);
    expect(rtuReplyLength(rtuFrame(1, fromHex("10 00 00 00 02 04 00 01 00 02")))).toBe(8);
    expect(rtuReplyLength(rtuFrame(1, fromHex("11")))).toBeUndefined();
  });

  it("waits for the whole reply, however the bytes are cut", () => {
    for (let cut = 0; cut < reply.length; cut++) {
      expect(findRtuReply(reply.subarray(0, cut), 1, 4, 9)).toEqual({ need: true });
    }
    const r = findRtuReply(Buffer.concat([reply, fromHex("00")]), 1, 4, 9);
    expect("frame" in r && [toHex(r.frame), toHex(r.rest)]).toEqual([toHex(reply), "00"]);
  });

  it("passes over another unit's frame and takes an exception reply at its own length", () => {
    const other = rtuFrame(2, fromHex("04 04 00 00 00 00"));
    const r = findRtuReply(Buffer.concat([other, reply]), 1, 4, 9);
    expect("frame" in r && toHex(r.frame)).toBe(toHex(reply));
    expect(findRtuReply(other, 1, 4, 9)).toEqual({ need: true });
    const exception = fromHex("01 84 02 C2 C1");
    const e = findRtuReply(exception, 1, 4, 9);
    expect("frame" in e && toHex(e.frame)).toBe("01 84 02 C2 C1");
  });

  it("hands over a damaged frame of the right length (the client reports its CRC)", () => {
    const bad = Buffer.from(reply);
    bad[8]! ^= 0xff;
    const r = findRtuReply(bad, 1, 4, 9);
    expect("frame" in r && r.frame.length).toBe(9);
  });

  it("finds a reply of unknown length by its CRC", () => {
    const serverId = rtuFrame(1, fromHex("11 02 07 FF"));
    const r = findRtuReply(serverId, 1, 0x11, undefined);
    expect("frame" in r && toHex(r.frame)).toBe(toHex(serverId));
    expect(findRtuReply(serverId.subarray(0, 5), 1, 0x11, undefined)).toEqual({ need: true });
  });
});
