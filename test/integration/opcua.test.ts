/**
 * OPC UA end to end with node-opcua on both sides: the gateway's server part seen by a real
 * client (security, users, values, units, methods through the CommandRouter, read-only mode),
 * the `opcua` source reading a small PLC server (unknown node, PLC away and back), and
 * `opcua browse`. Servers are shared within a describe: each costs ~0.5 s to start.
 */
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import {
  AttributeIds,
  DataType,
  make_warningLog,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAClient,
  OPCUAServer,
  SecurityPolicy,
  StatusCodes,
  UserTokenType,
  Variant,
  type ClientSession,
  type UAVariable,
  type UserIdentityInfo,
} from "node-opcua";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Agent } from "../../src/agent/agent.js";
import { formatTree, opcuaBrowse } from "../../src/cli/opcua.js";
import { validateConfig } from "../../src/agent/config.js";
import type { OpcuaSourceConfig } from "../../src/sources/opcua/type.js";
import { type CommandResult, CommandRouter } from "../../src/control/commands.js";
import { UserError } from "../../src/model/errors.js";
import type { Reading } from "../../src/model/reading.js";
import { createLogger, silentLogger } from "../../src/ops/logger.js";
import { loadOpcua } from "../../src/opcua/load.js";
import { OpcuaServerPart } from "../../src/opcua/server.js";
import { OpcuaSource } from "../../src/sources/opcua/source.js";
import { testConfig } from "../helpers/config.js";
import { FakeLight } from "../helpers/fake-light.js";

// node-opcua (imported above for the test's own clients and PLC) prints W27 a moment after it
// loads; routing its messages now keeps the test output clean, as the agent's is.
await loadOpcua(null);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dirs: string[] = [];
function dir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `edge-opcua-${prefix}-`));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 8000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ""}`);
}

/** A logger whose JSON lines the test can read. */
function capturedLogger() {
  const lines: Array<{ level: number; msg: string }> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(l) as { level: number; msg: string });
      done();
    },
  });
  return { log: createLogger({ level: "debug", pretty: false, destination }), lines };
}

function serverConfig(server: Record<string, unknown>) {
  return testConfig({ uplink: { url: "mqtt://127.0.0.1:1" }, opcua: { server: { port: 0, ...server } } }).opcua!.server!;
}

async function startPart(server: Record<string, unknown>, pkiDir: string, log = silentLogger()) {
  const lamp = new FakeLight("lamp-1");
  const results: CommandResult[] = [];
  const router = new CommandRouter([lamp], { recall: () => undefined, remember: () => undefined, publish: (r) => results.push(r) }, silentLogger());
  const part = new OpcuaServerPart({
    config: serverConfig({ pki_dir: pkiDir, ...server }),
    storePath: join(pkiDir, "..", "outbox.db"),
    router,
    actuators: [lamp],
    unitOf: (p) => (p === "meter-1/voltage" ? "V" : p === "meter-1/energy" ? "kWh" : undefined),
    log,
    gateway: "gw-test",
  });
  const address = await part.start();
  return { part, lamp, results, address };
}

interface Client {
  client: OPCUAClient;
  session: ClientSession;
}

async function connect(url: string, opts: { pki?: string; secure: boolean; user?: [string, string] }): Promise<Client> {
  const client = OPCUAClient.create({
    applicationName: "edge-agent-test",
    endpointMustExist: false,
    securityMode: opts.secure ? MessageSecurityMode.SignAndEncrypt : MessageSecurityMode.None,
    securityPolicy: opts.secure ? SecurityPolicy.Basic256Sha256 : SecurityPolicy.None,
    connectionStrategy: { maxRetry: 0 },
    ...(opts.pki ? { clientCertificateManager: new OPCUACertificateManager({ rootFolder: opts.pki, automaticallyAcceptUnknownCertificate: true }) } : {}),
  });
  try {
    await client.connect(url);
    const identity: UserIdentityInfo = opts.user ? { type: UserTokenType.UserName, userName: opts.user[0], password: opts.user[1] } : { type: UserTokenType.Anonymous };
    const session = await client.createSession(identity);
    return { client, session };
  } catch (err) {
    await client.disconnect();
    throw err;
  }
}

async function close(c: Client | null): Promise<void> {
  if (!c) return;
  await c.session.close().catch(() => undefined);
  await c.client.disconnect();
}

/**
 * Trusts the client certificates a running server refused, as an installer does: moves them from
 * <pki>/rejected/ to <pki>/trusted/certs/, then waits until the server's PKI, which watches those
 * folders, verifies each as trusted. No client may retry meanwhile: node-opcua decides a refusal
 * on what its watcher has seen so far and files the certificate in rejected/ afterwards, moving
 * it back out of trusted/ when the watcher caught up in between (seen with both cores busy).
 */
async function trustRejected(part: OpcuaServerPart, pki: string): Promise<void> {
  const server = (part as unknown as { server: OPCUAServer }).server;
  const cm = server.serverCertificateManager as OPCUACertificateManager;
  const files = readdirSync(join(pki, "rejected"));
  expect(files.length).toBeGreaterThan(0);
  for (const f of files) renameSync(join(pki, "rejected", f), join(pki, "trusted/certs", f));
  for (const f of files) {
    const der = new X509Certificate(readFileSync(join(pki, "trusted/certs", f))).raw;
    await eventually(`the server trusting ${f}`, async () => ((await cm.verifyCertificate(der)) === "Good" ? true : undefined), 20_000);
  }
}

const names = async (s: ClientSession, nodeId: string) => (await s.browse(nodeId)).references!.map((r) => r.browseName.toString());

describe("OPC UA server part", () => {
  const T1 = Date.UTC(2026, 0, 15, 8, 0, 0);
  let pki: string;
  let main: Awaited<ReturnType<typeof startPart>>;
  let op: Client | null = null;
  let trustedClientPki = "";
  let certificateAtStart = "";
  const logged = capturedLogger();

  beforeAll(async () => {
    pki = join(dir("server"), "opcua-pki");
    main = await startPart({ users: [{ username: "operator", password: "s3cret" }] }, pki, logged.log);
    certificateAtStart = readFileSync(join(pki, "own/certs/certificate.pem"), "utf8");
    main.part.update([
      { point: "meter-1/voltage", ts: T1, value: 230.5, quality: "good" },
      { point: "meter-1/relay", ts: T1 + 1000, value: true, quality: "good" },
      { point: "meter-1/model", ts: T1 + 2000, value: "SDM120", quality: "good" },
      { point: "meter-2/power", ts: T1 + 3000, value: null, quality: "bad" },
    ]);
  });
  afterAll(async () => {
    await close(op);
    await main?.part.stop();
  });

  it("listens on the bound port, keeps its certificate in the PKI dir, and lets a client in once its certificate is trusted", async () => {
    expect(main.address.port).toBeGreaterThan(0);
    expect(main.address.url).toBe(`opc.tcp://127.0.0.1:${main.address.port}`);
    expect(existsSync(join(pki, "own/certs/certificate.pem"))).toBe(true);
    expect(logged.lines.map((l) => l.msg)).toContain(`OPC UA server on ${main.address.url}`);
    expect(JSON.stringify(logged.lines)).not.toContain("s3cret");

    // An unknown client certificate is refused and kept in rejected/ ...
    const clientPki = dir("client");
    trustedClientPki = clientPki;
    await expect(connect(main.address.url, { pki: clientPki, secure: true, user: ["operator", "s3cret"] })).rejects.toThrow(/BadSecurityChecksFailed/);
    expect(readdirSync(join(pki, "rejected"))).toHaveLength(1);
    // ... and moving it to trusted/certs/ is all it takes.
    await trustRejected(main.part, pki);
    op = await connect(main.address.url, { pki: clientPki, secure: true, user: ["operator", "s3cret"] });
  });

  it("refuses anonymous sessions, wrong passwords and unsecured channels by default", async () => {
    // No None endpoint unless the config lists it.
    await expect(connect(main.address.url, { secure: false })).rejects.toThrow(/End point must exist/);
    // A trusted client, anonymous or with a wrong password or user, gets no session.
    const base = { pki: trustedClientPki, secure: true };
    await expect(connect(main.address.url, base)).rejects.toThrow(/ANONYMOUS|Anonymous|BadIdentityToken|BadUserAccessDenied/);
    await expect(connect(main.address.url, { ...base, user: ["operator", "wrong"] })).rejects.toThrow(/BadUserAccessDenied|BadIdentityTokenRejected/);
    await expect(connect(main.address.url, { ...base, user: ["nobody", "s3cret"] })).rejects.toThrow(/BadUserAccessDenied|BadIdentityTokenRejected/);
  });

  it("shows a folder per device with typed variables: value, quality, source timestamp, engineering units", async () => {
    const s = op!.session;
    expect(await names(s, "ns=0;i=85")).toEqual(expect.arrayContaining(["1:Devices", "1:Actuators"]));
    expect(await names(s, "ns=1;s=edge-agent:Devices")).toEqual(["1:meter-1", "1:meter-2"]);
    expect(await names(s, "ns=1;s=meter-1")).toEqual(["1:voltage", "1:relay", "1:model"]);

    const read = (id: string) => s.read({ nodeId: id, attributeId: AttributeIds.Value });
    const voltage = await read("ns=1;s=meter-1/voltage");
    expect(voltage.value.dataType).toBe(DataType.Double);
    expect(voltage.value.value).toBe(230.5);
    expect(voltage.statusCode).toBe(StatusCodes.Good);
    expect(voltage.sourceTimestamp!.getTime()).toBe(T1);
    const relay = await read("ns=1;s=meter-1/relay");
    expect([relay.value.dataType, relay.value.value, relay.sourceTimestamp!.getTime()]).toEqual([DataType.Boolean, true, T1 + 1000]);
    const model = await read("ns=1;s=meter-1/model");
    expect([model.value.dataType, model.value.value]).toEqual([DataType.String, "SDM120"]);
    const power = await read("ns=1;s=meter-2/power");
    expect(power.statusCode.isBad()).toBe(true);
    expect(power.sourceTimestamp!.getTime()).toBe(T1 + 3000);

    const props = (await s.browse("ns=1;s=meter-1/voltage")).references!;
    const eu = props.find((r) => r.browseName.name === "EngineeringUnits");
    expect(eu).toBeDefined();
    const unit = (await s.read({ nodeId: eu!.nodeId, attributeId: AttributeIds.Value })).value.value as { displayName: { text: string }; unitId: number };
    expect(unit.displayName.text).toBe("V");
    expect(unit.unitId).toBe(0x564c54); // "VLT", UNECE Rec 20
    expect(props.some((r) => r.browseName.name === "EngineeringUnits")).toBe(true);
    expect((await s.browse("ns=1;s=meter-1/relay")).references!.some((r) => r.browseName.name === "EngineeringUnits")).toBe(false);

    // New readings replace the values; quality maps to the status code.
    main.part.update([{ point: "meter-1/voltage", ts: T1 + 60_000, value: 231, quality: "uncertain" }]);
    const again = await read("ns=1;s=meter-1/voltage");
    expect([again.value.value, again.statusCode.value >>> 30, again.sourceTimestamp!.getTime()]).toEqual([231, 1, T1 + 60_000]); // severity 01 = Uncertain
  });

  it("never lets a client write a point", async () => {
    const status = await op!.session.write({ nodeId: "ns=1;s=meter-1/voltage", attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value: 1 } } });
    expect(status).toBe(StatusCodes.BadNotWritable);
    expect((await op!.session.read({ nodeId: "ns=1;s=meter-1/voltage", attributeId: AttributeIds.Value })).value.value).toBe(231);
  });

  it("runs actuator actions through the CommandRouter: executed once when valid, rejected with BadInvalidArgument when not", async () => {
    const s = op!.session;
    expect(await names(s, "ns=1;s=edge-agent:Actuators")).toEqual(["1:lamp-1"]);
    expect(await names(s, "ns=1;s=actuator:lamp-1")).toEqual(expect.arrayContaining(["1:set", "1:auto"]));
    const call = (args: string) =>
      s.call({ objectId: "ns=1;s=actuator:lamp-1", methodId: "ns=1;s=actuator:lamp-1:set", inputArguments: [new Variant({ dataType: DataType.String, value: args })] });

    const ok = await call('{"on": true, "duration_s": 600}');
    expect(ok.statusCode).toBe(StatusCodes.Good);
    const okResult = JSON.parse(ok.outputArguments![0]!.value as string) as CommandResult;
    expect(okResult).toMatchObject({ target: "lamp-1", action: "set", status: "ok", state: { on: true } });
    expect(okResult.id).toMatch(/^opcua-[0-9a-f-]{36}$/);
    expect(main.lamp.executed).toEqual([{ action: "set", args: { on: true, duration_s: 600 } }]);

    const bad = await call('{"on": "yes"}');
    expect(bad.statusCode).toBe(StatusCodes.BadInvalidArgument);
    expect(JSON.parse(bad.outputArguments![0]!.value as string)).toMatchObject({ status: "rejected", reason: expect.stringMatching(/^args\.on: /) });
    const limit = await call('{"on": true, "duration_s": 999999}');
    expect(limit.statusCode).toBe(StatusCodes.BadInvalidArgument);
    const garbage = await call("{oops");
    expect(garbage.statusCode).toBe(StatusCodes.BadInvalidArgument);
    expect(JSON.parse(garbage.outputArguments![0]!.value as string)).toMatchObject({ status: "rejected", reason: "args: malformed JSON" });
    expect(main.lamp.executed).toHaveLength(1);

    // An actuator that fails: BadDeviceFailure, with the reason.
    main.lamp.fail = true;
    const failed = await call('{"on": false}');
    main.lamp.fail = false;
    expect(failed.statusCode).toBe(StatusCodes.BadDeviceFailure);
    expect(JSON.parse(failed.outputArguments![0]!.value as string)).toMatchObject({ status: "error", reason: "coil write not confirmed by read-back" });
    // The router recorded what it handled, like MQTT commands (the malformed one never reached it).
    expect(main.results.map((r) => r.status)).toEqual(["ok", "rejected", "rejected", "error"]);
  });

  it("in read_only mode, and for anonymous users, exposes no command path", async () => {
    // Anonymous allowed over None, methods present: an anonymous call is refused, the lamp untouched.
    const open = await startPart({ allow_anonymous: true, security: ["None"] }, pki);
    const ro = await startPart({ allow_anonymous: true, security: ["None"], read_only: true }, pki);
    let a: Client | null = null;
    let b: Client | null = null;
    try {
      a = await connect(open.address.url, { secure: false });
      const denied = await a.session.call({ objectId: "ns=1;s=actuator:lamp-1", methodId: "ns=1;s=actuator:lamp-1:set", inputArguments: [new Variant({ dataType: DataType.String, value: '{"on":true}' })] });
      expect(denied.statusCode).toBe(StatusCodes.BadUserAccessDenied);
      expect(open.lamp.executed).toEqual([]);

      ro.part.update([{ point: "meter-1/voltage", ts: T1, value: 229, quality: "good" }]);
      b = await connect(ro.address.url, { secure: false });
      expect(await names(b.session, "ns=0;i=85")).not.toContain("1:Actuators");
      const call = await b.session.call({ objectId: "ns=1;s=actuator:lamp-1", methodId: "ns=1;s=actuator:lamp-1:set", inputArguments: [new Variant({ dataType: DataType.String, value: '{"on":true}' })] });
      expect(call.statusCode.isBad()).toBe(true);
      expect(ro.lamp.executed).toEqual([]);
      expect((await b.session.read({ nodeId: "ns=1;s=meter-1/voltage", attributeId: AttributeIds.Value })).value.value).toBe(229);
      const write = await b.session.write({ nodeId: "ns=1;s=meter-1/voltage", attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value: 1 } } });
      expect(write).toBe(StatusCodes.BadNotWritable);
      // The same PKI dir: the certificate made at the first start was kept, not made again.
      expect(readFileSync(join(pki, "own/certs/certificate.pem"), "utf8")).toBe(certificateAtStart);
    } finally {
      await close(a);
      await close(b);
      await open.part.stop();
      await ro.part.stop();
    }
  });

  it("is browsed by `opcua browse`, which names the certificate step when the server does not trust it yet", async () => {
    const cliPki = dir("cli");
    const flags = { pki: cliPki, username: "operator", password: "s3cret", depth: "3", node: "ns=1;s=edge-agent:Devices" };
    const refused = await opcuaBrowse(main.address.url, flags).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(UserError);
    expect((refused as UserError).exitCode).toBe(1);
    expect((refused as UserError).message).toMatch(/does not trust this client's certificate .*move it from <pki>\/rejected\/ to <pki>\/trusted\/certs\//);
    await trustRejected(main.part, pki);
    const out = await opcuaBrowse(main.address.url, flags);
    expect(out.security).toBe("Aes256_Sha256_RsaPss");
    const meter = out.root.children!.find((c) => c.browseName === "1:meter-1")!;
    expect(meter.children!.find((c) => c.browseName === "1:voltage")).toMatchObject({ nodeClass: "Variable", dataType: "Double", value: 231, nodeId: "ns=1;s=meter-1/voltage" });
    const wrong = await opcuaBrowse(main.address.url, { ...flags, password: "nope" }).catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(UserError);
    expect((wrong as UserError).message).toMatch(/refused the session for user 'operator'/);
    expect((wrong as UserError).exitCode).toBe(1);
  });
});

/** A small PLC: a folder Line1 with a few variables in ns=1, values set by the test. */
async function startPlc(port = 0) {
  const server = new OPCUAServer({
    port,
    host: "127.0.0.1",
    hostname: "127.0.0.1",
    serverCertificateManager: new OPCUACertificateManager({ rootFolder: plcPki }),
    securityPolicies: [SecurityPolicy.None],
    securityModes: [MessageSecurityMode.None],
    allowAnonymous: true,
    isAuditing: false,
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  const ns = addressSpace.getOwnNamespace();
  const line = ns.addFolder(addressSpace.rootFolder.objects, { browseName: "Line1", nodeId: "s=Line1" });
  const vars: Record<string, UAVariable> = {
    FlowTemp: ns.addVariable({ browseName: "FlowTemp", nodeId: "s=FlowTemp", organizedBy: line, dataType: "Double" }),
    PumpOn: ns.addVariable({ browseName: "PumpOn", nodeId: "s=PumpOn", organizedBy: line, dataType: "Boolean" }),
    Mode: ns.addVariable({ browseName: "Mode", nodeId: "s=Mode", organizedBy: line, dataType: "String" }),
  };
  await server.start();
  const bound = server.endpoints[0]!.port;
  const set = (name: string, dataType: DataType, value: unknown, ts = new Date()) =>
    vars[name]!.setValueFromSource(new Variant({ dataType, value }), StatusCodes.Good, ts);
  set("FlowTemp", DataType.Double, 71.5, new Date(PLC_TS));
  set("PumpOn", DataType.Boolean, true);
  set("Mode", DataType.String, "auto");
  return { url: `opc.tcp://127.0.0.1:${bound}`, port: bound, set, stop: () => server.shutdown(0) };
}

const PLC_TS = Date.UTC(2026, 0, 15, 9, 30, 0);
let plcPki = "";

describe("OPC UA source and browse against a PLC", () => {
  let plc: Awaited<ReturnType<typeof startPlc>>;

  beforeAll(async () => {
    plcPki = join(dir("plc"), "pki");
    plc = await startPlc();
  });
  afterAll(async () => {
    await plc?.stop();
  });

  function source(log = silentLogger()) {
    const data = dir("agent");
    const cfg = testConfig({
      uplink: { url: "mqtt://127.0.0.1:1" },
      store: { path: join(data, "outbox.db") },
      sources: [
        {
          type: "opcua",
          name: "plc-1",
          endpoint: plc.url,
          interval: "200ms",
          reconnect: { min: "100ms", max: "400ms" },
          nodes: [
            { name: "flow_temp", node: "ns=1;s=FlowTemp", unit: "°C" },
            { name: "pump_on", node: "ns=1;s=PumpOn" },
            { name: "ghost", node: "ns=1;s=NoSuchNode" },
          ],
        },
      ],
    });
    return new OpcuaSource(cfg.sources[0] as OpcuaSourceConfig, { log, storePath: cfg.store.path });
  }

  /** Polls like the scheduler until `done` holds for the readings of one poll. */
  async function pollUntil(src: OpcuaSource, what: string, done: (rs: Reading[]) => boolean, timeoutMs = 8000): Promise<Reading[]> {
    return eventually(what, async () => {
      const rs = await src.poll(Date.now());
      return done(rs) ? rs : undefined;
    }, timeoutMs);
  }
  const of = (rs: Reading[], point: string) => rs.filter((r) => r.point === point);

  it("turns subscribed nodes into readings; an unknown node is quality bad and reported once", async () => {
    const { log, lines } = capturedLogger();
    const src = source(log);
    const t0 = performance.now();
    await src.start();
    expect(performance.now() - t0).toBeLessThan(3000); // start does not wait for the PLC
    try {
      const first = await pollUntil(src, "the first values", (rs) => of(rs, "plc-1/flow_temp").some((r) => r.quality === "good"));
      expect(of(first, "plc-1/flow_temp")[0]).toEqual({ point: "plc-1/flow_temp", ts: PLC_TS, value: 71.5, quality: "good" });
      expect(of(first, "plc-1/pump_on")[0]).toMatchObject({ value: true, quality: "good" });
      expect(of(first, "plc-1/ghost")).toEqual([expect.objectContaining({ value: null, quality: "bad" })]);

      // A change arrives with its own timestamp; an unchanged node is reported at the poll's time.
      const changedAt = new Date(PLC_TS + 5000);
      plc.set("FlowTemp", DataType.Double, 72.25, changedAt);
      const next = await pollUntil(src, "the change", (rs) => of(rs, "plc-1/flow_temp").some((r) => r.value === 72.25));
      expect(of(next, "plc-1/flow_temp")).toEqual([{ point: "plc-1/flow_temp", ts: changedAt.getTime(), value: 72.25, quality: "good" }]);
      const tick = Date.now();
      const held = await src.poll(tick);
      expect(of(held, "plc-1/flow_temp")).toEqual([{ point: "plc-1/flow_temp", ts: tick, value: 72.25, quality: "good" }]);
      expect(of(held, "plc-1/ghost")).toEqual([{ point: "plc-1/ghost", ts: tick, value: null, quality: "bad" }]);

      await sleep(500);
      await src.poll(Date.now());
      const ghostLines = lines.filter((l) => l.msg.includes("ns=1;s=NoSuchNode"));
      expect(ghostLines).toHaveLength(1);
      expect(ghostLines[0]!.msg).toMatch(/plc-1\/ghost: node ns=1;s=NoSuchNode on opc\.tcp:\/\/127\.0\.0\.1:\d+: BadNodeIdUnknown/);
      expect(ghostLines[0]!.level).toBe(40);
      expect(src.health()).toMatchObject({ online: true, badNodes: [expect.stringMatching(/^plc-1\/ghost \(ns=1;s=NoSuchNode\): BadNodeIdUnknown/)] });
      // node-opcua's own warnings (W27 on Node 20…) go to our log at debug, never to stdout.
      const stdout = vi.spyOn(console, "log");
      make_warningLog("test")("[NODE-OPCUA-W27] node version", "v20");
      expect(stdout).not.toHaveBeenCalled();
      stdout.mockRestore();
      expect(lines.filter((l) => l.msg.includes("NODE-OPCUA-W27"))).toEqual([expect.objectContaining({ level: 20, msg: "[NODE-OPCUA-W27] node version v20" })]);
    } finally {
      await src.stop();
    }
  });

  it("browses the PLC with `opcua browse`, and fails with a clear line and exit code", async () => {
    const pki = dir("cli");
    const out = await opcuaBrowse(plc.url, { pki, depth: "2" });
    expect(out.security).toBe("None");
    expect(out.root).toMatchObject({ nodeId: "ns=0;i=85", browseName: "Objects", nodeClass: "Object" });
    const line = out.root.children!.find((c) => c.browseName === "1:Line1")!;
    expect(line).toMatchObject({ nodeId: "ns=1;s=Line1", nodeClass: "Object" });
    expect(line.children).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ browseName: "1:FlowTemp", nodeId: "ns=1;s=FlowTemp", nodeClass: "Variable", dataType: "Double" }),
        expect.objectContaining({ browseName: "1:PumpOn", nodeClass: "Variable", dataType: "Boolean", value: true }),
        expect.objectContaining({ browseName: "1:Mode", nodeClass: "Variable", dataType: "String", value: "auto" }),
      ]),
    );
    const text = formatTree(await opcuaBrowse(plc.url, { pki, node: "ns=1;s=Line1", depth: "1" }));
    expect(text).toContain("1:PumpOn  Variable  ns=1;s=PumpOn  Boolean = true");
    expect(text.split("\n")[1]).toBe("1:Line1  Object  ns=1;s=Line1");

    const fail = (url: string, flags: Parameters<typeof opcuaBrowse>[1]) => opcuaBrowse(url, { pki, ...flags }).then(() => null, (e: unknown) => e as UserError);
    const unknown = await fail(plc.url, { node: "ns=1;s=NoSuchNode" });
    expect([unknown?.exitCode, unknown?.message]).toEqual([1, "no node ns=1;s=NoSuchNode on the server: BadNodeIdUnknown"]);
    const badUrl = await fail("http://plc:4840", {});
    expect([badUrl?.exitCode, badUrl?.message]).toEqual([2, "expected an endpoint URL like opc.tcp://plc-1:4840, got 'http://plc:4840'"]);
    const badNode = await fail(plc.url, { node: "FlowTemp?" });
    expect(badNode?.exitCode).toBe(2);
    const badDepth = await fail(plc.url, { depth: "-1" });
    expect(badDepth?.exitCode).toBe(2);
    const unreachable = await fail("opc.tcp://127.0.0.1:1", {});
    expect(unreachable?.exitCode).toBe(1);
    expect(unreachable?.message).toBe("cannot reach opc.tcp://127.0.0.1:1: connect ECONNREFUSED 127.0.0.1:1");
  });

  it("feeds the agent like any other source (sources: in the config)", async () => {
    const cfg = testConfig({
      uplink: { url: "mqtt://127.0.0.1:1", health_interval: "0s" },
      store: { path: join(dir("agent"), "outbox.db") },
      sources: [{ type: "opcua", name: "plc-1", endpoint: plc.url, interval: "200ms", nodes: [{ name: "pump_on", node: "ns=1;s=PumpOn" }] }],
    });
    const agent = new Agent(cfg, { log: silentLogger() });
    await agent.start();
    try {
      // Until the first connection the points are stored as quality bad, then with their values.
      const status = await eventually("stored readings once connected", async () => {
        const s = agent.status();
        return (s.sources["plc-1"]?.health as { online?: boolean } | undefined)?.online && s.stored >= 2 ? s : undefined;
      });
      expect(status.sources["plc-1"]).toMatchObject({ errors: 0, health: { online: true, lastError: null, badNodes: [] } });
    } finally {
      await agent.stop();
    }
  });

  it("marks every point bad while the PLC is away and reads again when it is back", async () => {
    const src = source();
    await src.start();
    try {
      await pollUntil(src, "the first values", (rs) => of(rs, "plc-1/pump_on").some((r) => r.quality === "good"));
      const port = plc.port;
      await plc.stop();
      const away = await pollUntil(src, "bad quality while away", (rs) => of(rs, "plc-1/flow_temp").some((r) => r.quality === "bad"));
      expect(away.filter((r) => r.point !== "plc-1/ghost").every((r) => r.quality === "bad" && r.value === null)).toBe(true);
      expect(src.health()).toMatchObject({ online: false });
      await sleep(300);
      expect((await src.poll(Date.now())).every((r) => r.quality === "bad")).toBe(true);

      plc = await startPlc(port);
      plc.set("FlowTemp", DataType.Double, 80, new Date(PLC_TS + 60_000));
      const back = await pollUntil(src, "values after the PLC came back", (rs) => of(rs, "plc-1/flow_temp").some((r) => r.quality === "good"), 15_000);
      expect(of(back, "plc-1/flow_temp").find((r) => r.quality === "good")).toMatchObject({ value: 80 });
      expect(src.health()).toMatchObject({ online: true });
      expect(of(await src.poll(Date.now()), "plc-1/ghost")[0]).toMatchObject({ quality: "bad" });
    } finally {
      await src.stop();
    }
  });
});

describe("opcua configuration", () => {
  const base = { site: "s", gateway: "g", uplink: { url: "mqtt://127.0.0.1:1883" } };
  const errors = (raw: Record<string, unknown>) => {
    const r = validateConfig({ ...base, ...raw });
    return r.ok ? [] : r.errors;
  };

  it("has safe defaults: loopback, no anonymous, modern policies only", () => {
    const r = validateConfig({ ...base, opcua: { server: { users: [{ username: "bms", password: "x" }] } } });
    expect(r.ok && r.config.opcua?.server).toEqual({
      host: "127.0.0.1",
      port: 4840,
      allow_anonymous: false,
      users: [{ username: "bms", password: "x" }],
      read_only: false,
      security: ["Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"],
    });
  });

  it("names the place of every mistake", () => {
    expect(
      errors({
        opcua: { server: { security: ["Basic128Rsa15"] } },
        sources: [{ type: "opcua", name: "plc-1", endpoint: "http://plc:4840", nodes: [{ name: "t", node: "FlowTemp" }] }],
      }),
    ).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^opcua\.server\.security\[0\]: /),
        "sources[0].endpoint: expected an endpoint like opc.tcp://plc-1:4840",
        "sources[0].nodes[0].node: expected a node id like ns=2;s=FlowTemp or ns=3;i=1001",
      ]),
    );
    expect(
      errors({
        opcua: { server: { users: [] } },
        sources: [
          { type: "opcua", name: "plc-1", endpoint: "opc.tcp://plc:4840", username: "u", security: { mode: "Sign", policy: "None" }, nodes: [{ name: "t", node: "ns=2;s=A" }, { name: "t", node: "ns=2;i=7" }] },
          { type: "simulated", name: "plc-1", interval: "1s", points: [{ name: "p" }] },
        ],
      }),
    ).toEqual([
      "sources[0].nodes[1].name: duplicate point name 't' in 'plc-1'",
      "sources[0].password: username and password go together",
      "sources[0].security.policy: mode Sign needs a policy other than None",
      "sources[1].name: duplicate name 'plc-1' (also sources[0].name)",
      "opcua.server.users: nobody can log in: add users, or set allow_anonymous: true",
    ]);
  });
});
