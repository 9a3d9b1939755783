/**
 * Firmware images over HTTPS (src/update/download.ts) against a real TLS server on loopback with
 * a private CA: a whole download, a resume with a Range request after the server cut the
 * connection, a server that ignores ranges, one that hangs, one that sends more than the
 * manifest's size, and URLs refused before any connection (scheme, host, credentials).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { download, DownloadError, refuseUrl } from "../../src/update/download.js";
import { makePki } from "../helpers/certs.js";
import { tempDir } from "../helpers/tmp.js";

// The PKI is read into memory at once: tempDir()'s directories go after each test.
const pki = makePki(tempDir());
const CA = readFileSync(pki.ca, "utf8");
const SERVER = { cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) };
const IMAGE = Buffer.alloc(300_000, 0);
for (let i = 0; i < IMAGE.length; i++) IMAGE[i] = (i * 7 + (i >> 8)) & 0xff;

type Handler = (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse, n: number) => void;
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function serve(handler: Handler): Promise<{ url: string; ranges: Array<string | undefined> }> {
  const ranges: Array<string | undefined> = [];
  let n = 0;
  const server = createServer(SERVER, (req, res) => {
    ranges.push(req.headers.range);
    handler(req, res, n++);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/fw/room-node-1.5.0.bin`, ranges };
}

/** Serves IMAGE, honouring `Range: bytes=N-`. */
function sendFrom(req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse, cutAfter?: number): void {
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
  const from = m ? Number(m[1]) : 0;
  const body = IMAGE.subarray(from);
  res.writeHead(m ? 206 : 200, { "content-length": body.length, ...(m ? { "content-range": `bytes ${from}-${IMAGE.length - 1}/${IMAGE.length}` } : {}) });
  if (cutAfter === undefined) return void res.end(body);
  res.write(body.subarray(0, cutAfter), () => setTimeout(() => res.destroy(), 50));
}

const settings = { hosts: ["127.0.0.1"], ca: CA, idleTimeoutMs: 500, attempts: 2 };
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("firmware images over HTTPS", () => {
  it("downloads with the private CA", async () => {
    const s = await serve((req, res) => sendFrom(req, res));
    const got = await download(s.url, join(tempDir(), "a.download"), IMAGE.length, settings, new AbortController().signal);
    expect(sha(got)).toBe(sha(IMAGE));
    expect(s.ranges).toEqual([undefined]);
  });

  it("resumes with a Range request after the server cut the connection, and restarts when a server ignores ranges", async () => {
    const s = await serve((req, res, n) => sendFrom(req, res, n === 0 ? 100_000 : undefined));
    const progress: number[] = [];
    const got = await download(s.url, join(tempDir(), "b.download"), IMAGE.length, settings, new AbortController().signal, (b) => progress.push(b));
    expect(sha(got)).toBe(sha(IMAGE));
    expect(s.ranges[0]).toBeUndefined();
    expect(s.ranges[1]).toMatch(/^bytes=\d+-$/);
    expect(Number(/\d+/.exec(s.ranges[1]!)![0])).toBeGreaterThanOrEqual(100_000);
    // A server that answers a range with the whole file (200): the file starts over, still right.
    const t = await serve((req, res, n) => (n === 0 ? sendFrom(req, res, 50_000) : void res.writeHead(200, { "content-length": IMAGE.length }).end(IMAGE)));
    const again = await download(t.url, join(tempDir(), "c.download"), IMAGE.length, settings, new AbortController().signal);
    expect(sha(again)).toBe(sha(IMAGE));
  });

  it("a server that hangs, one that sends too much, and HTTP errors end with a reason", async () => {
    const hang = await serve((_req, res) => {
      res.writeHead(200, { "content-length": IMAGE.length });
      res.write(IMAGE.subarray(0, 10)); // then nothing
    });
    await expect(download(hang.url, join(tempDir(), "d.download"), IMAGE.length, settings, new AbortController().signal)).rejects.toThrow(/failed 2 times without progress: no data from 127\.0\.0\.1:\d+ for 1 s/);
    const more = await serve((_req, res) => void res.writeHead(200).end(Buffer.concat([IMAGE, Buffer.alloc(10)])));
    await expect(download(more.url, join(tempDir(), "e.download"), IMAGE.length, settings, new AbortController().signal)).rejects.toThrow(/more than the manifest's 300000 bytes/);
    const missing = await serve((_req, res) => void res.writeHead(404).end("no"));
    await expect(download(missing.url, join(tempDir(), "f.download"), IMAGE.length, settings, new AbortController().signal)).rejects.toThrow(/HTTP 404/);
    // Without the private CA the server's certificate is not trusted.
    const ok = await serve((req, res) => sendFrom(req, res));
    await expect(download(ok.url, join(tempDir(), "g.download"), IMAGE.length, { ...settings, ca: null }, new AbortController().signal)).rejects.toThrow(DownloadError);
  });

  it("refuses URLs before connecting: other schemes, hosts not allowed, credentials, garbage", () => {
    const hosts = ["firmware.example.org", "127.0.0.1"];
    expect(refuseUrl("https://firmware.example.org/a.bin", hosts)).toBeNull();
    expect(refuseUrl("http://firmware.example.org/a.bin", hosts)).toMatch(/only https/);
    expect(refuseUrl("https://evil.example.net/a.bin", hosts)).toMatch(/'evil\.example\.net' is not in updates\.download\.hosts/);
    expect(refuseUrl("https://user:pw@firmware.example.org/a.bin", hosts)).toMatch(/credentials/);
    expect(refuseUrl("file:///etc/passwd", hosts)).toMatch(/only https/);
    expect(refuseUrl("not a url", hosts)).toMatch(/not a URL/);
    expect(refuseUrl("https://firmware.example.org.evil.net/a.bin", hosts)).toMatch(/not in/);
    expect(refuseUrl("https://127.0.0.1/a", [])).toMatch(/none allowed/);
  });
});

describe("an update whose download is not the manifest's image", () => {
  it("ends failed with the reason before the board is asked anything, and keeps no file", async () => {
    const { generateKeyPairSync } = await import("node:crypto");
    const { readdirSync } = await import("node:fs");
    const { buildTestImage } = await import("../../src/update/image.js");
    const { signManifest } = await import("../../src/update/manifest.js");
    const { Updater } = await import("../../src/update/updater.js");
    const { JobStore } = await import("../../src/update/jobs.js");
    const { ImageStore } = await import("../../src/update/image-store.js");
    const { silentLogger } = await import("../../src/ops/logger.js");
    const keys = generateKeyPairSync("ed25519");
    const image = buildTestImage({ version: "2.0.0", size: 50_000 });
    const m = signManifest(image, { version: "2.0.0", hardware: "room-node/rev-c" }, { name: "k", privatePem: keys.privateKey.export({ format: "pem", type: "pkcs8" }).toString() });
    const garbage = Buffer.from(image);
    garbage[20_000] ^= 0xff; // same size, other bytes
    const s = await serve((_req, res) => void res.writeHead(200, { "content-length": garbage.length }).end(garbage));
    let asked = 0;
    const board = {
      name: "node-1",
      online: true,
      helloInfo: () => ({ id: "01020304", hardware: "room-node/rev-c", firmware: "1.0.0", bootId: "1", resetReason: "power-on", protocol: 1, schemaHash: "0x0", schemaOk: true, imageHash: "", management: true }),
      smp: { request: async () => (asked++, new Map()) } as never,
      maxManagementPacket: 1013,
      observe: () => () => {},
    };
    const dir = tempDir();
    const u = new Updater(new JobStore(join(dir, "updates.db")), new ImageStore(join(dir, "images"), 1 << 20), () => board, {
      keys: new Map([["k", keys.publicKey]]),
      allowDowngrade: false,
      health: { heartbeats: 1, windowMs: 1000, bootTimeoutMs: 1000 },
      offlineTimeoutMs: 1000,
      pipeline: 2,
      requestTimeoutMs: 1000,
      maxRetries: 2,
      bootloaderOf: () => null,
      download: settings,
    }, silentLogger());
    await u.start();
    u.submit({ id: "dl", board: "node-1", manifest: m, url: s.url });
    const job = await u.settled("dl");
    await u.stop();
    expect(job).toMatchObject({ state: "failed" });
    expect(job!.reason).toMatch(/the downloaded image does not match its manifest: image SHA-256 .* differs/);
    expect(asked).toBe(0);
    expect(readdirSync(join(dir, "images")).filter((f) => !f.startsWith("."))).toEqual([]);
  });
});
