/**
 * `edge-agent bridge update|images|keygen|sign`: firmware updates of bridged boards
 * (docs/firmware-updates.md). `update` sends the image to the running agent in pieces, then the
 * `update` command on the board's target (the same path and checks as the platform's), and
 * follows the job with a progress bar until it is confirmed, rolled back or failed; several boards
 * are updated one after the other, stopping at the first that does not confirm. `images` shows a
 * board's slots. `keygen` and `sign` are the firmware engineer's: a key pair, a signed manifest.
 */
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import cliProgress from "cli-progress";
import type { Command } from "commander";
import { UserError } from "../model/errors.js";
import { IMAGE_PIECE } from "../ops/control-socket.js";
import { readImageHeader, sha256 } from "../update/image.js";
import type { Job } from "../update/jobs.js";
import { type Manifest, ManifestError, parseManifest, signManifest } from "../update/manifest.js";
import { askRunningAgent } from "./agent-socket.js";
import { formatAge, printJson, table } from "./output.js";

const FINISHED = new Set(["confirmed", "rolled-back", "failed"]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UserError(`${what} ${path}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`);
  }
}

/** Sends the image to the agent's staging area in pieces (resuming where the agent says it is). */
async function stage(config: string, image: Buffer, onProgress: (sent: number) => void): Promise<string> {
  const sha = sha256(image).toString("hex");
  let offset = 0;
  for (let guard = 0; offset < image.length && guard < 100_000; guard++) {
    const data = image.subarray(offset, offset + IMAGE_PIECE).toString("base64");
    const r = (await askRunningAgent(config, { op: "image", sha256: sha, size: image.length, offset, data })) as { offset: number };
    offset = r.offset;
    onProgress(offset);
  }
  return sha;
}

async function updateOne(config: string, board: string, source: { image: Buffer } | { url: string }, manifest: Manifest, o: { id?: string; wait: boolean; json?: boolean }): Promise<Job | null> {
  const size = manifest.image.size;
  const bar = !o.json && process.stderr.isTTY ? new cliProgress.SingleBar({ format: `${board} [{bar}] {percentage}% · {phase}`, stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic) : null;
  bar?.start(size * 2, 0, { phase: "url" in source ? "the gateway downloads it" : "sending to the gateway" });
  try {
    const image = "url" in source ? { url: source.url } : { sha256: await stage(config, source.image, (n) => bar?.update(n, { phase: "sending to the gateway" })) };
    const id = o.id ?? `cli-update-${randomUUID()}`;
    const payload = JSON.stringify({ id, action: "update", args: { manifest, image } });
    const result = (await askRunningAgent(config, { op: "command", target: board, payload })) as { status: string; reason?: string };
    if (result.status !== "ok") {
      bar?.stop();
      throw new UserError(`${board}: update ${result.status} — ${result.reason ?? "no reason given"}`, result.status === "rejected" ? 2 : 1);
    }
    if (!o.wait) return (await askRunningAgent(config, { op: "updates", job: id })) as Job;
    for (;;) {
      const job = (await askRunningAgent(config, { op: "updates", job: id })) as Job | null;
      if (!job) throw new UserError(`the agent has no job '${id}'`);
      const phase =
        job.state === "uploading" ? `uploading to the board (${job.offset} of ${size} bytes)` : job.state === "testing" ? "test boot and health check" : job.state === "downloading" ? "the gateway downloads it" : job.state;
      bar?.update(job.state === "downloading" ? 0 : size + (job.state === "uploading" ? job.offset : job.state === "verified" ? 0 : size), { phase });
      if (FINISHED.has(job.state)) {
        bar?.stop();
        return job;
      }
      await sleep(500);
    }
  } finally {
    bar?.stop();
  }
}

async function rollout(config: string, boards: string[], source: { image: Buffer } | { url: string }, manifest: Manifest, o: { id?: string; wait: boolean; json?: boolean }): Promise<Job[]> {
  const image = "url" in source ? { url: source.url } : { sha256: await stage(config, source.image, () => {}) };
  const id = o.id ?? `cli-rollout-${randomUUID()}`;
  const payload = JSON.stringify({ id, action: "rollout", args: { boards, manifest, image } });
  const result = (await askRunningAgent(config, { op: "command", target: "updates", payload })) as { status: string; reason?: string };
  if (result.status !== "ok") throw new UserError(`rollout ${result.status} — ${result.reason ?? "no reason given"}`, result.status === "rejected" ? 2 : 1);
  if (!o.json) process.stdout.write(`rollout ${id}: ${boards.join(" → ")}, one at a time; stops at the first that does not confirm\n`);
  const said = new Set<string>();
  for (;;) {
    const jobs = await Promise.all(boards.map(async (b) => (await askRunningAgent(config, { op: "updates", job: `${id}/${b}` })) as Job));
    for (const j of jobs) {
      if (FINISHED.has(j.state) && !said.has(j.id)) {
        said.add(j.id);
        if (!o.json) process.stdout.write(`${describe(j)}\n`);
      }
    }
    if (!o.wait || jobs.every((j) => FINISHED.has(j.state))) return jobs;
    await sleep(500);
  }
}

function describe(job: Job): string {
  const v = job.manifest.image.version;
  if (job.state === "confirmed") return `${job.board}: ${v} confirmed${job.observed ? ` (${job.observed})` : ""}`;
  if (job.state === "rolled-back") return `${job.board}: ROLLED BACK to ${job.fromVersion || "the previous image"} — ${job.reason}${job.observed ? ` (${job.observed})` : ""}`;
  if (job.state === "failed") return `${job.board}: FAILED — ${job.reason}`;
  return `${job.board}: ${job.state} (${job.offset} of ${job.manifest.image.size} bytes) — follow it with \`edge-agent bridge images ${job.board}\``;
}

export function registerBridgeUpdate(bridge: Command): void {
  bridge
    .command("update")
    .description("update boards' firmware: signed image → upload → test boot → health check → confirmed, or rolled back (one board after the other; stops at the first that does not confirm)")
    .argument("<boards...>", "the boards' names in the config")
    .option("--image <file>", "the firmware image (an MCUboot image for Zephyr boards), sent to the gateway")
    .option("--url <url>", "or: where the gateway downloads it (https, a host in updates.download.hosts)")
    .requiredOption("--manifest <file>", "its signed manifest (edge-agent bridge sign)")
    .requiredOption("-c, --config <file>", "the agent's configuration file")
    .option("--id <id>", "the update's (or, for several boards, the rollout's) id: the same id again is the same update")
    .option("--no-wait", "return once the agent accepted the update")
    .option("--json", "print the jobs as JSON")
    .addHelpText(
      "after",
      `
The agent checks the manifest's signature (updates.keys), the image's size, SHA-256 and version,
the board's hardware and that it is no downgrade before sending a byte to the board. The board
keeps running its image until the new one passed the health check; a failed update leaves it on
the old image ("rolled back"). Exit codes: 0 every board confirmed, 1 one failed or rolled back,
2 refused.`,
    )
    .action(async (boards: string[], o: { image?: string; url?: string; manifest: string; config: string; id?: string; wait: boolean; json?: boolean }) => {
      if ((o.image === undefined) === (o.url === undefined)) throw new UserError("give the image: --image FILE (sent to the gateway) or --url URL (the gateway downloads it)", 2);
      const source = o.url !== undefined ? { url: o.url } : { image: readFile(o.image!, "--image") };
      const text = readFile(o.manifest, "--manifest");
      let manifest;
      try {
        manifest = parseManifest(text);
      } catch (err) {
        throw new UserError(`--manifest ${o.manifest}: ${(err as ManifestError).message}`, 2);
      }
      if (boards.length === 1) {
        const job = await updateOne(o.config, boards[0]!, source, manifest, o);
        if (o.json) printJson(job ? [job] : []);
        else if (job) process.stdout.write(`${describe(job)}\n`);
        if (o.wait && job && job.state !== "confirmed") process.exitCode = 1;
        return;
      }
      // Several boards: one staged rollout in the agent (it goes on if this command is interrupted).
      const jobs = await rollout(o.config, boards, source, manifest, o);
      if (o.json) printJson(jobs);
      if (o.wait && jobs.some((j) => j.state !== "confirmed")) process.exitCode = 1;
    });

  bridge
    .command("images")
    .description("a board's image slots (version, hash, active/confirmed/pending) and its last updates")
    .argument("<board>", "the board's name in the config")
    .requiredOption("-c, --config <file>", "the agent's configuration file")
    .option("--json", "print as JSON")
    .action(async (board: string, o: { config: string; json?: boolean }) => {
      const r = (await askRunningAgent(o.config, { op: "updates", board, slots: true })) as {
        hello: { firmware: string; imageHash: string } | null;
        slots: Array<{ slot: number; version: string; hash: string; active: boolean; confirmed: boolean; pending: boolean; permanent: boolean; bootable: boolean }>;
        jobs: Job[];
      };
      if (o.json) return printJson(r);
      const rows: Array<[string, string]> = r.slots.map((s) => [
        `slot ${s.slot}`,
        `${s.version} · ${s.hash.slice(0, 16)}… · ${[s.active && "active", s.confirmed && "confirmed", s.pending && (s.permanent ? "pending (permanent)" : "pending (test)"), !s.bootable && "not bootable"].filter(Boolean).join(", ") || "inactive"}`,
      ]);
      const now = Date.now();
      for (const j of r.jobs) rows.push([`update ${j.id}`, `${j.manifest.image.version} · ${j.state}${j.reason ? ` — ${j.reason}` : ""} · ${formatAge(now - j.updated)} ago`]);
      process.stdout.write(`${table(rows)}\n`);
    });

  bridge
    .command("keygen")
    .description("an ed25519 key pair for signing firmware manifests: the private key to a file (keep it off the gateways), the public key printed for updates.keys")
    .requiredOption("--out <file>", "where to write the private key (PEM, mode 600)")
    .option("--name <name>", "the key's name in manifests and in updates.keys", "release")
    .action((o: { out: string; name: string }) => {
      const { privateKey, publicKey } = generateKeyPairSync("ed25519");
      writeFileSync(o.out, privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600, flag: "wx" });
      const raw = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url").toString("base64");
      process.stdout.write(`private key: ${o.out}\nfor the gateway's config:\nupdates:\n  keys:\n    - { name: ${o.name}, key: "${raw}" }\n`);
    });

  bridge
    .command("sign")
    .description("write the signed manifest of a firmware image (SHA-256, size, version, hardware, minimum bootloader)")
    .requiredOption("--key <file>", "the private key (edge-agent bridge keygen)")
    .option("--key-name <name>", "the key's name in updates.keys", "release")
    .requiredOption("--image <file>", "the firmware image")
    .option("--version <version>", "the image's version (default: from its MCUboot header)")
    .requiredOption("--hardware <id>", "the boards' hardware string, as their hello says it (edge-agent bridge list)")
    .option("--min-bootloader <version>", "the oldest bootloader the image runs with")
    .option("--image-hash <hex>", "the hash the board reports for the image once it runs it, if not its SHA-256 (MCUboot: the image's hash TLV)")
    .requiredOption("--out <file>", "where to write the manifest (JSON)")
    .action((o: { key: string; keyName: string; image: string; version?: string; hardware: string; minBootloader?: string; imageHash?: string; out: string }) => {
      const image = readFile(o.image, "--image");
      const version = o.version ?? readImageHeader(image)?.version;
      if (!version) throw new UserError("--version: the image has no MCUboot header to read it from; give it");
      const pem = readFile(o.key, "--key").toString("utf8");
      let m;
      try {
        m = signManifest(image, { version, hardware: o.hardware, ...(o.minBootloader ? { minBootloader: o.minBootloader } : {}), ...(o.imageHash ? { imageHash: o.imageHash } : {}) }, { name: o.keyName, privatePem: pem });
      } catch (err) {
        throw new UserError((err as Error).message);
      }
      writeFileSync(o.out, `${JSON.stringify(m, null, 2)}\n`);
      process.stdout.write(`${o.out}: ${m.image.version} for ${m.image.hardware}, ${m.image.size} bytes, sha256 ${m.image.sha256.slice(0, 16)}…, signed by '${m.key}'\n`);
    });

}
