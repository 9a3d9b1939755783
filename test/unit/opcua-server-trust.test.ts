/**
 * The OPC UA server's certificate manager keeps a certificate the installer trusted: a refusal
 * that races the PKI's file watcher (node-opcua saw the certificate in trusted/ before it saw it
 * leave rejected/) must not move it back to rejected/.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadOpcua } from "../../src/opcua/load.js";
import { certificatesIn, serverCertificateManager } from "../../src/opcua/server-trust.js";
import { silentLogger } from "../../src/ops/logger.js";
import { tempDir } from "../helpers/tmp.js";

function certificate(dir: string, cn: string): Buffer {
  const out = join(dir, `${cn}.der`);
  // node-opcua's PKI may leave OPENSSL_CONF pointing nowhere once loaded: the system's config here.
  const env = { ...process.env };
  delete env.OPENSSL_CONF;
  const r = spawnSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "/dev/null", "-subj", `/O=Test/CN=${cn}`, "-days", "2", "-outform", "DER", "-out", out], { encoding: "utf8", env });
  if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`);
  return readFileSync(out);
}

describe("OPC UA server trust", () => {
  it("a refusal never moves a trusted certificate out of trusted/; an unknown one goes to rejected/", { timeout: 30_000 }, async () => {
    const dir = tempDir();
    const ua = await loadOpcua(silentLogger());
    const cm = serverCertificateManager(ua, join(dir, "pki"));
    await cm.initialize();
    const bms = certificate(dir, "bms");
    const stranger = certificate(dir, "stranger");
    // The installer has moved the BMS's certificate to trusted/certs/.
    writeFileSync(join(cm.trustedFolder, "bms.der"), bms);
    await cm.rejectCertificate(bms);
    expect(certificatesIn(cm.trustedFolder).some((c) => c.equals(bms))).toBe(true);
    expect(certificatesIn(join(cm.rootDir, "rejected")).some((c) => c.equals(bms))).toBe(false);
    await cm.rejectCertificate(stranger);
    expect(certificatesIn(join(cm.rootDir, "rejected")).some((c) => c.equals(stranger))).toBe(true);
    expect(existsSync(join(cm.trustedFolder, "bms.der"))).toBe(true);
    expect(readdirSync(cm.trustedFolder)).toHaveLength(1);
    await cm.dispose();
  });
});
