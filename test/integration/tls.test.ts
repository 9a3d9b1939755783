/** TLS to the broker: a private CA, and client certificates where the broker demands them. */
import { copyFileSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createServer, type Server, type TLSSocket } from "node:tls";
import { Aedes } from "aedes";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/ops/logger.js";
import { Outbox } from "../../src/store/outbox.js";
import { Uplink } from "../../src/uplink/uplink.js";
import { makePki, type TestPki } from "../helpers/certs.js";
import { testConfig } from "../helpers/config.js";
import { tempDir } from "../helpers/tmp.js";
import { until } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function tlsBroker(pki: TestPki, requireClientCert: boolean): Promise<string> {
  const broker = await Aedes.createBroker();
  const sockets = new Set<TLSSocket>();
  const server: Server = createServer(
    {
      key: readFileSync(pki.serverKey),
      cert: readFileSync(pki.serverCert),
      ca: readFileSync(pki.ca),
      requestCert: requireClientCert,
      rejectUnauthorized: requireClientCert,
    },
    (socket) => {
      sockets.add(socket);
      broker.handle(socket);
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => broker.close(() => r()));
    await new Promise<void>((r) => server.close(() => r()));
  });
  const addr = server.address();
  return `mqtts://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
}

function uplinkFor(dir: string, uplink: Record<string, unknown>) {
  const cfg = testConfig({ uplink: { reconnect: { min: "100ms", max: "300ms" }, connect_timeout: "3s", ...uplink } as never });
  const outbox = Outbox.open({ path: join(dir, `o-${Math.random()}.db`), quota: 1e8, whenFull: "drop-oldest", maxAge: 1e10, sync: "normal" });
  const up = new Uplink({ config: cfg.uplink, site: cfg.site, gateway: cfg.gateway, version: "t", outbox, log: silentLogger() });
  cleanups.push(async () => {
    await up.stop(300);
    outbox.close();
  });
  outbox.append([{ point: "a/b", ts: Date.now(), value: 1, quality: "good" }]);
  up.start();
  up.notify();
  return { up, outbox };
}


describe("uplink over TLS", () => {
  it("connects with the private CA, and names the problem without it", async () => {
    const dir = tempDir();
    const pki = makePki(dir);
    const url = await tlsBroker(pki, false);
    const good = uplinkFor(dir, { url, tls: { ca: pki.ca } });
    await until(() => good.outbox.depth === 0, "delivery over TLS");
    const bad = uplinkFor(dir, { url });
    await until(() => bad.up.stats().lastError !== null, "a TLS error");
    expect(bad.up.stats().lastError).toMatch(/TLS handshake failed: .*(self[- ]signed|unable to verify).*check uplink\.tls\.ca/i);
    expect(bad.outbox.depth).toBe(1);
  });

  it("presents the client certificate when the broker demands one", async () => {
    const dir = tempDir();
    const pki = makePki(dir);
    const url = await tlsBroker(pki, true);
    const withCert = uplinkFor(dir, { url, tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } });
    await until(() => withCert.outbox.depth === 0, "delivery with a client certificate");
    const without = uplinkFor(dir, { url, tls: { ca: pki.ca } });
    await until(() => without.up.stats().lastError !== null, "a refusal");
    expect(without.up.stats().lastError).toMatch(/TLS handshake failed|connection reset|certificate/i);
    expect(without.up.stats().state).not.toBe("online");
    expect(without.outbox.depth).toBe(1);
  });

  it("keeps retrying, and says why, when a TLS file disappears while it runs", async () => {
    const dir = tempDir();
    const pki = makePki(dir);
    const ca = join(dir, "ca-copy.pem");
    copyFileSync(pki.ca, ca);
    // A plain listener that is not a broker: every attempt fails, so the agent reconnects.
    const { up, outbox } = uplinkFor(dir, { url: "mqtts://127.0.0.1:1", tls: { ca } });
    rmSync(ca);
    await until(() => /uplink\.tls\.ca: cannot read .*ca-copy\.pem: ENOENT/.test(up.stats().lastError ?? ""), "the unreadable file named");
    expect(up.stats().state).not.toBe("online");
    expect(outbox.depth).toBe(1);
  });

  it("says which TLS file it cannot read, as a config error", () => {
    const dir = tempDir();
    expect(() => uplinkFor(dir, { url: "mqtts://127.0.0.1:1", tls: { ca: "/nonexistent/ca.pem" } })).toThrow(
      "uplink.tls.ca: cannot read /nonexistent/ca.pem: ENOENT",
    );
  });
});
