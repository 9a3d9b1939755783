/**
 * Firmware updates with real processes: `edge-agent run` owns one end of a socat pty pair, the
 * board simulator (`edge-agent simulate board --flash FILE`, two slots and a bootloader kept in a
 * file) the other, and the technician's `edge-agent bridge update` drives it. Kills are real
 * SIGKILLs: the gateway's in the middle of the upload and of the health check (its job resumes
 * from its SQLite file), the board's in the middle of the upload (a power cut: its flash file is
 * what comes back, and the upload resumes from the offset it reports).
 */
import { generateKeyPairSync } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { buildTestImage, type Behaviour } from "../../src/update/image.js";
import { signManifest } from "../../src/update/manifest.js";
import { agentReady, exited, runCli, startCli } from "../helpers/cli.js";
import { PtyPair } from "../helpers/socat.js";
import { tempDir } from "../helpers/tmp.js";
import { WaitAborted, waitFor } from "../helpers/wait.js";

const { privateKey, publicKey } = generateKeyPairSync("ed25519");
const PEM = privateKey.export({ format: "pem", type: "pkcs8" }).toString();
const PUBLIC = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url").toString("base64");

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
  /** The board's flash file as the simulator last wrote it. */
  flashState(): { upload: { off: number } | null; primary: string } | null;
  image(version: string, size: number, behaviour?: Behaviour): { image: string; manifest: string };
}

async function rig(): Promise<Rig> {
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
`,
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
      const b = startCli(["simulate", "board", "--port", pty.b, "--id", "240ac45f9e10", "--interval", "200ms", "--max-frame", "1024", "--flash", r.flash]);
      r.board = b;
      await waitFor("the board simulator started", () => {
        if (b.exitCode !== null) throw new WaitAborted(b.out());
        return /board simulator:/.test(b.out()) || undefined;
      }, { timeoutMs: 15_000 });
      return b;
    },
    flashState() {
      try {
        const j = JSON.parse(readFileSync(r.flash, "utf8")) as { upload: { off: number } | null; primary: string };
        return j;
      } catch {
        return null;
      }
    },
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

describe("firmware update over a real serial line (pty), the board simulator and the CLI", () => {
  it("updates a board: signed image → upload → test boot → health check → confirmed; `bridge images` shows it", { timeout: 120_000 }, async () => {
    const r = await rig();
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
    await waitFor("the board's test boot line", () => /running firmware 1\.1\.0 \(test boot of a new image\)/.test(r.board!.out()) || undefined, { timeoutMs: 5000 });
    // The same id again is the same update, not a second one.
    const again = runCli(["bridge", "update", "node-1", "--image", fw.image, "--manifest", fw.manifest, "-c", r.config, "--id", "first"], { timeoutMs: 30_000 });
    expect(again.code).toBe(0);
    expect(runCli(["bridge", "images", "node-1", "-c", r.config, "--json"]).stdout.match(/"id": ?"first"/g)?.length).toBe(1);
  });

  it("a crashing image is rolled back: the CLI says so and exits 1, the board runs the old firmware", { timeout: 120_000 }, async () => {
    const r = await rig();
    await r.startBoard();
    await r.startAgent();
    await online(r);
    const fw = r.image("1.2.0", 30_000, "crash");
    const out = runCli(["bridge", "update", "node-1", "--image", fw.image, "--manifest", fw.manifest, "-c", r.config], { timeoutMs: 90_000 });
    expect(out.stdout).toMatch(/node-1: ROLLED BACK to 1\.0\.0/);
    expect(out.code).toBe(1);
    await waitFor("the board's revert line", () => /REVERTED/.test(r.board!.out()) || undefined, { timeoutMs: 5000 });
    expect((await online(r)).firmware).toBe("1.0.0");
  });

  it("refuses an unsigned or foreign-signed manifest and a downgrade before a byte reaches the board (exit 2)", { timeout: 60_000 }, async () => {
    const r = await rig();
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
    expect(r.flashState()!.upload).toBeNull();
    await new Promise((res) => setTimeout(res, 200));
    expect(r.board!.out()).not.toMatch(/running firmware 1\.1\.0/);
  });

  it("survives a gateway SIGKILL during the upload and during the health check, and a board power cut during the upload", { timeout: 180_000 }, async () => {
    const r = await rig();
    await r.startBoard();
    await r.startAgent();
    await online(r);
    const fw = r.image("2.0.0", 900_000);
    const cli = startCli(["bridge", "update", "node-1", "--image", fw.image, "--manifest", fw.manifest, "-c", r.config, "--id", "big", "--no-wait"]);
    expect(await exited(cli)).toBe(0);
    // 1. The gateway dies mid-upload.
    await waitFor("a third of the image on the board", () => ((r.flashState()?.upload?.off ?? 0) > 300_000 ? true : undefined), { timeoutMs: 60_000, everyMs: 50 });
    await kill(r.agent, "SIGKILL");
    const atKill = r.flashState()!.upload!.off;
    await r.startAgent();
    let lowest = Infinity;
    // 2. The board loses power mid-upload (after the gateway resumed it: further along than before).
    await waitFor("the upload resumed past where the gateway died", () => {
      const off = r.flashState()?.upload?.off ?? 0;
      lowest = Math.min(lowest, off || Infinity);
      return off > atKill + 100_000 ? true : undefined;
    }, { timeoutMs: 60_000, everyMs: 20 });
    expect(lowest).toBeGreaterThanOrEqual(atKill);
    await kill(r.board, "SIGKILL");
    const atCut = r.flashState()!.upload!.off;
    await r.startBoard();
    // 3. The health check is under way: the gateway dies again.
    await waitFor("the job in its health check", () => (job(r, "big")?.state === "testing" ? true : undefined), { timeoutMs: 90_000, everyMs: 200 });
    await kill(r.agent, "SIGKILL");
    await r.startAgent();
    const done = await waitFor("the job finished", () => {
      const j = job(r, "big");
      return j && ["confirmed", "rolled-back", "failed"].includes(j.state) ? j : undefined;
    }, { timeoutMs: 90_000, everyMs: 300 });
    expect(done).toMatchObject({ state: "confirmed" });
    expect(atCut).toBeGreaterThan(atKill);
    expect((await online(r)).firmware).toBe("2.0.0");
    // The board never went back to zero: one test boot, no second upload from scratch.
    await waitFor("the board's test boot line", () => /running firmware 2\.0\.0 \(test boot/.test(r.board!.out()) || undefined, { timeoutMs: 5000 });
  });
});
