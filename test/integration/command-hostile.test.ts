/**
 * Hostile and unlucky commands against a running agent (the real CLI process) through a real
 * broker: inherited object names as actions and targets, `__proto__` in the arguments, garbage,
 * the same command sent three times at once, an id reused for something else, and an id that a
 * previous run reserved but never answered. Every message is answered on `result`, nothing runs
 * twice, and at the end the process is still there and stops cleanly.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import mqtt from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { Outbox } from "../../src/store/outbox.js";
import { sharedBrokerUrl } from "../helpers/broker.js";
import { exited, startCli } from "../helpers/cli.js";
import { Collector } from "../helpers/subscriber.js";
import { tempDir } from "../helpers/tmp.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const PROTO = ["toString", "constructor", "__proto__", "valueOf", "hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable", "toLocaleString", "__defineGetter__", "__lookupSetter__"];
const RESTARTED = "the gateway restarted while this command was executing; it was not executed again — check the state";

describe("hostile commands against a running agent", () => {
  it("answers every message, runs nothing twice, and keeps running", { timeout: 60_000 }, async () => {
    const url = await sharedBrokerUrl(cleanups);
    const dir = tempDir();
    const gateway = `gw-hostile-${process.pid}-${Date.now()}`;
    const base = `edge/hostile-site/${gateway}`;
    // A previous run reserved this id and never answered it (killed mid-execution).
    const before = Outbox.open({ path: join(dir, "outbox.db"), quota: 64 * 1024 * 1024, whenFull: "drop-oldest", maxAge: 86_400_000, sync: "full" });
    before.rememberCommand("crashed-1", Date.now(), JSON.stringify({ pending: true, target: "bike-1", action: "start", ts: Date.now() }));
    before.close();

    const config = join(dir, "agent.yaml");
    writeFileSync(
      config,
      `site: hostile-site
gateway: ${gateway}
uplink:
  url: ${url}
  reconnect: { min: 100ms, max: 300ms }
  batch: { linger: 20ms }
store: { path: ./outbox.db }
log: { level: info }
simulators:
  - { type: modbus, name: sim, port: 0, units: [{ unit: 3, profile: sdm120 }] }
sources:
  - type: modbus
    name: line
    simulator: sim
    interval: 200ms
    timeout: 500ms
    devices: [{ name: bike-meter, unit: 3, profile: sdm120 }]
streetlights:
  - { name: street-1, relay: { simulated: true }, latitude: 45.46, longitude: 9.19 }
chargers:
  - { name: bike-1, relay: { simulated: true }, meter: bike-meter, max_power: 1000000, max_kwh: 5, max_duration: 1h, meter_timeout: 10m }
`,
    );
    const sub = await Collector.connect(url, `${base}/#`);
    cleanups.push(() => sub.close());
    const agent = startCli(["run", "-c", config]);
    cleanups.push(async () => {
      if (agent.exitCode === null) agent.kill("SIGKILL");
      await exited(agent);
    });
    const running = () => {
      if (agent.exitCode !== null) throw new Error(`the agent exited with ${agent.exitCode}:\n${agent.out()}`);
      return true;
    };
    // Online, and the charging point's meter read (a start needs it).
    await sub.waitFor(() => running() && sub.messages.some((m) => m.r.some((r) => r[0] === "bike-meter/active_power")), 20_000, "the meter's first reading");

    const pub = await mqtt.connectAsync(url, { reconnectPeriod: 200 });
    cleanups.push(() => pub.endAsync());
    const sent: Array<[string, string | Buffer]> = [];
    const send = (target: string, payload: string | Buffer) => sent.push([target, payload]);

    for (const [i, name] of PROTO.entries()) {
      send("street-1", JSON.stringify({ id: `h-act-${i}`, action: name }));
      send("bike-1", JSON.stringify({ id: `h-act-b-${i}`, action: name, args: {} }));
      send(name, JSON.stringify({ id: `h-tgt-${i}`, action: "set", args: { on: true } }));
      send("street-1", `{"id":"h-arg-${i}","action":"set","args":{"on":true,${JSON.stringify(name)}:{"x":1}}}`);
    }
    send("street-1", '{"id":"h-proto","action":"set","args":{"on":true,"__proto__":{"x":1}}}');
    send("bike-1", '{"id":"h-proto-b","action":"start","args":{"__proto__":{"max_kwh":1}}}');
    send("street-1", '{"__proto__":{"id":"x"},"action":"set"}');
    for (const garbage of ["{oops", "[]", "null", '"set"', "1e400", "x".repeat(5000)]) send("street-1", garbage);
    send("street-1", Buffer.from([0xff, 0xfe, 0x00, 0x7b]));
    send("street-1", JSON.stringify({ id: "h-type", action: "set", args: { on: "true" } }));
    // Three copies at once: one session started, three identical answers.
    for (let i = 0; i < 3; i++) send("bike-1", JSON.stringify({ id: "dup-start", action: "start", args: { max_kwh: 1 } }));
    for (let i = 0; i < 3; i++) send("street-1", JSON.stringify({ id: "dup-set", action: "set", args: { on: true, duration_s: 600 } }));
    // The same ids again, for something else: answered with the first result.
    send("street-1", JSON.stringify({ id: "dup-start", action: "set", args: { on: false } }));
    send("bike-1", JSON.stringify({ id: "dup-start", action: "start", args: { max_kwh: "lots" } }));
    send("bike-1", JSON.stringify({ id: "crashed-1", action: "start" }));
    send("bike-1", JSON.stringify({ id: "crashed-1", action: "start" }));
    // All in flight at once.
    await Promise.all(sent.map(([target, payload]) => pub.publishAsync(`${base}/cmd/${target}`, payload, { qos: 1 })));

    const results = () => sub.other.filter((m) => m.topic === `${base}/result`).map((m) => JSON.parse(m.payload) as Record<string, unknown>);
    await sub.waitFor(() => running() && results().length >= sent.length, 20_000, `${sent.length} results`);
    const all = results();
    expect(all).toHaveLength(sent.length);
    const byId = (id: string | null) => all.filter((r) => r.id === id);
    const answer = (r: Record<string, unknown>) => ({ ...r, seq: undefined });

    for (const [i, name] of PROTO.entries()) {
      expect(byId(`h-act-${i}`)[0]).toMatchObject({ status: "rejected", reason: `unknown action '${name}' for streetlight street-1; expected one of: set, auto` });
      expect(byId(`h-act-b-${i}`)[0]).toMatchObject({ status: "rejected", reason: `unknown action '${name}' for charger bike-1; expected one of: start, stop` });
      expect(byId(`h-tgt-${i}`)[0]).toMatchObject({ status: "rejected", reason: `unknown target '${name}' (declared actuators: street-1, bike-1, outbox)` });
      expect(byId(`h-arg-${i}`)[0]).toMatchObject({ status: "rejected", reason: `args.${name}: unknown key` });
    }
    expect(byId("h-proto")[0]).toMatchObject({ status: "rejected", reason: "args.__proto__: unknown key" });
    expect(byId("h-proto-b")[0]).toMatchObject({ status: "rejected", reason: "args.__proto__: unknown key" });
    expect(byId("h-type")[0]).toMatchObject({ status: "rejected", reason: 'args.on: expected a boolean, got the string "true"' });
    expect(byId(null)).toHaveLength(8); // garbage, and the message whose id hid behind __proto__

    // Ran once: every copy and every reuse carries the first answer (not "already charging").
    const starts = byId("dup-start");
    expect(starts).toHaveLength(5);
    expect(starts[0]).toMatchObject({ target: "bike-1", action: "start", status: "ok", state: { charging: true } });
    for (const r of starts) expect(answer(r)).toEqual(answer(starts[0]!));
    const sets = byId("dup-set");
    expect(sets).toHaveLength(3);
    expect(sets[0]).toMatchObject({ status: "ok", state: { mode: "override", on: true } });
    for (const r of sets) expect(answer(r)).toEqual(answer(sets[0]!));
    const crashed = byId("crashed-1");
    expect(crashed).toHaveLength(2);
    expect(crashed[0]).toMatchObject({ target: "bike-1", action: "start", status: "error", reason: RESTARTED });
    expect(answer(crashed[1]!)).toEqual(answer(crashed[0]!));

    // Still running, still polling, still answering; then a clean stop.
    expect(agent.exitCode).toBeNull();
    const readings = sub.readings;
    await sub.waitFor(() => sub.readings > readings, 10_000, "more readings after the commands");
    await pub.publishAsync(`${base}/cmd/bike-1`, JSON.stringify({ id: "after", action: "stop" }), { qos: 1 });
    await sub.waitFor(() => results().some((r) => r.id === "after"), 10_000, "the answer to a command after all that");
    expect(results().find((r) => r.id === "after")).toMatchObject({ status: "ok", state: { charging: false } });
    expect(agent.out()).not.toMatch(/TypeError|Unhandled|at .*\.js:\d+/);
    agent.kill("SIGTERM");
    expect(await exited(agent)).toBe(0);
  });
});
