/**
 * Firmware updates of bridged boards (docs/firmware-updates.md): each update is a durable job
 * (jobs.ts) that this part runs to its end, across board resets and gateway restarts.
 *
 *   verified ─ upload (SMP image upload, resumed at the offset the board reports) ─ mark test,
 *   reset ─ testing: the health gate ─ confirmed | rolled-back | failed (reason)
 *
 * The gateway, not the board, decides that a new image is good: after the test boot it waits for
 * a session whose hello carries the new image's hash, then watches for `health.window`: at least
 * `health.heartbeats` heartbeats, telemetry, and no new session (a reset) in between. Only then
 * it confirms the image. Otherwise it resets the board unconfirmed — the bootloader reverts — and
 * reports "rolled back" with what it saw. A board whose bootloader reverted on its own (the new
 * image crashed before the gateway heard it) is reported the same way.
 */
import type { KeyObject } from "node:crypto";
import { mkdirSync, rmSync, statSync } from "node:fs";
import { dirname } from "node:path";
import type { BoardEvent, HelloInfo } from "../bridge/board-session.js";
import { SmpError, type SmpClient, type SmpRequest } from "../bridge/management.js";
import { parseImageState, SMP_GROUP, SMP_IMAGE, SMP_OS, uploadBody, uploadOverhead, type ImageSlot } from "../bridge/smp.js";
import type { Logger } from "../model/logger.js";
import { download, type DownloadSettings, refuseUrl } from "./download.js";
import { sha256 } from "./image.js";
import { ImageStore } from "./image-store.js";
import { FINISHED, type Job, type JobState, JobStore } from "./jobs.js";
import { checkBoard, checkImage, checkSignature, type Manifest, ManifestError, runningHash } from "./manifest.js";

/** What the updater needs of a board (a BoardSession). */
export interface UpdatableBoard {
  readonly name: string;
  readonly online: boolean;
  helloInfo(): HelloInfo | null;
  readonly smp: SmpClient;
  /** Largest SMP packet one frame carries now. */
  readonly maxManagementPacket: number;
  observe(listener: (ev: BoardEvent) => void): () => void;
}

export interface UpdateSettings {
  keys: ReadonlyMap<string, KeyObject>;
  allowDowngrade: boolean;
  health: {
    /** Heartbeats the new image must send within the window. */
    heartbeats: number;
    /** How long the new image is watched, ms. */
    windowMs: number;
    /** How long the board may take to come back after a reset, ms. */
    bootTimeoutMs: number;
  };
  /** How long a job waits for an offline board before it fails, ms. */
  offlineTimeoutMs: number;
  /** Upload requests in flight. */
  pipeline: number;
  /** A request unanswered this long is lost, ms. */
  requestTimeoutMs: number;
  /** Failed upload requests in a row (no progress between) before the job fails. */
  maxRetries: number;
  /** The board's bootloader version, if the config says (SMP does not). */
  bootloaderOf(board: string): string | null;
  /** Images from HTTPS URLs (allowed hosts, CA, timeouts). */
  download: DownloadSettings;
}

export interface UpdateEvent {
  job: string;
  board: string;
  state: JobState;
  /** Bytes the board holds, of `size`. */
  offset: number;
  size: number;
  message: string;
}

export class UpdateRefused extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = "UpdateRefused";
  }
}

class Aborted extends Error {}

const PROGRESS_EVERY_MS = 1000;

export class Updater {
  readonly name = "updates";
  private readonly running = new Map<string, Promise<void>>();
  private readonly abort = new AbortController();
  private readonly listeners = new Set<(ev: UpdateEvent) => void>();
  private started = false;

  constructor(
    private readonly store: JobStore,
    private readonly images: ImageStore,
    private readonly boardOf: (name: string) => UpdatableBoard | undefined,
    private readonly settings: UpdateSettings,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Resumes every unfinished job (a gateway restart), and every rollout where it was. */
  async start(): Promise<void> {
    this.started = true;
    const rollouts = new Set<string>();
    for (const job of this.store.unfinished()) {
      if (job.rollout) rollouts.add(job.rollout);
      if (job.state === "queued") continue;
      this.log.info({ board: job.board, job: job.id, state: job.state, offset: job.offset }, "resuming firmware update");
      this.launch(job);
    }
    for (const r of rollouts) this.advance(r);
  }

  /** Stops the jobs where they are; their state is on disk for the next start. */
  async stop(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled([...this.running.values()]);
    this.store.close();
  }

  onEvent(listener: (ev: UpdateEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  jobs(limit = 20, board?: string): Job[] {
    return this.store.recent(limit, board);
  }

  job(id: string): Job | null {
    return this.store.get(id);
  }

  /**
   * A new update: the manifest and image are checked (signature, image, and the board if it is
   * online) before anything is stored or sent. Idempotent: a job with this id is returned as it is.
   */
  submit(request: { id: string; board: string; manifest: Manifest; image?: Uint8Array; url?: string; rollout?: string }): Job {
    const existing = this.store.get(request.id);
    if (existing) {
      if (existing.board !== request.board || existing.manifest.image.sha256 !== request.manifest.image.sha256) {
        throw new UpdateRefused(`update id '${request.id}' was already used for another board or image`, "duplicate-id");
      }
      return existing;
    }
    const { manifest: m, image, url } = request;
    this.check(request);
    let path = this.images.pathOf(m.image.sha256);
    if (image) {
      try {
        path = this.images.put(image, this.store.imagesInUse());
      } catch (err) {
        throw new UpdateRefused((err as Error).message, "no-room");
      }
    } else if (m.image.size > this.images.maxBytes) {
      throw new UpdateRefused(`image of ${m.image.size} bytes exceeds the image store's limit of ${this.images.maxBytes} bytes (updates.images_max)`, "no-room");
    }
    const now = this.now();
    const job: Job = {
      id: request.id,
      board: request.board,
      state: image ? "verified" : "downloading",
      manifest: m,
      imagePath: path,
      url: image ? "" : (url ?? ""),
      offset: 0,
      fromVersion: "",
      fromHash: "",
      reason: "",
      observed: "",
      rollout: request.rollout ?? "",
      created: now,
      updated: now,
      testStarted: 0,
    };
    this.store.insert(job);
    this.emit(job, image ? `update to ${m.image.version} accepted` : `update to ${m.image.version} accepted; downloading from ${new URL(job.url).host}`);
    if (this.started) this.launch(job);
    return job;
  }

  /**
   * Every check submit() makes, without submitting: the manifest's signature, the image, the
   * board (when it has said hello), and no update in progress on it. Throws UpdateRefused.
   */
  check(request: { board: string; manifest: Manifest; image?: Uint8Array; url?: string }): void {
    const { manifest: m, image, url } = request;
    if (!image === !url) throw new UpdateRefused("an update names its image: staged on the gateway, or an https URL", "image");
    if (url) {
      const refused = refuseUrl(url, this.settings.download.hosts);
      if (refused) throw new UpdateRefused(refused, "url");
    }
    const board = this.boardOf(request.board);
    if (!board) throw new UpdateRefused(`no board named '${request.board}' (bridge sources: see \`edge-agent bridge list\`)`, "unknown-board");
    try {
      checkSignature(m, this.settings.keys);
      if (image) checkImage(m, image);
      const hello = board.helloInfo();
      if (hello) this.checkBoard(m, board, hello);
    } catch (err) {
      if (err instanceof ManifestError) throw new UpdateRefused(err.message, err.code);
      throw err;
    }
    const active = this.store.active(request.board);
    if (active) throw new UpdateRefused(`board '${request.board}' has an update in progress (${active.id}, ${active.state})`, "busy");
  }

  /**
   * A staged rollout: the same image to several boards of this gateway, one at a time, in the
   * order given; the next starts only when the one before is confirmed, and the first that is not
   * stops the rest (they end `failed`, "rollout stopped"). Every board is checked first; one
   * refusal refuses the rollout. Idempotent by id.
   */
  submitRollout(request: { id: string; boards: readonly string[]; manifest: Manifest; image?: Uint8Array; url?: string }): Job[] {
    const existing = this.store.byRollout(request.id);
    if (existing.length > 0) return existing;
    this.checkRollout(request);
    const boards = request.boards;
    const first = this.submit({ id: `${request.id}/${boards[0]}`, board: boards[0]!, manifest: request.manifest, ...(request.image ? { image: request.image } : { url: request.url ?? "" }), rollout: request.id });
    const now = this.now();
    const jobs = [first];
    for (const board of boards.slice(1)) {
      const job: Job = { ...first, id: `${request.id}/${board}`, board, state: "queued", offset: 0, fromVersion: "", fromHash: "", reason: "", observed: "", created: now, updated: now, testStarted: 0 };
      this.store.insert(job);
      this.emit(job, `queued in rollout ${request.id} (after ${jobs.at(-1)!.board})`);
      jobs.push(job);
    }
    return jobs;
  }

  /** Every check submitRollout() makes, without submitting. Throws UpdateRefused naming the board. */
  checkRollout(request: { boards: readonly string[]; manifest: Manifest; image?: Uint8Array; url?: string }): void {
    const boards = request.boards;
    if (boards.length === 0 || boards.length > 100) throw new UpdateRefused("a rollout names 1 to 100 boards", "boards");
    if (new Set(boards).size !== boards.length) throw new UpdateRefused("a rollout names each board once", "boards");
    for (const board of boards) {
      try {
        this.check({ board, manifest: request.manifest, ...(request.image ? { image: request.image } : { url: request.url ?? "" }) });
      } catch (err) {
        throw new UpdateRefused(`${board}: ${(err as Error).message}`, err instanceof UpdateRefused ? err.code : "refused");
      }
    }
  }

  /** A rollout's next step: nothing while one of its jobs runs; the next board after a confirm; stop after anything else. */
  private advance(rollout: string): void {
    const jobs = this.store.byRollout(rollout);
    if (jobs.some((j) => !FINISHED.has(j.state) && j.state !== "queued")) return;
    const queued = jobs.filter((j) => j.state === "queued");
    if (queued.length === 0) return;
    const bad = jobs.find((j) => FINISHED.has(j.state) && j.state !== "confirmed");
    if (bad) {
      for (const j of queued) this.set(j, { state: "failed", reason: `rollout stopped: ${bad.board} ${bad.state}${bad.reason ? ` (${bad.reason})` : ""}` }, "not started: the rollout stopped");
      return;
    }
    const next = queued[0]!;
    let have = false;
    try {
      have = statSync(next.imagePath).size === next.manifest.image.size;
    } catch {
      // not kept (any more): downloaded again
    }
    if (!have && !next.url) return this.set(next, { state: "failed", reason: "the rollout's image is no longer on the gateway" }, "failed: image gone");
    this.set(next, { state: have ? "verified" : "downloading" }, `rollout ${rollout}: ${next.board} is next`);
    this.launch(next);
  }

  /** Resolves when the job is finished (or the updater stops). */
  async settled(id: string): Promise<Job | null> {
    await this.running.get(id);
    return this.store.get(id);
  }

  private checkBoard(m: Manifest, board: UpdatableBoard, hello: HelloInfo): void {
    if (!hello.management) {
      throw new ManifestError(
        `board '${board.name}' does not take updates over the bridge (no management channel): boards without two image slots — an AVR with a serial bootloader, an STM32 through its system bootloader — are flashed by other means (docs/firmware-updates.md)`,
        "bootloader",
      );
    }
    checkBoard(m, { hardware: hello.hardware, firmware: hello.firmware, bootloader: this.settings.bootloaderOf(board.name) }, { allowDowngrade: this.settings.allowDowngrade });
  }

  private launch(job: Job): void {
    if (this.running.has(job.id)) return;
    const p = this.run(job.id)
      .catch((err: unknown) => this.log.error({ job: job.id, err }, "firmware update stopped by an unexpected error"))
      .finally(() => {
        this.running.delete(job.id);
        if (job.rollout && !this.abort.signal.aborted) this.advance(job.rollout);
      });
    this.running.set(job.id, p);
  }

  private emit(job: Job, message: string): void {
    const ev: UpdateEvent = { job: job.id, board: job.board, state: job.state, offset: job.offset, size: job.manifest.image.size, message };
    for (const l of this.listeners) {
      try {
        l(ev);
      } catch {
        // a listener's problem stays its own
      }
    }
  }

  private set(job: Job, change: Partial<Job>, message: string): void {
    Object.assign(job, change);
    this.store.update(job.id, change, this.now());
    this.emit(job, message);
    const level = job.state === "failed" || job.state === "rolled-back" ? "warn" : "info";
    this.log[level]({ board: job.board, job: job.id, state: job.state }, `firmware update: ${message}`);
  }

  private async run(id: string): Promise<void> {
    const job = this.store.get(id);
    if (!job || FINISHED.has(job.state) || job.state === "queued") return;
    try {
      const m = job.manifest;
      if (job.state === "downloading") await this.fetch(job);
      const image = this.images.read(job.imagePath);
      // Checked again: the file may have been damaged on disk, or the keys changed, since.
      checkSignature(m, this.settings.keys);
      checkImage(m, image);
      const board = this.boardOf(job.board);
      if (!board) throw new UpdateRefused(`board '${job.board}' is no longer in the config`, "unknown-board");
      if (job.state === "verified" || job.state === "uploading") {
        const hello = await this.waitOnline(board);
        this.checkBoard(m, board, hello);
        if (!job.fromHash) this.set(job, { fromVersion: hello.firmware, fromHash: hello.imageHash }, `board runs ${hello.firmware}`);
        if (hello.imageHash === runningHash(m)) {
          const slots = await this.imageState(board);
          if (slots.find((s) => s.slot === 0)?.confirmed) return this.set(job, { state: "confirmed", reason: "already running this image" }, `already running ${m.image.version}`);
        }
        await this.upload(job, board, image);
        await this.startTest(job, board);
      }
      if (job.state === "testing") await this.healthGate(job, board);
    } catch (err) {
      if (err instanceof Aborted || this.abort.signal.aborted) return;
      const reason = err instanceof Error ? err.message : String(err);
      this.set(job, { state: "failed", reason }, `failed: ${reason}`);
    }
  }

  /** An SMP request that gives up when the updater stops (its job stays where it is on disk). */
  private request(board: UpdatableBoard, req: SmpRequest): Promise<Map<string, unknown>> {
    this.alive();
    const signal = this.abort.signal;
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(new Aborted());
      signal.addEventListener("abort", onAbort, { once: true });
      board.smp.request(req).then(
        (v) => {
          signal.removeEventListener("abort", onAbort);
          resolve(v);
        },
        (e: unknown) => {
          signal.removeEventListener("abort", onAbort);
          reject(e);
        },
      );
    });
  }

  /** Downloads the job's image (resuming a partial file), checks it against the manifest, keeps it. */
  private async fetch(job: Job): Promise<void> {
    const m = job.manifest;
    const partial = `${job.imagePath.replace(/\.bin$/, "")}.download`;
    mkdirSync(dirname(partial), { recursive: true });
    let lastSaid = 0;
    const bytes = await download(job.url, partial, m.image.size, this.settings.download, this.abort.signal, (n) => {
      if (this.now() - lastSaid < PROGRESS_EVERY_MS && n < m.image.size) return;
      lastSaid = this.now();
      this.emit({ ...job, offset: n }, `downloaded ${n} of ${m.image.size} bytes`);
    });
    try {
      checkImage(m, bytes);
    } catch (err) {
      rmSync(partial, { force: true });
      throw new Error(`the downloaded image does not match its manifest: ${(err as Error).message}`);
    }
    try {
      job.imagePath = this.images.put(bytes, this.store.imagesInUse());
    } finally {
      rmSync(partial, { force: true });
    }
    this.set(job, { state: "verified" }, `downloaded and verified ${m.image.size} bytes`);
  }

  private alive(): void {
    if (this.abort.signal.aborted) throw new Aborted();
  }

  /**
   * Watches the board's events until `onEvent` settles (returns a value) or `ms` pass (then
   * `onTimeout`); rejects with Aborted when the updater stops. The one place that pairs a
   * timer, a board observer and the abort signal, and undoes all three.
   */
  private until<T>(board: UpdatableBoard, ms: number, onEvent: (ev: BoardEvent) => T | undefined, onTimeout: () => T | Error): Promise<T> {
    this.alive();
    return new Promise<T>((resolve, reject) => {
      const done = (f: () => void) => {
        clearTimeout(timer);
        stop();
        this.abort.signal.removeEventListener("abort", onAbort);
        f();
      };
      const onAbort = () => done(() => reject(new Aborted()));
      const timer = setTimeout(() => {
        const v = onTimeout();
        done(() => (v instanceof Error ? reject(v) : resolve(v)));
      }, ms);
      const stop = board.observe((ev) => {
        const v = onEvent(ev);
        if (v !== undefined) done(() => resolve(v));
      });
      this.abort.signal.addEventListener("abort", onAbort);
    });
  }

  /** The board's hello once it is online (now or within offlineTimeoutMs). */
  private async waitOnline(board: UpdatableBoard, timeoutMs = this.settings.offlineTimeoutMs): Promise<HelloInfo> {
    this.alive();
    const now = board.helloInfo();
    if (board.online && now) return now;
    return this.until(board, timeoutMs, (ev) => (ev.kind === "online" ? ev.hello : undefined), () => new Error(`board '${board.name}' was offline for ${Math.round(timeoutMs / 1000)} s`));
  }

  private async imageState(board: UpdatableBoard): Promise<ImageSlot[]> {
    const body = await this.request(board, { group: SMP_GROUP.IMAGE, id: SMP_IMAGE.STATE, write: false, body: {}, timeoutMs: this.settings.requestTimeoutMs });
    const r = parseImageState(body);
    if (!r.ok) throw new Error(`the board's image state: ${r.error}`);
    return r.slots;
  }

  /**
   * Sends the image from the offset the board reports, `pipeline` requests in flight. A response
   * with another offset than expected (the board lost a chunk, or restarted the upload) resumes
   * from there once the requests in flight are answered. Lost requests and board resets retry
   * from the board's offset, up to maxRetries failures without progress.
   */
  private async upload(job: Job, board: UpdatableBoard, image: Uint8Array): Promise<void> {
    const size = image.length;
    const sha = sha256(image);
    // Already there (a restart after the upload finished): nothing to send.
    const slot1 = (await this.imageState(board)).find((s) => s.slot === 1);
    if (slot1 && slot1.hash === runningHash(job.manifest)) {
      if (job.offset !== size) this.set(job, { state: "uploading", offset: size }, "the image is already in the board's second slot");
      return;
    }
    if (job.state !== "uploading") this.set(job, { state: "uploading" }, `uploading ${size} bytes`);
    let failures = 0;
    let lastProgress = 0;
    let matched: boolean | null = null;
    let off = 0; // every (re)start asks the board first (off 0 with len and sha): it says how far it got
    let first = true;
    while (!(matched === true)) {
      this.alive();
      try {
        if (!board.online) await this.waitOnline(board);
        const packet = board.maxManagementPacket;
        const inFlight: Array<{ off: number; end: number; p: Promise<Map<string, unknown>> }> = [];
        let next = off;
        let resync: number | null = null;
        const send = (at: number) => {
          const isFirst = first && at === 0;
          const room = packet - uploadOverhead(isFirst, at, 0) - 8; // a little slack for CBOR length fields
          const end = Math.min(size, at + Math.max(16, room));
          const body = uploadBody({ off: at, data: image.subarray(at, end), ...(isFirst ? { len: size, sha } : {}) });
          const p = this.request(board, { group: SMP_GROUP.IMAGE, id: SMP_IMAGE.UPLOAD, write: true, body, timeoutMs: this.settings.requestTimeoutMs });
          p.catch(() => {}); // handled in order below
          inFlight.push({ off: at, end, p });
          return end;
        };
        next = send(next);
        if (first) {
          // The first request alone: its answer says where the board is (resume).
          const r = inFlight.shift()!;
          const rsp = await r.p;
          first = false;
          const reported = this.reportedOffset(rsp, size, r.end, true);
          matched = this.matchOf(rsp);
          off = reported;
          next = off;
        } else {
          while (next < size && inFlight.length < this.settings.pipeline) next = send(next);
          while (inFlight.length > 0) {
            const r = inFlight.shift()!;
            const rsp = await r.p;
            const reported = this.reportedOffset(rsp, size, r.end, false);
            const m = this.matchOf(rsp);
            if (m !== null) matched = m;
            if (resync !== null) continue; // draining after a mismatch
            if (reported !== r.end) {
              resync = reported;
              continue;
            }
            off = reported;
            failures = 0;
            if (next < size) next = send(next);
          }
          if (resync !== null) off = resync;
        }
        if (off > job.offset || this.now() - lastProgress >= PROGRESS_EVERY_MS) {
          job.offset = off;
          if (this.now() - lastProgress >= PROGRESS_EVERY_MS || off === size) {
            lastProgress = this.now();
            this.set(job, { offset: off }, `uploaded ${off} of ${size} bytes`);
          }
        }
        if (matched === false) throw new Error("the board's SHA-256 of the uploaded image differs from the image's (corrupted on the way or in flash)");
        if (off >= size && matched === null) matched = true; // a board that does not say `match`
      } catch (err) {
        if (err instanceof Aborted) throw err;
        if (err instanceof SmpError && err.kind !== "refused") {
          if (++failures > this.settings.maxRetries) throw new Error(`upload stopped: ${err.message} (${failures} times without progress)`);
          first = true; // ask the board where it is
          off = 0;
          if (err.kind === "busy") await sleep(200, this.abort.signal);
          continue;
        }
        throw err;
      }
    }
    this.set(job, { offset: size }, `uploaded ${size} bytes; the board's SHA-256 matches`);
  }

  private reportedOffset(rsp: Map<string, unknown>, size: number, sentUpTo: number, first: boolean): number {
    const off = rsp.get("off");
    if (typeof off !== "number" || !Number.isSafeInteger(off) || off < 0) throw new Error("the board answered an upload without a valid offset");
    if (off > size) throw new Error(`the board reported offset ${off}, beyond the image's ${size} bytes`);
    // A board resuming may hold more than this request carried; otherwise it cannot hold more than we sent.
    if (!first && off > sentUpTo) throw new Error(`the board reported offset ${off}, beyond the ${sentUpTo} bytes sent`);
    return off;
  }

  private matchOf(rsp: Map<string, unknown>): boolean | null {
    const m = rsp.get("match");
    return typeof m === "boolean" ? m : null;
  }

  /** Slot 1 must hold the image (by hash); then mark it for a test boot and reset the board. */
  private async startTest(job: Job, board: UpdatableBoard): Promise<void> {
    const want = runningHash(job.manifest);
    const slots = await this.imageState(board);
    const slot1 = slots.find((s) => s.slot === 1);
    if (!slot1 || slot1.hash !== want) {
      throw new Error(`after the upload, the board's second slot holds ${slot1 ? `an image with hash ${slot1.hash.slice(0, 16)}…` : "no image"}, not ${want.slice(0, 16)}…`);
    }
    const hash = Buffer.from(want, "hex");
    await this.request(board, { group: SMP_GROUP.IMAGE, id: SMP_IMAGE.STATE, write: true, body: { hash, confirm: false }, timeoutMs: this.settings.requestTimeoutMs });
    this.set(job, { state: "testing", testStarted: this.now() }, `image ${job.manifest.image.version} marked for a test boot; resetting the board`);
    await this.request(board, { group: SMP_GROUP.OS, id: SMP_OS.RESET, write: true, body: {}, timeoutMs: this.settings.requestTimeoutMs }).catch(() => {
      // The reset may cut its own answer short: the new session tells.
    });
  }

  /**
   * Waits for the board to run the new image, watches it, and confirms it or has it reverted.
   */
  private async healthGate(job: Job, board: UpdatableBoard): Promise<void> {
    const want = runningHash(job.manifest);
    const h = this.settings.health;
    const seen: string[] = [];
    // 1. The board comes back: with the new image, or (its bootloader reverted) with the old one.
    // The current session counts if it runs the new image already (a gateway restart in the gate).
    const hello = await this.nextHello(board, h.bootTimeoutMs, (hi) => hi.imageHash === want || (job.fromHash !== "" && hi.imageHash === job.fromHash), (hi) => hi.imageHash === want);
    if (!hello) {
      return this.set(job, { state: "failed", reason: `the board did not come back within ${Math.round(h.bootTimeoutMs / 1000)} s of the test boot` }, "the board did not come back after the test boot");
    }
    if (hello.imageHash !== want) {
      seen.push(`came back with ${hello.firmware} (reset: ${hello.resetReason})`);
      return this.set(job, { state: "rolled-back", reason: "the bootloader reverted: the new image did not stay up", observed: seen.join("; ") }, `rolled back to ${hello.firmware}: the new image did not stay up`);
    }
    seen.push(`booted ${hello.firmware} (reset: ${hello.resetReason})`);
    if (hello.resetReason === "crash" || hello.resetReason === "watchdog") {
      return this.revert(job, board, `the new image started after a ${hello.resetReason} reset`, seen);
    }
    // 2. The window: heartbeats, telemetry, no reset.
    const verdict = await this.watch(board, h.windowMs);
    seen.push(`${verdict.heartbeats} heartbeats, ${verdict.readings} readings in ${Math.round(h.windowMs / 1000)} s`);
    if (verdict.reset) {
      seen.push(`reset: ${verdict.reset}`);
      if (verdict.resetTo !== want) {
        return this.set(job, { state: "rolled-back", reason: "the board reset during the health check and its bootloader reverted", observed: seen.join("; ") }, "rolled back: the board reset during the health check");
      }
      return this.revert(job, board, `the board reset during the health check (${verdict.reset})`, seen);
    }
    if (verdict.heartbeats < h.heartbeats) return this.revert(job, board, `only ${verdict.heartbeats} of ${h.heartbeats} heartbeats`, seen);
    if (verdict.readings === 0) return this.revert(job, board, "no telemetry from the new image", seen);
    // 3. Confirm: the running image becomes permanent.
    await this.request(board, { group: SMP_GROUP.IMAGE, id: SMP_IMAGE.STATE, write: true, body: { confirm: true }, timeoutMs: this.settings.requestTimeoutMs });
    const slots = await this.imageState(board);
    const s0 = slots.find((s) => s.slot === 0);
    if (!s0 || s0.hash !== want || !s0.confirmed) throw new Error("the board did not confirm the new image (its slot 0 is not the new image, confirmed)");
    this.set(job, { state: "confirmed", observed: seen.join("; ") }, `confirmed ${job.manifest.image.version} after the health check`);
  }

  /**
   * The next session's hello that `accept`s, within timeoutMs; null on timeout. The current
   * session counts only if `current` accepts it (the board may not have reset yet).
   */
  private nextHello(board: UpdatableBoard, timeoutMs: number, accept: (h: HelloInfo) => boolean, current: (h: HelloInfo) => boolean = () => false): Promise<HelloInfo | null> {
    this.alive();
    const cur = board.helloInfo();
    if (board.online && cur && current(cur)) return Promise.resolve(cur);
    return this.until<HelloInfo | null>(board, timeoutMs, (ev) => (ev.kind === "online" && accept(ev.hello) ? ev.hello : undefined), () => null);
  }

  /** What the board does for `ms`: heartbeats, readings, and whether (and to what) it reset. */
  private watch(board: UpdatableBoard, ms: number): Promise<{ heartbeats: number; readings: number; reset: string | null; resetTo: string | null }> {
    const v = { heartbeats: 0, readings: 0, reset: null as string | null, resetTo: null as string | null };
    return this.until(
      board,
      ms,
      (ev) => {
        if (ev.kind === "heartbeat") v.heartbeats++;
        else if (ev.kind === "readings") v.readings += ev.count;
        else if (ev.kind === "online") {
          v.reset = `new session, reset reason ${ev.hello.resetReason}`;
          v.resetTo = ev.hello.imageHash;
          return v;
        }
        return undefined;
      },
      () => v,
    );
  }

  /** Resets the board with the test image unconfirmed: its bootloader goes back to the old image. */
  private async revert(job: Job, board: UpdatableBoard, why: string, seen: string[]): Promise<void> {
    this.emit(job, `unhealthy: ${why}; resetting the board to revert`);
    this.log.warn({ board: job.board, job: job.id }, `firmware update: the new image is unhealthy (${why}); reverting`);
    await this.request(board, { group: SMP_GROUP.OS, id: SMP_OS.RESET, write: true, body: {}, timeoutMs: this.settings.requestTimeoutMs }).catch(() => {});
    const want = runningHash(job.manifest);
    const back = await this.nextHello(board, this.settings.health.bootTimeoutMs, () => true);
    if (!back || back.imageHash === want) {
      return this.set(job, { state: "failed", reason: `${why}; after a reset the board ${back ? "still runs the new image" : "did not come back"}`, observed: seen.join("; ") }, "failed: the board did not revert");
    }
    seen.push(`reverted to ${back.firmware}`);
    this.set(job, { state: "rolled-back", reason: why, observed: seen.join("; ") }, `rolled back to ${back.firmware}: ${why}`);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}
