/**
 * The OPC UA client's trust in servers, against real node-opcua servers: the first contact pins
 * the server's certificate to its endpoint; another server on the same port (a fresh PKI, so
 * another certificate: a swapped or replaced PLC, or a man in the middle) is refused, in the
 * source's health, in `edge-agent status` and by `opcua browse`; `edge-agent opcua trust` pins the
 * new one and the running source takes it without a restart; `trust: explicit` refuses an
 * unknown certificate until it is moved where the message says.
 *
 * Two PLC identities (PKI directories A and B) take turns on one port; each start costs ~1.5 s.
 */
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { Writable } from "node:stream";
import { DataType, MessageSecurityMode, OPCUACertificateManager, OPCUAServer, SecurityPolicy, StatusCodes, Variant } from "node-opcua";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/agent/agent.js";
import { opcuaBrowse, opcuaTrust } from "../../src/cli/opcua.js";
import { loadConfig } from "../../src/agent/config.js";
import type { OpcuaSourceConfig } from "../../src/sources/opcua/type.js";
import { UserError } from "../../src/model/errors.js";
import type { Reading } from "../../src/model/reading.js";
import { createLogger, silentLogger } from "../../src/ops/logger.js";
import { loadOpcua } from "../../src/opcua/load.js";
import { PIN_FILE } from "../../src/opcua/trust.js";
import { OpcuaSource, type OpcuaSourceHealth } from "../../src/sources/opcua/source.js";
import { Outbox } from "../../src/store/outbox.js";
import { exited, startCli } from "../helpers/cli.js";
import { testConfig } from "../helpers/config.js";

await loadOpcua(null);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dirs: string[] = [];
function dir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `edge-trust-${prefix}-`));
  dirs.push(d);
  return d;
}

async function eventually<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000): Promise<T> {
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

interface Identity {
  pki: string;
  /** What the PLC serves as ns=1;s=FlowTemp: tells the two apart in the readings. */
  flowTemp: number;
}

/** A PLC with None and SignAndEncrypt endpoints that accepts any client (the test is about the client's side). */
async function startPlc(id: Identity, port = 0) {
  const server = new OPCUAServer({
    port,
    host: "127.0.0.1",
    hostname: "127.0.0.1",
    serverCertificateManager: new OPCUACertificateManager({ rootFolder: id.pki, automaticallyAcceptUnknownCertificate: true }),
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.SignAndEncrypt],
    allowAnonymous: true,
    isAuditing: false,
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  const v = addressSpace.getOwnNamespace().addVariable({ browseName: "FlowTemp", nodeId: "s=FlowTemp", organizedBy: addressSpace.rootFolder.objects, dataType: "Double" });
  v.setValueFromSource(new Variant({ dataType: DataType.Double, value: id.flowTemp }), StatusCodes.Good);
  await server.start();
  const cert = new X509Certificate(readFileSync(join(id.pki, "own/certs/certificate.pem")));
  const bound = server.endpoints[0]!.port;
  return { id, url: `opc.tcp://127.0.0.1:${bound}`, port: bound, sha1: cert.fingerprint, sha256: cert.fingerprint256, stop: () => server.shutdown(0) };
}
type Plc = Awaited<ReturnType<typeof startPlc>>;

let A: Identity;
let B: Identity;
let plc: Plc;

/** The other identity takes the port: the same endpoint now presents another certificate. */
async function swap(): Promise<{ before: Plc; after: Plc }> {
  const before = plc;
  await before.stop();
  plc = await startPlc(before.id === A ? B : A, before.port);
  return { before, after: plc };
}

beforeAll(async () => {
  A = { pki: join(dir("plc-a"), "pki"), flowTemp: 71.5 };
  B = { pki: join(dir("plc-b"), "pki"), flowTemp: 99.25 };
  plc = await startPlc(A);
});
afterAll(async () => {
  await plc?.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const pins = (pki: string) => JSON.parse(readFileSync(join(pki, PIN_FILE), "utf8")) as { servers: Record<string, { sha1: string; sha256: string }> };

describe("the opcua source trusts a PLC's certificate on first use and refuses a changed one", () => {
  function source(opts: { security?: "None" | "SignAndEncrypt"; trust?: "first-use" | "explicit"; pki: string; log?: ReturnType<typeof silentLogger> }) {
    const cfg = testConfig({
      uplink: { url: "mqtt://127.0.0.1:1" },
      store: { path: join(dir("store"), "outbox.db") },
      sources: [
        {
          type: "opcua",
          name: "plc-1",
          endpoint: plc.url,
          interval: "200ms",
          reconnect: { min: "100ms", max: "400ms" },
          pki_dir: opts.pki,
          ...(opts.security === "SignAndEncrypt" ? { security: { mode: "SignAndEncrypt", policy: "Basic256Sha256" } } : {}),
          ...(opts.trust ? { trust: opts.trust } : {}),
          nodes: [{ name: "flow_temp", node: "ns=1;s=FlowTemp" }],
        },
      ],
    });
    return new OpcuaSource(cfg.sources[0] as OpcuaSourceConfig, { log: opts.log ?? silentLogger(), storePath: cfg.store.path });
  }
  const valueOf = async (src: OpcuaSource) => (await src.poll(Date.now())).find((r: Reading) => r.quality === "good")?.value;

  // Three CLI processes (status, opcua trust twice; the last two load node-opcua) and a PLC swap:
  // 8 s on an idle machine, 25–45 s with every core busy.
  it("agent (SignAndEncrypt): pins and reads; the swapped PLC is refused and named in health and `edge-agent status`; `opcua trust` lets it in without a restart", { timeout: 120_000 }, async () => {
    const data = dir("agent");
    const pki = join(data, "opcua-client-pki");
    const file = join(data, "agent.yaml");
    writeFileSync(
      file,
      JSON.stringify({
        site: "s",
        gateway: "g",
        uplink: { url: "mqtt://127.0.0.1:1", health_interval: "0s" },
        store: { path: join(data, "outbox.db") },
        sources: [
          {
            type: "opcua",
            name: "plc-1",
            endpoint: plc.url,
            security: { mode: "SignAndEncrypt", policy: "Basic256Sha256" },
            interval: "200ms",
            reconnect: { min: "100ms", max: "400ms" },
            nodes: [{ name: "flow_temp", node: "ns=1;s=FlowTemp" }],
          },
        ],
      }),
    );
    const { log, lines } = capturedLogger();
    const agent = new Agent(loadConfig(file), { log });
    const health = () => agent.status().sources["plc-1"]?.health as OpcuaSourceHealth | undefined;
    const stored = () => {
      const box = Outbox.inspect(join(data, "outbox.db"), { quota: 1e9, whenFull: "drop-oldest", maxAge: 1e12, sync: "full" });
      try {
        return box.readAfter(0, 1_000_000).filter((r) => r.point === "plc-1/flow_temp" && r.quality === "good").map((r) => r.value);
      } finally {
        box.close();
      }
    };
    await agent.start();
    try {
      // First contact: pinned (the agent's PKI next to the outbox), logged once with both thumbprints, read.
      const first = plc;
      await eventually("the first values", () => (health()?.online && stored().includes(first.id.flowTemp) ? true : undefined));
      expect(pins(pki).servers[first.url]).toMatchObject({ sha1: first.sha1, sha256: first.sha256 });
      expect(readdirSync(join(pki, "trusted/certs"))).toHaveLength(1);
      const pinnedLines = lines.filter((l) => l.msg.includes("first contact"));
      expect(pinnedLines).toHaveLength(1);
      expect(pinnedLines[0]!.msg).toContain(`plc-1: first contact with ${first.url}: its certificate is now pinned (SHA-1 ${first.sha1}, SHA-256 ${first.sha256}, `);
      expect(pinnedLines[0]!.msg).toMatch(/CN=NodeOPCUA@/);
      expect(health()).toMatchObject({ certificate: first.sha1, lastError: null });

      // Another PLC on the same endpoint: refused, one line with both thumbprints and the way out.
      const { after } = await swap();
      const refused = await eventually("the refusal in health", () => (health()?.lastError?.includes("has changed") ? health() : undefined));
      const expected =
        `${first.url}: the server's certificate has changed: pinned SHA-1 ${first.sha1}, presented SHA-1 ${after.sha1} (`;
      expect(refused.lastError).toContain(expected);
      expect(refused.lastError).toMatch(/; refused\. If the PLC was replaced or its certificate renewed, compare the new SHA-1 with the PLC's display, then run: edge-agent opcua trust \S+ --pki \S+$/);
      expect(refused.lastError).toContain(`edge-agent opcua trust ${first.url} --pki ${pki}`);
      expect(refused.online).toBe(false);
      // It keeps retrying at its backoff: still refused a moment later, nothing read from the other PLC, logged once.
      await sleep(1500);
      expect(health()).toMatchObject({ online: false, lastError: expect.stringContaining(expected) });
      expect(stored()).not.toContain(after.id.flowTemp);
      expect(lines.filter((l) => l.msg.startsWith(expected))).toHaveLength(1);
      expect(readdirSync(join(pki, "rejected")).some((f) => f.includes(after.sha1.replace(/:/g, "").toLowerCase()))).toBe(true);

      // `edge-agent status` shows it.
      const status = startCli(["status", "-c", file]);
      expect(await exited(status)).toBe(0);
      expect(status.out()).toMatch(/plc-1\s+OFFLINE · .*last error: .*the server's certificate has changed: pinned SHA-1/);
      expect(status.out()).toContain(`presented SHA-1 ${after.sha1}`);

      // The technician pins the new certificate with the command the message names: the running agent takes it.
      const wrong = startCli(["opcua", "trust", first.url, "--pki", pki, "--thumbprint", first.sha1]);
      expect(await exited(wrong)).toBe(1);
      expect(wrong.out()).toContain(`shows SHA-1 ${after.sha1}`);
      expect(wrong.out()).toContain("nothing pinned");
      const trust = startCli(["opcua", "trust", first.url, "--pki", pki, "--thumbprint", after.sha1.replace(/:/g, "").toLowerCase()]);
      expect(await exited(trust)).toBe(0);
      expect(trust.out()).toContain(`pinned for ${first.url} in ${pki}`);
      expect(trust.out()).toMatch(new RegExp(`pinned\\s+another certificate: SHA-1 ${first.sha1}`));
      await eventually("values from the newly trusted PLC", () => (health()?.online && stored().includes(after.id.flowTemp) ? true : undefined));
      expect(health()).toMatchObject({ online: true, lastError: null, certificate: after.sha1 });
      expect(pins(pki).servers[first.url]).toMatchObject({ sha1: after.sha1, sha256: after.sha256 });
    } finally {
      await agent.stop();
    }
  });

  it("over None, tells a swapped PLC apart by the certificate of its session", { timeout: 60_000 }, async () => {
    const pki = dir("none");
    const src = source({ pki });
    await src.start();
    try {
      const first = plc;
      await eventually("the first value", async () => ((await valueOf(src)) === first.id.flowTemp ? true : undefined));
      expect(pins(pki).servers[first.url]?.sha256).toBe(first.sha256);

      const { after } = await swap();
      const refused = await eventually("the refusal", () => (src.health().lastError?.includes("has changed") ? src.health() : undefined));
      expect(refused.lastError).toContain(`pinned SHA-1 ${first.sha1}, presented SHA-1 ${after.sha1}`);
      // Nothing from the other PLC, not even between its session and the refusal.
      for (let i = 0; i < 5; i++) {
        expect((await src.poll(Date.now())).every((r) => r.quality === "bad" && r.value === null)).toBe(true);
        await sleep(200);
      }

      const out = await opcuaTrust(first.url, { pki, yes: true }, () => Promise.reject(new Error("not asked with --yes")));
      expect(out).toMatchObject({ result: "pinned", confirmedBy: "yes", certificate: { sha1: after.sha1 }, previous: { sha1: first.sha1 } });
      await eventually("the newly trusted value", async () => ((await valueOf(src)) === after.id.flowTemp ? true : undefined));
      expect(src.health()).toMatchObject({ online: true, lastError: null, certificate: after.sha1 });
    } finally {
      await src.stop();
    }
  });

  it("with trust: explicit, refuses an unknown certificate until it is moved where the message says", { timeout: 30_000 }, async () => {
    const pki = dir("explicit");
    const { log, lines } = capturedLogger();
    const src = source({ pki, security: "SignAndEncrypt", trust: "explicit", log });
    await src.start();
    try {
      const refused = await eventually("the refusal", () => (src.health().lastError?.includes("unknown server certificate") ? src.health() : undefined));
      const m = /^(\S+): unknown server certificate SHA-1 (\S+) \(.*\); refused \(trust: explicit\)\. Compare it with the PLC's display, then move (\S+) to (\S+)\/ \(or run: edge-agent opcua trust \S+ --pki \S+\)$/.exec(refused.lastError!);
      expect(m).not.toBeNull();
      const [, url, sha1, rejectedFile, trustedFolder] = m!;
      expect([url, sha1, trustedFolder]).toEqual([plc.url, plc.sha1, join(pki, "trusted/certs")]);
      expect(readdirSync(join(pki, "rejected"))).toEqual([basename(rejectedFile!)]);
      await sleep(800);
      expect((await src.poll(Date.now())).every((r) => r.quality === "bad")).toBe(true);
      expect(lines.filter((l) => l.msg.includes("unknown server certificate"))).toHaveLength(1);

      renameSync(rejectedFile!, join(trustedFolder!, basename(rejectedFile!)));
      await eventually("the value once trusted", async () => ((await valueOf(src)) === plc.id.flowTemp ? true : undefined));
      expect(pins(pki).servers[plc.url]?.sha1).toBe(plc.sha1);
      expect(lines.some((l) => l.msg.includes(`certificate SHA-1 ${plc.sha1}`) && l.msg.includes("found in trusted/certs/, now pinned"))).toBe(true);
    } finally {
      await src.stop();
    }
  });
});

describe("`opcua browse` and `opcua trust` with their own PKI", () => {
  const fail = (p: Promise<unknown>) => p.then(() => null, (e: unknown) => e as UserError);

  it("pins on first contact; refuses a changed certificate with both thumbprints until `opcua trust` pins it; --trust explicit refuses an unknown one", { timeout: 60_000 }, async () => {
    const pki = dir("cli");
    const first = plc;
    const out = await opcuaBrowse(first.url, { pki, depth: "1" });
    expect(out.certificate).toMatchObject({ sha1: first.sha1, sha256: first.sha256, pinned: "first-use" });
    expect(out.root.children!.map((c) => c.browseName)).toContain("1:FlowTemp");
    const secure = await opcuaBrowse(first.url, { pki, depth: "0", security: "Basic256Sha256" });
    expect(secure.certificate).toMatchObject({ sha1: first.sha1, pinned: "already" });

    const { after } = await swap();
    const changedLine = `${first.url}: the server's certificate has changed: pinned SHA-1 ${first.sha1}, presented SHA-1 ${after.sha1}`;
    for (const security of ["auto", "Basic256Sha256"]) {
      const refused = await fail(opcuaBrowse(first.url, { pki, depth: "0", security }));
      expect(refused).toBeInstanceOf(UserError);
      expect(refused!.exitCode).toBe(1);
      expect(refused!.message).toContain(changedLine);
      expect(refused!.message).toContain(`then run: edge-agent opcua trust ${first.url} --pki ${pki}`);
    }

    // A thumbprint that does not match pins nothing; a refused question neither.
    const mismatch = await fail(opcuaTrust(first.url, { pki, thumbprint: first.sha256 }, () => Promise.resolve(true)));
    expect([mismatch?.exitCode, mismatch?.message]).toEqual([1, `${first.url} shows SHA-1 ${after.sha1} (SHA-256 ${after.sha256}), not ${first.sha256}: nothing pinned`]);
    const asked: string[] = [];
    const no = await fail(opcuaTrust(first.url, { pki }, (found) => (asked.push(found.certificate.sha1), Promise.resolve(false))));
    expect([no?.exitCode, asked]).toEqual([1, [after.sha1]]);
    expect((await fail(opcuaBrowse(first.url, { pki, depth: "0" })))?.message).toContain(changedLine);

    const yes = await opcuaTrust(first.url, { pki }, () => Promise.resolve(true));
    expect(yes).toMatchObject({ result: "pinned", confirmedBy: "question", certificate: { sha1: after.sha1 }, previous: { sha1: first.sha1 } });
    const again = await opcuaTrust(first.url, { pki }, () => Promise.reject(new Error("nothing to ask")));
    expect(again).toMatchObject({ result: "unchanged", confirmedBy: null });
    const browsed = await opcuaBrowse(first.url, { pki, depth: "1", security: "Basic256Sha256" });
    expect(browsed.certificate).toMatchObject({ sha1: after.sha1, pinned: "already" });
    expect(browsed.root.children!.find((c) => c.browseName === "1:FlowTemp")?.value).toBe(after.id.flowTemp);

    // explicit: an unknown server is refused, its certificate kept in rejected/.
    const fresh = dir("cli-explicit");
    const unknown = await fail(opcuaBrowse(first.url, { pki: fresh, depth: "0", trust: "explicit" }));
    expect(unknown?.exitCode).toBe(1);
    expect(unknown?.message).toMatch(/unknown server certificate SHA-1 \S+ \(.*\); refused \(trust: explicit\)\. Compare it with the PLC's display, then move \S+\/rejected\/\S+\.pem to \S+\/trusted\/certs\//);
    expect(readdirSync(join(fresh, "rejected"))).toHaveLength(1);
    const badMode = await fail(opcuaBrowse(first.url, { pki: fresh, trust: "sometimes" }));
    expect([badMode?.exitCode, badMode?.message]).toEqual([2, "--trust: expected first-use or explicit, got 'sometimes'"]);
  });
});
