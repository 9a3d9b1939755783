import { describe, expect, it } from "vitest";
import type { StoredReading } from "../../src/model/reading.js";
import { decodeTelemetry, encodeTelemetry } from "../../src/uplink/codec.js";

const row = (seq: number, value: StoredReading["value"] = seq, quality: StoredReading["quality"] = "good"): StoredReading => ({
  seq,
  point: "meter-1/power_total",
  ts: 1_700_000_000_000 + seq,
  value,
  quality,
});

describe("telemetry codec", () => {
  it("encodes the contract's shape, leaving out good quality", () => {
    const b = encodeTelemetry("gw-1", [row(7, 230.2), row(8, null, "bad"), row(9, true, "uncertain")], 1 << 20)!;
    expect(JSON.parse(b.payload)).toEqual({
      v: 1,
      gw: "gw-1",
      seq: [7, 9],
      r: [
        ["meter-1/power_total", 1_700_000_000_007, 230.2],
        ["meter-1/power_total", 1_700_000_000_008, null, "bad"],
        ["meter-1/power_total", 1_700_000_000_009, true, "uncertain"],
      ],
    });
    expect(b).toMatchObject({ count: 3, first: 7, last: 9 });
  });

  it("stops at the first hole so seq always names consecutive readings", () => {
    const b = encodeTelemetry("gw", [row(1), row(2), row(4), row(5)], 1 << 20)!;
    expect(b).toMatchObject({ count: 2, first: 1, last: 2 });
    expect(JSON.parse(b.payload).seq).toEqual([1, 2]);
  });

  it("respects the byte limit but always carries at least one reading", () => {
    const rows = Array.from({ length: 100 }, (_, i) => row(i + 1));
    const b = encodeTelemetry("gw", rows, 1000)!;
    expect(Buffer.byteLength(b.payload)).toBeLessThanOrEqual(1000);
    expect(b.count).toBeGreaterThan(5);
    expect(b.count).toBeLessThan(100);
    expect(encodeTelemetry("gw", rows, 10)!.count).toBe(1);
    expect(encodeTelemetry("gw", [], 10)).toBeNull();
  });

  it("round-trips through decode", () => {
    const b = encodeTelemetry("gw-\"q\"", [row(1, "text"), row(2, -0.5)], 1 << 20)!;
    const d = decodeTelemetry(Buffer.from(b.payload));
    expect(d.ok && d.msg.gw).toBe('gw-"q"');
  });

  it.each([
    ["not json", "not JSON"],
    ['{"v":2,"gw":"g","seq":[1,1],"r":[["p",1,1]]}', "unsupported version 2"],
    ['{"v":1,"gw":"g","seq":[2,1],"r":[]}', "seq must be [first,last]"],
    ['{"v":1,"gw":"g","seq":[1,2],"r":[["p",1,1]]}', "seq 1..2 does not match 1 readings"],
    ['{"v":1,"gw":"g","seq":[1,1],"r":[["p",1,1,"meh"]]}', 'unknown quality "meh"'],
    ['{"v":1,"gw":"g","seq":[1,1],"r":[[1,1,1]]}', "malformed reading"],
  ])("rejects %s", (payload, reason) => {
    expect(decodeTelemetry(payload)).toEqual({ ok: false, reason });
  });
});
