/**
 * Firmware updates of the config's bridged boards (`updates:`, docs/firmware-updates.md): the
 * Updater with its job file and image store beside the outbox, the `update` action added to each
 * board's command target, its progress as events (`<board>/update`), and the control socket's
 * `image` (stage an image, in pieces) and `updates` (jobs, a board's slots) requests.
 * Loaded only for a config with `updates:`.
 */
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { z } from "zod";
import type { BoardSession } from "../../bridge/board-session.js";
import { parseImageState, SMP_GROUP, SMP_IMAGE } from "../../bridge/smp.js";
import type { Actuator } from "../../model/command.js";
import { ed25519PublicKey } from "../../model/ed25519.js";
import type { Logger } from "../../model/logger.js";
import type { UpdatesRequest } from "../../ops/control-socket.js";
import type { Reading } from "../../model/reading.js";
import type { Source } from "../../sources/source.js";
import { sha256 } from "../../update/image.js";
import { ImageStore } from "../../update/image-store.js";
import { JobStore } from "../../update/jobs.js";
import { ManifestError, parseManifest } from "../../update/manifest.js";
import { Updater } from "../../update/updater.js";
import type { Config } from "../config.js";
import type { Part } from "../parts.js";

const HEX64 = /^[0-9a-f]{64}$/;

export interface UpdatesHandle {
  part: Part;
  updater: Updater;
  /** The board actuators with `update` added. */
  wrap(actuators: readonly Actuator[]): Actuator[];
  control(req: UpdatesRequest): Promise<unknown>;
}

export function createUpdates(cfg: Config, sources: ReadonlyArray<{ source: Source; type: string }>, store: (events: Reading[]) => void, log: Logger): UpdatesHandle {
  const u = cfg.updates!;
  const boards = new Map<string, BoardSession>();
  const bootloaders = new Map<string, string>();
  for (const s of sources) {
    if (s.type !== "bridge") continue;
    const board = (s.source as unknown as { board?: BoardSession }).board;
    if (board) boards.set(s.source.name, board);
  }
  for (const sc of cfg.sources) if (sc.type === "bridge" && "bootloader" in sc && typeof sc.bootloader === "string") bootloaders.set(sc.name, sc.bootloader);
  const dir = cfg.store.path === ":memory:" ? join(tmpdir(), `edge-agent-updates-${process.pid}`) : dirname(cfg.store.path);
  const jobsPath = cfg.store.path === ":memory:" ? ":memory:" : join(dir, "updates.db");
  const images = new ImageStore(join(dir, "images"), u.images_max);
  const staging = join(dir, "images", "staging");
  const keys = new Map(u.keys.map((k) => [k.name, ed25519PublicKey(k.key)] as const));
  const ulog = log.child({ part: "updates" });
  const updater = new Updater(
    new JobStore(jobsPath),
    images,
    (name) => boards.get(name),
    {
      keys,
      allowDowngrade: u.allow_downgrade,
      health: { heartbeats: u.health.heartbeats, windowMs: u.health.window, bootTimeoutMs: u.health.boot_timeout },
      offlineTimeoutMs: u.offline_timeout,
      pipeline: 4,
      requestTimeoutMs: 5000,
      maxRetries: 20,
      bootloaderOf: (name) => bootloaders.get(name) ?? null,
      download: { hosts: u.download.hosts, ca: u.download.ca ? readFileSync(u.download.ca, "utf8") : null, idleTimeoutMs: u.download.timeout, attempts: 3 },
    },
    ulog,
  );
  updater.onEvent((ev) => store([{ point: `${ev.board}/update`, ts: Date.now(), value: JSON.stringify(ev), quality: "good" }]));

  /** The image the command names: staged by `edge-agent bridge update`, by its SHA-256. */
  const stagedImage = (sha: string): Buffer => {
    for (const path of [images.pathOf(sha), join(staging, `${sha}.bin`)]) {
      try {
        const b = readFileSync(path);
        if (sha256(b).toString("hex") === sha) return b;
      } catch {
        // not there
      }
    }
    throw new Error(`no image with SHA-256 ${sha.slice(0, 16)}… on this gateway (stage it with \`edge-agent bridge update\`, which sends it first)`);
  };

  const updateArgs = (board: string) =>
    z
      .strictObject({
        manifest: z.unknown(),
        image: imageArg,
      })
      .superRefine((a, ctx) => {
        // The whole check before anything runs: a refusal is `rejected`, the board untouched.
        try {
          const m = parseManifest(JSON.stringify(a.manifest ?? null));
          updater.check({ board, manifest: m, ...sourceOf(a.image) });
        } catch (err) {
          ctx.addIssue({ code: "custom", message: (err as Error).message, path: err instanceof ManifestError ? ["manifest"] : [] });
        }
      });

  const imageArg = z.union([
    z.strictObject({ sha256: z.string().regex(HEX64, { error: "expected the image's SHA-256 (64 lower-case hex digits)" }) }),
    z.strictObject({ url: z.string().min(1).max(2048) }),
  ]);
  const sourceOf = (image: { sha256: string } | { url: string }) => ("url" in image ? { url: image.url } : { image: stagedImage(image.sha256) });

  /** The gateway's `updates` target: `rollout` — one image to several boards, one after the other. */
  const rolloutArgs = z
    .strictObject({ boards: z.array(z.string().min(1).max(64)).min(1).max(100), manifest: z.unknown(), image: imageArg })
    .superRefine((a, ctx) => {
      try {
        updater.checkRollout({ boards: a.boards, manifest: parseManifest(JSON.stringify(a.manifest ?? null)), ...sourceOf(a.image) });
      } catch (err) {
        ctx.addIssue({ code: "custom", message: (err as Error).message, path: err instanceof ManifestError ? ["manifest"] : [] });
      }
    });
  const rolloutTarget: Actuator = {
    name: "updates",
    kind: "firmware updates",
    actions: new Map([["rollout", rolloutArgs]]),
    state: () => ({ unfinished: updater.jobs(100).filter((j) => !["confirmed", "rolled-back", "failed"].includes(j.state)).length }),
    async execute(_action, args, now, id) {
      const a = args as { boards: string[]; manifest: unknown; image: { sha256: string } | { url: string } };
      const jobs = updater.submitRollout({ id: id ?? `rollout-${now}`, boards: a.boards, manifest: parseManifest(JSON.stringify(a.manifest)), ...sourceOf(a.image) });
      if ("sha256" in a.image) rmSync(join(staging, `${a.image.sha256}.bin`), { force: true });
      return { rollout: id ?? null, jobs: jobs.map((j) => ({ job: j.id, board: j.board, state: j.state })) };
    },
  };

  const wrap = (actuators: readonly Actuator[]): Actuator[] => {
    const out = actuators.map((a) => {
      if (!boards.has(a.name)) return a;
      const schema = updateArgs(a.name);
      const actions = new Map(a.actions);
      actions.set("update", schema);
      return {
        name: a.name,
        kind: a.kind,
        actions,
        state: () => a.state(),
        async execute(action, args, now, id) {
          if (action !== "update") return a.execute(action, args, now, id);
          const { manifest, image } = args as { manifest: unknown; image: { sha256: string } | { url: string } };
          const m = parseManifest(JSON.stringify(manifest));
          const job = updater.submit({ id: id ?? `update-${now}`, board: a.name, manifest: m, ...sourceOf(image) });
          if ("sha256" in image) rmSync(join(staging, `${image.sha256}.bin`), { force: true });
          return { job: job.id, state: job.state, version: job.manifest.image.version };
        },
      } satisfies Actuator;
    });
    if (out.some((a) => a.name === rolloutTarget.name)) log.warn(`a target is named '${rolloutTarget.name}': firmware rollouts (action rollout) are not available under that name`);
    else out.push(rolloutTarget);
    return out;
  };

  const control = async (req: UpdatesRequest): Promise<unknown> => {
    if (req.op === "image") {
      // A piece of an image, written at its offset in the staging file; the last one checks the hash.
      const path = join(staging, `${req.sha256}.bin`);
      mkdirSync(staging, { recursive: true });
      let have = 0;
      try {
        have = statSync(path).size;
      } catch {
        // new
      }
      if (req.offset !== have) return { offset: have };
      const data = Buffer.from(req.data, "base64");
      if (req.offset + data.length > req.size) throw new Error(`image piece past the image's ${req.size} bytes`);
      writeFileSync(path, data, { flag: req.offset === 0 ? "w" : "a" });
      const offset = req.offset + data.length;
      if (offset === req.size && sha256(readFileSync(path)).toString("hex") !== req.sha256) {
        rmSync(path, { force: true });
        throw new Error("the staged image's SHA-256 differs from the one announced (damaged on the way)");
      }
      return { offset };
    }
    if (req.job) return updater.job(req.job);
    if (req.slots) {
      const name = req.board ?? "";
      const board = boards.get(name);
      if (!board) throw new Error(`no board named '${name}' (boards: ${[...boards.keys()].join(", ") || "none"})`);
      if (!board.online) throw new Error(`board '${name}' is ${board.state}: its slots cannot be read now`);
      const body = await board.smp.request({ group: SMP_GROUP.IMAGE, id: SMP_IMAGE.STATE, write: false, body: {}, timeoutMs: 5000 });
      const r = parseImageState(body);
      if (!r.ok) throw new Error(`the board's image state: ${r.error}`);
      return { board: name, hello: board.helloInfo(), slots: r.slots, jobs: updater.jobs(10, name) };
    }
    return updater.jobs(50, req.board);
  };

  const part: Part = {
    name: "updates",
    start: () => updater.start(),
    stop: () => updater.stop(),
  };
  return { part, updater, wrap, control };
}
