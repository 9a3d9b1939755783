import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { routingKeyOf, topicOf } from "../../src/ingest/amqp-source.js";
import { decode, type Incoming, parseTopic } from "../../src/ingest/message.js";
import { replayState } from "../../src/ingest/writer.js";
import { encodeCompact } from "../../src/uplink/compact.js";
import { PointDictionary } from "../../src/uplink/dictionary.js";

const msg = (topic: string, payload: string | Buffer): Incoming => ({ topic, payload: Buffer.isBuffer(payload) ? payload : Buffer.from(payload), at: 0, redelivered: false });
const none = () => undefined;

describe("ingest: decoding the contract", () => {
  it("parses only <root>/<site>/<gateway>/<leaf> with the contract's leaves", () => {
    expect(parseTopic("edge", "edge/s/g/telemetry")).toEqual({ site: "s", gateway: "g", leaf: "telemetry" });
    expect(parseTopic("edge", "edge/s/g/cmd/x")).toBeNull();
    expect(parseTopic("edge", "edge/s/g/__proto__")).toBeNull();
    expect(parseTopic("edge", "other/s/g/telemetry")).toBeNull();
    expect(parseTopic("edge", "edge/s/g/h/telemetry")).toBeNull();
    expect(parseTopic("edge", "edge/s/g+/telemetry")).toBeNull();
  });

  it("decodes v1 telemetry, results, status and dictionaries", () => {
    const t = decode("edge", msg("edge/s/g/telemetry", '{"v":1,"gw":"g","seq":[3,4],"r":[["a/b",1,2],["a/c",1,null,"bad"]]}'), none);
    expect(t).toMatchObject({ kind: "sequenced", stream: "telemetry", first: 3, last: 4, readings: [{ point: "a/b", value: 2, quality: "good" }, { point: "a/c", value: null, quality: "bad" }] });
    expect(decode("edge", msg("edge/s/g/events", '{"v":1,"gw":"g","seq":[1,1],"r":[["a/b",1,true]]}'), none)).toMatchObject({ kind: "sequenced", stream: "events" });
    expect(decode("edge", msg("edge/s/g/result", '{"v":1,"gw":"g","seq":9,"id":"x","status":"ok"}'), none)).toMatchObject({ kind: "result", seq: 9 });
    expect(decode("edge", msg("edge/s/g/status", '{"state":"online","ts":5,"version":"0.1.0"}'), none)).toMatchObject({ kind: "status", state: "online", ts: 5 });
    expect(decode("edge", msg("edge/s/g/status", ""), none)).toEqual({ kind: "ignore" });
    expect(decode("edge", msg("edge/s/g/dict", '{"v":2,"gw":"g","version":1,"points":{"1":"a/b"}}'), none)).toMatchObject({ kind: "dict", version: 1 });
  });

  it("decodes compact messages once the dictionary is known, and says which one it needs", () => {
    const dict = new PointDictionary(null);
    const b = encodeCompact("g", [{ seq: 1, point: "a/b", ts: 1000, value: 1.5, quality: "good" }], dict, { maxBytes: 65536 })!;
    expect(decode("edge", msg("edge/s/g/telemetry", b.payload), none)).toMatchObject({ kind: "needs-dict", version: dict.version });
    const names = new Map([[1, "a/b"]]);
    expect(decode("edge", msg("edge/s/g/telemetry", b.payload), () => names)).toMatchObject({ kind: "sequenced", first: 1, last: 1, compact: true, readings: [{ point: "a/b", value: 1.5 }] });
    expect(decode("edge", msg("edge/s/other/telemetry", b.payload), () => names)).toMatchObject({ kind: "quarantine", reason: expect.stringMatching(/differs from the topic/) });
  });

  it("quarantines what breaks the contract, with the reason", () => {
    const cases: Array<[string, string, RegExp]> = [
      ["edge/s/g/telemetry", "nope", /not JSON/],
      ["edge/s/g/telemetry", '{"v":1,"gw":"x","seq":[1,1],"r":[["a",1,1]]}', /differs from the topic/],
      ["edge/s/g/telemetry", '{"v":1,"gw":"g","seq":[1,2],"r":[["a",1,1]]}', /does not match 1 readings/],
      ["edge/s/g/telemetry", '{"v":1,"gw":"g","seq":[0,0],"r":[["a",1,1]]}', /below 1/],
      ["edge/s/g/telemetry", '{"v":2,"gw":"g","seq":[1,1],"r":[["a",1,1]]}', /unsupported version/],
      ["edge/s/g/result", '{"v":1,"gw":"g","seq":-1}', /positive integer/],
      ["edge/s/g/result", '{"v":1,"gw":"h","seq":1}', /differs from the topic/],
      ["edge/s/g/status", '{"state":5}', /status is not/],
      ["edge/s/g/dict", '{"v":2,"gw":"g","version":1,"points":{"x":"a"}}', /not id → point/],
      ["edge/s/g/nothing", "{}", /topic is not/],
    ];
    for (const [topic, payload, reason] of cases) expect(decode("edge", msg(topic, payload), none)).toMatchObject({ kind: "quarantine", reason: expect.stringMatching(reason) });
  });

  it("never throws and never pollutes prototypes, whatever the bytes", () => {
    const leaves = fc.constantFrom("telemetry", "events", "result", "status", "dict", "__proto__", "constructor");
    const payloads = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
      fc.json().map((j) => Buffer.from(j)),
      fc.constantFrom('{"__proto__":{"x":1},"v":1,"gw":"g","seq":[1,1],"r":[["toString",1,1]]}', '{"constructor":{"prototype":{"x":1}}}', '{"v":1,"gw":"g","seq":[1e400,1e400],"r":[]}', '{"v":1,"gw":"g","seq":[NaN,1],"r":[]}').map((s) => Buffer.from(s)),
    );
    fc.assert(
      fc.property(leaves, payloads, (leaf, p) => {
        const d = decode("edge", msg(`edge/s/g/${leaf}`, p), () => new Map([[1, "a/b"]]));
        expect(["sequenced", "result", "status", "dict", "needs-dict", "quarantine", "ignore"]).toContain(d.kind);
      }),
      { numRuns: 2000 },
    );
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });
});

describe("ingest: a gateway's replay answer", () => {
  const body = (state: unknown) => ({ v: 1, gw: "g", seq: 1, target: "outbox", action: "replay", status: "ok", state });
  it("reads the ranges the gateway no longer has, only within its own answer's range (the writer then clamps to the request)", () => {
    expect(replayState(body({ stream: "telemetry", from: 10, to: 20, resent: [[10, 12]], missing: [{ from: 13, to: 25, reason: "quota" }, { from: 1, to: 5, reason: "quota" }] }))).toEqual({
      stream: "telemetry",
      from: 10,
      to: 20,
      missing: [{ from: 13, to: 20, reason: "quota" }],
    });
  });
  it("ignores hostile or malformed answers", () => {
    for (const st of [null, 5, { stream: "__proto__", from: 1, to: 2 }, { stream: "telemetry", from: 5, to: 1 }, { stream: "telemetry", from: Number.NaN, to: 1 }, { stream: "telemetry", from: 1, to: 1e300 }]) {
      expect(replayState(body(st))).toBeNull();
    }
    const r = replayState(body({ stream: "events", from: 1, to: 9, missing: [null, 7, { from: "1", to: 2, reason: "x" }, { from: 2, to: 3, reason: 5 }, { from: 4, to: 4, reason: "max-age\u0000" }] }));
    expect(r?.missing).toEqual([{ from: 4, to: 4, reason: "max-age" }]);
    expect(replayState({ ...body({ stream: "events", from: 1, to: 2 }), target: "lamp" })).toBeNull();
  });
});

describe("ingest: RabbitMQ routing keys", () => {
  it("turns a routing key back into the gateway's topic", () => {
    expect(routingKeyOf("edge/site-a/gw-1/cmd/outbox")).toBe("edge.site-a.gw-1.cmd.outbox");
    expect(topicOf("edge", "edge.site-a.gw-1.telemetry")).toBe("edge/site-a/gw-1/telemetry");
    expect(topicOf("edge", "edge.site-a.gw-1.dict")).toBe("edge/site-a/gw-1/dict");
  });
  it("leaves commands and health to others, and quarantines a key made ambiguous by a dot in an id, whatever the payload claims", () => {
    expect(topicOf("edge", "edge.site-a.gw-1.cmd.outbox")).toBeNull();
    expect(topicOf("edge", "edge.site-a.gw-1.health")).toBeNull();
    expect(topicOf("edge", "other.site-a.gw-1.telemetry")).toBeNull();
    expect(topicOf("edge", "edge.telemetry")).toBeNull();
    const ambiguous = topicOf("edge", "edge.site-a.gw.2.telemetry")!;
    const claim = '{"v":1,"gw":"gw.2","seq":[1,1],"r":[["a/b",1,1]]}';
    expect(decode("edge", msg(ambiguous, claim), none)).toMatchObject({ kind: "quarantine", reason: expect.stringMatching(/a dot in the site or gateway id/) });
    expect(decode("edge", msg(topicOf("edge", "edge.a.b.__proto__.status")!, '{"state":"online"}'), none)).toMatchObject({ kind: "quarantine" });
  });
});
