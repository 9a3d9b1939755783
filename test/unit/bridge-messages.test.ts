/**
 * The bridge's messages (drivers/bridge/bridge.proto) and its schema hash: hostile bytes decode to
 * an error value, never an exception, and never reach Object.prototype.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  Quality,
  decodeCommands,
  decodeEnvelope,
  decodeLink,
  decodeLog,
  decodeTelemetry,
  encodeCommands,
  encodeLink,
  encodeLog,
  encodeTelemetry,
} from "../../src/bridge/messages.js";
import { SCHEMA_HASH, canonicalProto, formatSchemaHash, schemaHash, schemaHashOfFile } from "../../src/bridge/schema.js";

describe("schema hash", () => {
  it("in src/bridge/gen is the hash of drivers/bridge/bridge.proto (run npm run bridge:gen after editing it)", () => {
    expect(formatSchemaHash(schemaHashOfFile())).toBe(formatSchemaHash(SCHEMA_HASH));
  });

  it("ignores comments and layout, not content", () => {
    const a = 'syntax = "proto3";\n// a comment\nmessage A {\n  uint32 x = 1; // why\n}\n';
    const b = '  syntax = "proto3";\r\n\r\nmessage A { uint32 x = 1;\t}';
    expect(canonicalProto(a)).toBe('syntax = "proto3"; message A { uint32 x = 1; }');
    expect(schemaHash(a)).toBe(schemaHash(b));
    expect(schemaHash(a)).not.toBe(schemaHash(a.replace("x = 1", "x = 2")));
    // A comment ends at the line feed, which stays as a space.
    expect(canonicalProto("a;// c\nb")).toBe("a; b");
  });

  it("prints as the refusal reason says it", () => {
    expect(formatSchemaHash(0x0badf00d)).toBe("0x0badf00d");
    expect(formatSchemaHash(0xffffffff)).toBe("0xffffffff");
  });
});

describe("messages", () => {
  it("round-trip each envelope", () => {
    const link = encodeLink({ body: { case: "timeReply", value: { t1Us: 1n, t2Us: 2n, t3Us: 3n } } });
    const r = decodeLink(link);
    expect(r.ok && r.message.body.case === "timeReply" && r.message.body.value.t3Us).toBe(3n);
    const tel = decodeTelemetry(encodeTelemetry({ body: { case: "ack", value: { bootId: 0xffffffff, uptoSeq: 7 } } }));
    expect(tel.ok && tel.message.body.case === "ack" && tel.message.body.value.bootId).toBe(0xffffffff);
    const cmd = decodeCommands(encodeCommands({ body: { case: "command", value: { id: 1, point: 2, value: { case: "flag", value: true } } } }));
    expect(cmd.ok && cmd.message.body.case === "command" && cmd.message.body.value.value).toEqual({ case: "flag", value: true });
    const log = decodeLog(encodeLog({ text: "x" }));
    expect(log.ok && log.message.text).toBe("x");
  });

  it("carry extreme values as they are", () => {
    const payload = encodeTelemetry({
      body: {
        case: "readings",
        value: {
          bootId: 0xffffffff,
          firstSeq: 0xffffffff,
          readings: [
            { point: 0xffffffff, tUs: 0xffffffffffffffffn, value: { case: "number", value: Number.NaN } },
            { point: 1, value: { case: "number", value: -Infinity } },
            { point: 2, value: { case: "number", value: 1.7976931348623157e308 } },
            { point: 3, value: { case: "number", value: -0 } },
            { point: 4, value: { case: "text", value: "" } },
          ],
        },
      },
    });
    const r = decodeTelemetry(payload);
    if (!r.ok || r.message.body.case !== "readings") throw new Error("no readings");
    const rs = r.message.body.value.readings;
    expect(rs[0]!.tUs).toBe(0xffffffffffffffffn);
    expect(rs[0]!.value).toEqual({ case: "number", value: Number.NaN });
    expect(rs[1]!.value).toEqual({ case: "number", value: -Infinity });
    expect(Object.is(rs[3]!.value.value, -0)).toBe(true);
    expect(rs[4]!.value).toEqual({ case: "text", value: "" });
    expect(rs[0]!.quality).toBe(Quality.GOOD);
  });

  it("take __proto__ and friends as plain strings, without touching Object.prototype", () => {
    const names = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty"];
    const payload = encodeTelemetry({
      body: { case: "describe", value: { points: names.map((name, id) => ({ id, name, unit: name, child: name })), child: "__proto__" } },
    });
    const r = decodeTelemetry(payload);
    if (!r.ok || r.message.body.case !== "describe") throw new Error("no describe");
    expect(r.message.body.value.points.map((p) => p.name)).toEqual(names);
    expect(r.message.body.value.child).toBe("__proto__");
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(r.message.body.value.points[0])).not.toBe(null);
    expect(Object.keys(Object.prototype)).toEqual([]);
  });

  it("decode hostile bytes to an error value: truncated, wrong wire type, bad UTF-8, no body", () => {
    expect(decodeLink(Uint8Array.of(0x12, 0x05, 0x08))).toMatchObject({ ok: false });
    expect(decodeLink(Uint8Array.of(0x12, 0xff, 0xff, 0xff, 0xff, 0x0f))).toMatchObject({ ok: false });
    expect(decodeLink(Uint8Array.of(0x15, 0x01))).toMatchObject({ ok: false });
    expect(decodeLog(Uint8Array.of(0x1a, 0x02, 0xc3, 0x28))).toMatchObject({ ok: false });
    expect(decodeLink(new Uint8Array(0))).toEqual({ ok: false, error: "Link without a body" });
    // Unknown fields (a newer schema) are dropped, not kept.
    const r = decodeLink(Uint8Array.of(0x0a, 0x02, 0x08, 0x01, 0xf8, 0x07, 0x01));
    expect(r.ok).toBe(true);
    expect(decodeEnvelope(9, Uint8Array.of(1))).toEqual({ ok: false, error: "unknown channel 9" });
  });

  it("never throw on random bytes, on any channel", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 9 }), fc.uint8Array({ maxLength: 400 }), (chan, bytes) => {
        const r = decodeEnvelope(chan, bytes);
        expect(typeof r.ok).toBe("boolean");
      }),
      { numRuns: 3000 },
    );
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
