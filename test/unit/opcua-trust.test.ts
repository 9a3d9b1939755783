/**
 * The pins of opcua/trust.ts on their own: per endpoint, the endpoint's spellings, the file
 * (atomic, fail closed, keys from outside), the folders. Certificates made by openssl (EC keys:
 * fast); the OPC UA side is in test/integration/opcua-trust.test.ts.
 */
import { spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { endpointKey, leafCertificate, normalizeThumbprint, PIN_FILE, ServerTrust, trustCommand } from "../../src/opcua/trust.js";

const dirs: string[] = [];
const tmp = (prefix: string) => {
  const d = mkdtempSync(join(tmpdir(), `edge-pins-${prefix}-`));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A self-signed certificate, DER. */
function makeCertificate(cn: string): Buffer {
  const out = join(tmp("cert"), "c.der");
  const r = spawnSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "/dev/null", "-subj", `/O=Test/CN=${cn}`, "-days", "2", "-outform", "DER", "-out", out], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`);
  return readFileSync(out);
}

let plcA: Buffer;
let plcB: Buffer;
let mitm: Buffer;
beforeAll(() => {
  plcA = makeCertificate("plc-a");
  plcB = makeCertificate("plc-b");
  mitm = makeCertificate("plc-a");
});
const sha1 = (der: Buffer) => new X509Certificate(der).fingerprint;

const A = "opc.tcp://10.0.0.1:4840";
const B = "opc.tcp://10.0.0.2:4840";

describe("ServerTrust", () => {
  it("pins each endpoint to its own certificate: two PLCs both trusted, neither accepted at the other's address", () => {
    const pki = tmp("pki");
    const trust = new ServerTrust(pki);
    expect(trust.check(A, plcA, "first-use")).toMatchObject({ trusted: true, how: "first-use", certificate: { sha1: sha1(plcA), subject: "O=Test, CN=plc-a" } });
    expect(trust.check(B, plcB, "first-use")).toMatchObject({ trusted: true, how: "first-use" });
    expect(trust.check(A, plcA, "first-use")).toMatchObject({ trusted: true, how: "already" });
    expect(trust.check(B, plcB, "explicit")).toMatchObject({ trusted: true, how: "already" });
    // Swapped: each is a known certificate, but not this endpoint's.
    const swapped = trust.check(A, plcB, "first-use");
    expect(swapped).toMatchObject({ trusted: false, reason: expect.stringContaining(`${A}: the server's certificate has changed: pinned SHA-1 ${sha1(plcA)}, presented SHA-1 ${sha1(plcB)} (O=Test, CN=plc-b); refused.`) });
    expect(trust.check(B, plcA, "first-use").trusted).toBe(false);
    // Same subject, other key: a man in the middle copying the PLC's name.
    const copied = trust.check(A, mitm, "first-use");
    expect(copied.trusted).toBe(false);
    expect(!copied.trusted && copied.reason).toMatch(new RegExp(`then run: ${trustCommand(A, pki).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`));
    // The accepted ones are in trusted/certs/, the refused ones in rejected/, named as node-opcua names them.
    const name = (der: Buffer, cn: string) => `${cn}[${sha1(der).replace(/:/g, "").toLowerCase()}].pem`;
    expect(readdirSync(join(pki, "trusted/certs")).sort()).toEqual([name(plcA, "plc-a"), name(plcB, "plc-b")].sort());
    expect(readdirSync(join(pki, "rejected")).sort()).toEqual([name(plcB, "plc-b"), name(plcA, "plc-a"), name(mitm, "plc-a")].sort());
    expect(new X509Certificate(readFileSync(join(pki, "trusted/certs", name(plcA, "plc-a")))).fingerprint).toBe(sha1(plcA));
  });

  it("knows an endpoint however it is written, and takes the leaf of a chain", () => {
    expect(endpointKey("opc.tcp://PLC-1")).toBe("opc.tcp://plc-1:4840");
    expect(endpointKey("opc.tcp://plc-1:4840/")).toBe("opc.tcp://plc-1:4840");
    expect(endpointKey("opc.tcp://[FE80::1]:4841/UA/Server")).toBe("opc.tcp://[fe80::1]:4841/UA/Server");
    const trust = new ServerTrust(tmp("pki"));
    trust.check("opc.tcp://PLC-1", Buffer.concat([plcA, plcB]), "first-use");
    expect(leafCertificate(Buffer.concat([plcA, plcB])).equals(plcA)).toBe(true);
    expect(trust.check("opc.tcp://plc-1:4840/", plcA, "explicit")).toMatchObject({ trusted: true, how: "already" });
    expect(trust.pinned("opc.tcp://plc-1:4840")?.sha1).toBe(sha1(plcA));
  });

  it("explicit: refuses an unknown certificate into rejected/ and takes it once moved to trusted/certs/", () => {
    const pki = tmp("pki");
    const trust = new ServerTrust(pki);
    const refused = trust.check(A, plcA, "explicit");
    if (refused.trusted) throw new Error("expected a refusal");
    const m = / then move (\S+) to (\S+)\/ \(or run: /.exec(refused.reason);
    expect(m?.[2]).toBe(join(pki, "trusted/certs"));
    expect(existsSync(m![1]!)).toBe(true);
    expect(existsSync(join(pki, PIN_FILE))).toBe(false);
    renameSync(m![1]!, join(m![2]!, basename(m![1]!)));
    expect(trust.check(A, plcA, "explicit")).toMatchObject({ trusted: true, how: "trusted-folder" });
    // A certificate the operator dropped in under any name (DER here) counts as well.
    writeFileSync(join(pki, "trusted/certs", "plc-b.der"), plcB);
    expect(trust.check(B, plcB, "explicit")).toMatchObject({ trusted: true, how: "trusted-folder" });
    // Moving a file does not re-pin a changed endpoint: only `opcua trust` does.
    writeFileSync(join(pki, "trusted/certs", "mitm.der"), mitm);
    expect(trust.check(A, mitm, "explicit").trusted).toBe(false);
  });

  it("pin() replaces an endpoint's pin on purpose and says what it replaced", () => {
    const trust = new ServerTrust(tmp("pki"));
    trust.check(A, plcA, "first-use");
    expect(trust.pin(A, plcB)).toMatchObject({ changed: true, previous: { sha1: sha1(plcA) }, certificate: { sha1: sha1(plcB) } });
    expect(trust.pin(A, plcB)).toMatchObject({ changed: false });
    expect(trust.check(A, plcB, "explicit")).toMatchObject({ trusted: true, how: "already" });
    expect(trust.check(A, plcA, "first-use").trusted).toBe(false);
  });

  it("writes the pins atomically and refuses every server while the file is broken (fail closed)", () => {
    const pki = tmp("pki");
    const trust = new ServerTrust(pki);
    trust.check(A, plcA, "first-use");
    expect(readdirSync(pki).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    const file = JSON.parse(readFileSync(join(pki, PIN_FILE), "utf8")) as Record<string, unknown>;
    expect(file).toEqual({ format: 1, servers: { [A]: { sha1: sha1(plcA), sha256: new X509Certificate(plcA).fingerprint256, subject: "O=Test, CN=plc-a", pinned_at: expect.any(String) } } });

    writeFileSync(join(pki, PIN_FILE), "{ half a file");
    const broken = trust.check(A, plcA, "first-use");
    expect(broken).toMatchObject({ trusted: false, reason: `${A}: the pinned server certificates ${join(pki, PIN_FILE)} are unreadable (not JSON); every server is refused until it is repaired or removed (then each is pinned again at its next contact)` });
    writeFileSync(join(pki, PIN_FILE), JSON.stringify({ format: 1, servers: { [A]: { sha1: "nope" } } }));
    expect(trust.check(B, plcB, "first-use")).toMatchObject({ trusted: false, reason: expect.stringContaining(`(bad entry for ${A})`) });
  });

  it("refuses, with the reason, when it cannot record a pin", () => {
    const pki = tmp("pki");
    writeFileSync(join(pki, "trusted"), "a file where the folder should be");
    const refused = new ServerTrust(pki).check(A, plcA, "first-use");
    expect(refused).toMatchObject({ trusted: false, reason: expect.stringMatching(new RegExp(`^${A.replace(/\./g, "\\.")}: cannot record the server's certificate in ${pki}: .*; refused$`)) });
    expect(existsSync(join(pki, PIN_FILE))).toBe(false);
  });

  it("keeps endpoint keys from the file out of any object prototype", () => {
    const pki = tmp("pki");
    const entry = { sha1: sha1(plcA), sha256: new X509Certificate(plcA).fingerprint256, subject: "x", pinned_at: "t" };
    writeFileSync(join(pki, PIN_FILE), `{"format":1,"servers":{"__proto__":${JSON.stringify(entry)},"constructor":${JSON.stringify(entry)}}}`);
    const trust = new ServerTrust(pki);
    expect([...trust.read().keys()]).toEqual(["__proto__", "constructor"]);
    expect(trust.check(A, plcA, "explicit").trusted).toBe(false);
    trust.check(B, plcB, "first-use");
    expect(Object.keys((JSON.parse(readFileSync(join(pki, PIN_FILE), "utf8")) as { servers: object }).servers)).toEqual(["__proto__", "constructor", B]);
    expect(({} as Record<string, unknown>).sha1).toBeUndefined();
  });

  it("reads a thumbprint however a technician types it", () => {
    expect(normalizeThumbprint("ab cd:EF01")).toBe("AB:CD:EF:01");
    expect(normalizeThumbprint("not hex")).toBe("not hex");
    expect(trustCommand(A, "/var/lib/edge agent/pki")).toBe(`edge-agent opcua trust ${A} --pki '/var/lib/edge agent/pki'`);
  });
});
