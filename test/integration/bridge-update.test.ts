/**
 * Firmware updates with real processes: `edge-agent run` owns one end of a socat pty pair, a
 * board with two image slots and a bootloader kept in a file the other — the C reference firmware
 * (`ebp-host --flash FILE`, built with gcc) and the board simulator (`edge-agent simulate board
 * --flash FILE`), the same tests for both — and the technician's `edge-agent bridge update` drives it. Kills are real
 * SIGKILLs: the gateway's in the middle of the upload and of the health check (its job resumes
 * from its SQLite file), the board's in the middle of the upload (a power cut: its flash file is
 * what comes back, and the upload resumes from the offset it reports).
 */
import { execFileSync, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, readSync, writeFileSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildTestImage, type Behaviour } from "../../src/update/image.js";
import { signManifest } from "../../src/update/manifest.js";
import { makePki } from "../helpers/certs.js";
import { agentReady, CLI, exited, runCli, startCli } from "../helpers/cli.js";
import { PtyPair } from "../helpers/socat.js";
import { tempDir } from "../helpers/tmp.js";
import { WaitAborted, waitFor } from "../helpers/wait.js";

const { privateKey, publicKey } = generateKeyPairSync("ed25519");
const PEM = privateKey.export({ format: "pem", type: "pkcs8" }).toString();
const PUBLIC = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url").toString("base64");
const FIRMWARE = resolve("drivers/bridge/firmware");
const HOST = join(FIRMWARE, "build/ebp-host");

/** A board with two slots: how to start it, where its upload stands in its flash file, what its lines say. */
interface BoardKind {
  name: string;
  args(port: string, flash: string): { cmd: string; args: string[] };
  started: RegExp;
  /** The offset of the upload in progress, from the flash file; null when none. */
  uploadOff(flash: string): number | null;
  testBoot(version: string): RegExp;
  reverted: RegExp;
}

const KINDS: BoardKind[] = [
  {
    name: "the C reference firmware (ebp-host)",
    args: (port, flash) => ({ cmd: HOST, args: ["--port", port, "--id", "240ac45f9e10", "--interval-ms", "200", "--max-frame", "1024", "--flash", flash] }),
    started: /ebp-host: start /,
    uploadOff(flash) {
      // host/flash.h: magic[8], len[2] (u32), pending, testing, has_upload, pad, upload_len, upload_off
      const b = Buffer.alloc(28);
      try {
        const fd = openSync(flash, "r");
        readSync(fd, b, 0, 28, 0);
        closeSync(fd);
      } catch {
        return null;
      }
      return b[18] ? b.readUInt32LE(24) : null;
    },
    testBoot: (v) => new RegExp(`boot image=test-swap version=${v.replace(/\./g, "\\.")} `),
    reverted: /boot image=revert /,
  },
  {
    name: "the board simulator (simulate board --flash)",
    args: (port, flash) => ({ cmd: process.execPath, args: [CLI, "simulate", "board", "--port", port, "--id", "240ac45f9e10", "--interval", "200ms", "--max-frame", "1024", "--flash", flash] }),
    started: /board simulator:/,
    uploadOff(flash) {
      try {
        return (JSON.parse(readFileSync(flash, "utf8")) as { upload: { off: number } | null }).upload?.off ?? null;
      } catch {
        return null;
      }
    },
    testBoot: (v) => new RegExp(`running firmware ${v.replace(/\./g, "\\.")} \\(test boot`),
    reverted: /REVERTED/,
  },
];

type Proc = ReturnType<typeof startCli>;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function kill(p: Proc | null, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const done = exited(p);
  p.kill(signal);
  await done;
}

interface Rig {
  dir: string;
  config: string;
  flash: string;
  pty: PtyPair;
  agent: Proc | null;
  board: Proc | null;
  startAgent(): Promise<Proc>;
  startBoard(): Promise<Proc>;
  /** The offset of the board's upload in progress (from its flash file), or null. */
  uploadOff(): number | null;
  image(version: string, size: number, behaviour?: Behaviour): { image: string; manifest: string };
}

async function rig(kind: BoardKind, download?: { ca: string }): Promise<Rig> {
  const dir = tempDir();
  const pty = new PtyPair(dir);
  await pty.plug();
  const config = join(dir, "edge-agent.yaml");
  writeFileSync(
    config,
    `site: s
gateway: g
uplink: { url: "mqtt://127.0.0.1:1" }
store: { path: ./outbox.db }
log: { status_interval: 500ms }
sources:
  - { type: bridge, name: node-1, port: ${pty.a}, heartbeat: 200ms, offline_after: 2s }
updates:
  keys: [{ name: release, key: "${PUBLIC}" }]
  health: { heartbeats: 4, window: 2s, boot_timeout: 30s }
${download ? `  download: { hosts: [127.0.0.1], ca: ${download.ca}, timeout: 2s }\n` : ""}`,
  );
  const r: Rig = {
    dir,
    config,
    flash: join(dir, "board-flash.json"),
    pty,
    agent: null,
    board: null,
    async startAgent() {
      const a = startCli(["run", "-c", config]);
      r.agent = a;
      await agentReady(a, 30_000);
      return a;
    },
    async startBoard() {
      const { cmd, args } = kind.args(pty.b, r.flash);
      const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
      const b = Object.assign(child, { out: () => out });
      r.board = b;
      await waitFor("the board started", () => {
        if (b.exitCode !== null) throw new WaitAborted(b.out());
        return kind.started.test(b.out()) || undefined;
      }, { timeoutMs: 15_000 });
      return b;
    },
    uploadOff: () => kind.uploadOff(r.flash),
    image(version, size, behaviour = "ok") {
      const img = buildTestImage({ version, size, behaviour, seed: size });
      const m = signManifest(img, { version, hardware: "room-node/rev-c" }, { name: "release", privatePem: PEM });
      const image = join(dir, `fw-${version}-${behaviour}.bin`);
      const manifest = join(dir, `fw-${version}-${behaviour}.json`);
      writeFileSync(image, img);
      writeFileSync(manifest, JSON.stringify(m));
      return { image, manifest };
    },
  };
  cleanups.push(async () => {
    await kill(r.agent);
    await kill(r.board);
    await pty.unplug();
  });
  return r;
}

const online = (r: Rig) =>
  waitFor("the board online at the agent", () => {
    const s = runCli(["bridge", "list", "-c", r.config, "--json"], { timeoutMs: 10_000 });
    if (s.code !== 0) return undefined;
    const all = JSON.parse(s.stdout) as Array<{ online: boolean; firmware: string }>;
    return all[0]?.online ? all[0] : undefined;
  }, { timeoutMs: 30_000, everyMs: 300 });

const job = (r: Rig, id: string) => {
  const s = runCli(["bridge", "images", "node-1", "-c", r.config, "--json"], { timeoutMs: 10_000 });
  if (s.code !== 0) return null;
  return (JSON.parse(s.stdout) as { jobs: Array<{ id: string; state: string; offset: number; reason: string }> }).jobs.find((j) => j.id === id) ?? null;
};

beforeAll(() => {
  // The C board: built here if `make -C drivers/bridge/firmware` has not run (gcc, nanopb: .ci/run installs them).
  if (!existsSync(HOST)) execFileSync("make", ["-C", FIRMWARE], { stdio: "ignore" });
});

describe.each(KINDS)("firmware update over a real serial line (pty): $name and the CLI", (kind) => {
  it("updates a board: signed image → upload → test boot → health check → confirmed; `bridge images` shows it", { timeout: 120_000 }, async () => {
    const r = await rig(kind);
    await r.startBoard();
    await r.startAgent();
    expect((await online(r)).firmware).toBe("1.0.0");
    const fw = r.image("1.1.0", 120_000);
    const out = runCli(["bridge", "update", "node-1", "--image", fw.image, "--manifest", fw.manifest, "-c", r.config, "--id", "first"], { timeoutMs: 90_000 });
    expect(out.stdout + out.stderr).toMatch(/node-1: 1\.1\.0 confirmed/);
    expect(out.code).toBe(0);
    const images = runCli(["bridge", "images", "node-1", "-c", r.config]);
    expect(images.stdout).toMatch(/slot 0\s+1\.1\.0 · [0-9a-f]{16}… · active, confirmed/);
    expect(images.stdout).toMatch(/slot 1\s+1\.0\.0/);
    expect(images.stdout).toMatch(/update first\s+1\.1\.0 · confirmed/);
    // (runCli blocked this process: the board's lines are read now.)
    await waitFor("the board's test boot line", () => kind.testBoot("1.1.0").test(r.board!.out()) || undefined, { timeoutMs: 5000 });
    // The same id again is the same update, not a second one.
    const again = runCli(["bridge", "update", "node-1", "--image", fw.image, "--manifest", fw.manifest, "-c", r.config, "--id", "first"], { timeoutMs: 30_000 });
    expect(again.code).toBe(0);
    expect(runCli(["bridge", "images", "node-1", "-c", r.config, "--json"]).stdout.match(/"id": ?"first"/g)?.length).toBe(1);
  });

  it("a crashing image is rolled back: the CLI says so and exits 1, the board runs the old firmware", { timeout: 120_000 }, async () => {
    const r = await rig(kind);
    await r.startBoard();
    await r.startAgent();
    await online(r);
    const fw = r.image("1.2.0", 30_000, "crash");
    const out = runCli(["bridge", "update", "node-1", "--image", fw.image, "--manifest", fw.manifest, "-c", r.config], { timeoutMs: 90_000 });
    expect(out.stdout).toMatch(/node-1: ROLLED BACK to 1\.0\.0/);
    expect(out.code).toBe(1);
    await waitFor("the board's revert line", () => kind.reverted.test(r.board!.out()) || undefined, { timeoutMs: 5000 });
    expect((await online(r)).firmware).toBe("1.0.0");
  });

  it("refuses an unsigned or foreign-signed manifest and a downgrade before a byte reaches the board (exit 2)", { timeout: 60_000 }, async () => {
    const r = await rig(kind);
    await r.startBoard();
    await r.startAgent();
    await online(r);
    const fw = r.image("1.1.0", 10_000);
    const other = generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString();
    const forged = join(r.dir, "forged.json");
    writeFileSync(forged, JSON.stringify(signManifest(readFileSync(fw.image), { version: "1.1.0", hardware: "room-node/rev-c" }, { name: "release", privatePem: other })));
    const bad = runCli(["bridge", "update", "node-1", "--image", fw.image, "--manifest", forged, "-c", r.config], { timeoutMs: 30_000 });
    expect(bad.stderr).toMatch(/rejected — .*signature does not verify/);
    expect(bad.code).toBe(2);
    const old = r.image("0.9.0", 10_000);
    const down = runCli(["bridge", "update", "node-1", "--image", old.image, "--manifest", old.manifest, "-c", r.config], { timeoutMs: 30_000 });
    expect(down.stderr).toMatch(/downgrade/);
    expect(down.code).toBe(2);
    const garbage = join(r.dir, "garbage.json");
    writeFileSync(garbage, '{"format": "edge-agent-manifest/1", "__proto__": {"x": 1}}');
    const g = runCli(["bridge", "update", "node-1", "--image", fw.image, "--manifest", garbage, "-c", r.config], { timeoutMs: 30_000 });
    expect(g.stderr).toMatch(/--manifest .*garbage\.json: manifest __proto__: unknown field/);
    expect(g.code).toBe(2);
    expect(r.uploadOff()).toBeNull();
    await new Promise((res) => setTimeout(res, 200));
    expect(r.board!.out()).not.toMatch(kind.testBoot("1.1.0"));
  });

  it("survives a gateway SIGKILL during the upload and during the health check, and a board power cut during the upload", { timeout: 180_000 }, async () => {
    const r = await rig(kind);
    await r.startBoard();
    await r.startAgent();
    await online(r);
    const fw = r.image("2.0.0", 900_000);
    const cli = startCli(["bridge", "update", "node-1", "--image", fw.image, "--manifest", fw.manifest, "-c", r.config, "--id", "big", "--no-wait"]);
    expect(await exited(cli)).toBe(0);
    // 1. The gateway dies mid-upload.
    await waitFor("a ninth of the image on the board", () => ((r.uploadOff() ?? 0) > 100_000 ? true : undefined), { timeoutMs: 60_000, everyMs: 5 });
    await kill(r.agent, "SIGKILL");
    const atKill = r.uploadOff()!;
    // The flash is watched from the moment the new gateway starts, not from when it is ready: the
    // board says Hello 3 heartbeats (600 ms) after the gateway went silent, and a gateway whose port
    // is open by then (its start takes 0.5–0.8 s) has the board back at once and the rest of the
    // image on it in ~0.15 s — before its first status line (agentReady), which then came too late
    // to see the upload under way. (Opened later, it hears the next Hello, a second on.)
    const restarted = r.startAgent();
    restarted.catch(() => undefined); // awaited below; an agent that dies ends the wait at once
    const agent = r.agent!;
    let lowest = Infinity;
    // 2. The board loses power mid-upload (after the gateway resumed it: further along than before).
    await waitFor("the upload resumed past where the gateway died", () => {
      if (agent.exitCode !== null || agent.signalCode !== null) throw new WaitAborted(`the gateway exited:\n${agent.out()}`);
      const off = r.uploadOff() ?? 0;
      lowest = Math.min(lowest, off || Infinity);
      // The resumed upload runs at several MB/s over the pty: cut early, so that a busy test
      // process is never so late that the whole image is already there (then the cut would land
      // in the test boot — a different story, rolled back by the bootloader).
      if (off > atKill + 20_000) {
        r.board!.kill("SIGSTOP"); // frozen at once: the offset read next is where the power goes
        return true;
      }
      return undefined;
    }, { timeoutMs: 60_000, everyMs: 2, detail: () => `at the kill ${atKill}, now ${r.uploadOff()}; the gateway:\n${agent.out().slice(-4000)}` });
    expect(lowest).toBeGreaterThanOrEqual(atKill);
    expect(r.uploadOff(), "the board was cut mid-upload").toBeLessThan(900_000);
    await kill(r.board, "SIGKILL");
    const atCut = r.uploadOff()!;
    await restarted;
    await r.startBoard();
    // 3. The health check is under way: the gateway dies again.
    await waitFor("the job in its health check", () => (job(r, "big")?.state === "testing" ? true : undefined), { timeoutMs: 90_000, everyMs: 200 });
    await kill(r.agent, "SIGKILL");
    await r.startAgent();
    const done = await waitFor("the job finished", () => {
      const j = job(r, "big");
      return j && ["confirmed", "rolled-back", "failed"].includes(j.state) ? j : undefined;
    }, { timeoutMs: 90_000, everyMs: 300 });
    expect(done, `cut at ${atCut} of 900000 (killed at ${atKill}); the job: ${JSON.stringify(done)}\nthe gateway:\n${r.agent!.out().slice(-3000)}`).toMatchObject({ state: "confirmed" });
    expect(atCut).toBeGreaterThan(atKill);
    expect((await online(r)).firmware).toBe("2.0.0");
    // The board never went back to zero: one test boot, no second upload from scratch.
    await waitFor("the board's test boot line", () => kind.testBoot("2.0.0").test(r.board!.out()) || undefined, { timeoutMs: 5000 });
  });
});

describe("firmware update from an HTTPS URL (the gateway downloads the image)", () => {
  it("downloads from an allowed host with the private CA, resumes a cut download, and updates the C board; other hosts are refused", { timeout: 120_000 }, async () => {
    const pki = makePki(tempDir());
    const r = await rig(KINDS[0]!, { ca: pki.ca });
    await r.startBoard();
    await r.startAgent();
    await online(r);
    const fw = r.image("1.3.0", 200_000);
    const bytes = readFileSync(fw.image);
    const ranges: Array<string | undefined> = [];
    const server = createHttpsServer({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) }, (req, res) => {
      ranges.push(req.headers.range);
      const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
      const from = m ? Number(m[1]) : 0;
      res.writeHead(m ? 206 : 200, m ? { "content-range": `bytes ${from}-${bytes.length - 1}/${bytes.length}` } : {});
      // The first answer is cut after 64 KiB: the gateway asks for the rest with a Range.
      if (ranges.length === 1) res.write(bytes.subarray(0, 65_536), () => setTimeout(() => res.destroy(), 50));
      else res.end(bytes.subarray(from));
    });
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    cleanups.push(async () => {
      server.closeAllConnections();
      await new Promise((ok) => server.close(ok));
    });
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/fw/room-node-1.3.0.bin`;
    // The test's HTTPS server runs in this process: the CLI must not block it (no runCli here).
    const cli = startCli(["bridge", "update", "node-1", "--url", url, "--manifest", fw.manifest, "-c", r.config, "--id", "from-url"]);
    expect(await exited(cli)).toBe(0);
    expect(cli.out()).toMatch(/node-1: 1\.3\.0 confirmed/);
    expect(ranges[0]).toBeUndefined();
    expect(ranges[1]).toMatch(/^bytes=\d+-$/);
    const other = startCli(["bridge", "update", "node-1", "--url", "https://firmware.example.org/fw.bin", "--manifest", fw.manifest, "-c", r.config]);
    expect(await exited(other)).toBe(2);
    expect(other.out()).toMatch(/rejected — .*'firmware\.example\.org' is not in updates\.download\.hosts/);
    const plain = startCli(["bridge", "update", "node-1", "--url", url.replace("https:", "http:"), "--manifest", fw.manifest, "-c", r.config]);
    expect(await exited(plain)).toBe(2);
    expect(plain.out()).toMatch(/only https/);
  });
});

describe("a staged rollout from the CLI", () => {
  it("`bridge update a b` updates two C boards one after the other through the agent's rollout", { timeout: 120_000 }, async () => {
    const dir = tempDir();
    const ptys = [new PtyPair(join(dir, "a")), new PtyPair(join(dir, "b"))];
    const { mkdirSync } = await import("node:fs");
    for (const [i, p] of ptys.entries()) {
      mkdirSync(join(dir, i === 0 ? "a" : "b"), { recursive: true });
      await p.plug();
    }
    const boards: Proc[] = [];
    cleanups.push(async () => {
      for (const b of boards) await kill(b);
      for (const p of ptys) await p.unplug();
    });
    for (const [i, p] of ptys.entries()) {
      const child = spawn(HOST, ["--port", p.b, "--id", `240ac45f9e1${i}`, "--interval-ms", "200", "--max-frame", "1024", "--flash", join(dir, `flash-${i}.bin`)], { stdio: ["ignore", "ignore", "pipe"] });
      let out = "";
      child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
      boards.push(Object.assign(child, { out: () => out }));
    }
    const config = join(dir, "edge-agent.yaml");
    writeFileSync(
      config,
      `site: s
gateway: g
uplink: { url: "mqtt://127.0.0.1:1" }
store: { path: ./outbox.db }
log: { status_interval: 500ms }
sources:
  - { type: bridge, name: node-a, port: ${ptys[0]!.a}, heartbeat: 200ms, offline_after: 2s }
  - { type: bridge, name: node-b, port: ${ptys[1]!.a}, heartbeat: 200ms, offline_after: 2s }
updates:
  keys: [{ name: release, key: "${PUBLIC}" }]
  health: { heartbeats: 4, window: 2s, boot_timeout: 30s }
`,
    );
    const agent = startCli(["run", "-c", config]);
    cleanups.push(() => kill(agent));
    await agentReady(agent, 30_000);
    await waitFor("both boards online", () => {
      const s = runCli(["bridge", "list", "-c", config, "--json"], { timeoutMs: 10_000 });
      return s.code === 0 && (JSON.parse(s.stdout) as Array<{ online: boolean }>).filter((b) => b.online).length === 2 ? true : undefined;
    }, { timeoutMs: 30_000, everyMs: 300 });
    const img = buildTestImage({ version: "1.4.0", size: 60_000 });
    writeFileSync(join(dir, "fw.bin"), img);
    writeFileSync(join(dir, "fw.json"), JSON.stringify(signManifest(img, { version: "1.4.0", hardware: "room-node/rev-c" }, { name: "release", privatePem: PEM })));
    const out = runCli(["bridge", "update", "node-a", "node-b", "--image", join(dir, "fw.bin"), "--manifest", join(dir, "fw.json"), "-c", config, "--id", "wave-1"], { timeoutMs: 90_000 });
    expect(out.stdout).toMatch(/rollout wave-1: node-a → node-b/);
    expect(out.stdout).toMatch(/node-a: 1\.4\.0 confirmed[\s\S]*node-b: 1\.4\.0 confirmed/);
    expect(out.code).toBe(0);
    // One after the other: b's test boot came after a's confirm.
    const jobs = JSON.parse(runCli(["bridge", "images", "node-b", "-c", config, "--json"]).stdout) as { jobs: Array<{ id: string; created: number; updated: number }> };
    const a = JSON.parse(runCli(["bridge", "images", "node-a", "-c", config, "--json"]).stdout) as { jobs: Array<{ id: string; updated: number }> };
    expect(jobs.jobs[0]!.id).toBe("wave-1/node-b");
    expect(a.jobs[0]!.updated).toBeLessThanOrEqual(jobs.jobs[0]!.updated);
    await waitFor("b's test boot line", () => /boot image=test-swap version=1\.4\.0/.test(boards[1]!.out()) || undefined, { timeoutMs: 5000 });
  });
});
