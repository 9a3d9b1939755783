/**
 * One wording for zod issues, in config errors and command rejections: the place, what was
 * expected, what was found. A value of the wrong type is never reported as missing.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { describeIssue } from "../../src/model/issues.js";
import { parseConfigText } from "../../src/agent/config.js";

const minimal = `
site: s1
gateway: gw1
uplink: { url: "mqtt://127.0.0.1:1883" }
`;

function errorsOf(text: string): string[] {
  const r = parseConfigText(minimal + text, "/etc/edge-agent");
  if (r.ok) throw new Error("expected errors");
  return r.errors;
}

function messages(schema: z.ZodType, value: unknown, at: PropertyKey[] = []): string[] {
  const r = schema.safeParse(value, { reportInput: true });
  if (r.success) throw new Error("expected issues");
  return r.error.issues.flatMap((i) => describeIssue(i, at));
}

describe("describeIssue", () => {
  it("names what was expected and what was found, and says required only when the key is absent", () => {
    const s = z.strictObject({ on: z.boolean(), level: z.int().optional(), mode: z.enum(["a", "b"]).optional(), list: z.array(z.string()).optional() });
    expect(messages(s, { on: "true" }, ["args"])).toEqual(['args.on: expected a boolean, got the string "true"']);
    expect(messages(s, { on: null })).toEqual(["on: expected a boolean, got null"]);
    expect(messages(s, { on: true, level: 2.5 })).toEqual(["level: expected an integer, got the number 2.5"]);
    expect(messages(s, { on: true, level: Number.POSITIVE_INFINITY })).toEqual(["level: expected a number, got Infinity"]);
    expect(messages(s, { on: true, mode: "c" })).toEqual(["mode: expected one of: a, b"]);
    expect(messages(s, { on: true, list: { 0: "x" } })).toEqual(["list: expected an array, got an object"]);
    expect(messages(s, {})).toEqual(["on: required"]);
    expect(messages(s, [])).toEqual(["(top level): expected an object, got an empty array"]);
    expect(messages(s, { on: true, x: 1, y: 2 })).toEqual(["x: unknown key", "y: unknown key"]);
    expect(messages(s, { on: "y".repeat(100) })).toEqual([`on: expected a boolean, got the string "${"y".repeat(40)}…"`]);
  });

  it("keeps the wording a schema chose, and explains unions by the form that came closest", () => {
    expect(messages(z.strictObject({ pin: z.int({ error: "expected a pin 0–53" }) }), { pin: "x" })).toEqual(["pin: expected a pin 0–53"]);
    expect(messages(z.strictObject({ pin: z.int({ error: "expected a pin 0–53" }) }), {})).toEqual(["pin: required"]);
    const relay = z.union([z.strictObject({ modbus: z.strictObject({ device: z.string() }) }), z.strictObject({ simulated: z.literal(true) })]);
    expect(messages(z.strictObject({ relay }), { relay: { simulated: false } })).toEqual(["relay.simulated: expected true"]);
    expect(messages(z.strictObject({ relay }), { relay: { modbus: { device: 4 } } })).toEqual(["relay.modbus.device: expected a string, got the number 4"]);
    expect(messages(z.strictObject({ relay }), { relay: 5 })).toEqual(["relay: expected an object, got the number 5"]);
    expect(messages(z.strictObject({ v: z.union([z.string(), z.number()]) }), { v: [] })).toEqual(["v: expected a string or a number, got an empty array"]);
  });

  it("config errors say a key has the wrong type instead of calling it missing", () => {
    expect(
      errorsOf(`log: true
store: { path: [1], sync: 5 }
sources:
  - { type: gpio, name: p, pin: "x" }
streetlights:
  - { name: s, relay: { simulated: false }, latitude: "45", longitude: 9 }
  - { name: t, relay: 5, latitude: 45, longitude: 9 }
`),
    ).toEqual([
      "store.path: expected a string, got an array",
      "store.sync: expected one of: full, normal",
      "sources[0].pin: expected a BCM GPIO number 0–53",
      "streetlights[0].relay.simulated: expected true",
      'streetlights[0].latitude: expected a number, got the string "45"',
      "streetlights[1].relay: expected an object, got the number 5",
      "log: expected an object, got the boolean true",
    ]);
  });
});
