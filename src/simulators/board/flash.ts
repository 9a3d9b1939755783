/**
 * A simulated board's flash with two image slots and an MCUboot-like bootloader, and the SMP
 * server (image group, OS reset) that a board running Zephyr's MCUmgr would answer with — the
 * same behaviour as the reference firmware's (drivers/bridge/firmware/host/flash.c), so that the
 * gateway's update path is tested against both (docs/firmware-bridge.md, section 13).
 *
 * - Slot 0 runs; an upload goes to slot 1. The upload's progress is kept in "flash" (the
 *   trailer): after a power cut, an upload of the same image (same SHA-256) resumes at the offset
 *   the board reports, another image starts over.
 * - `test` marks slot 1 pending; at the next boot the bootloader swaps the slots and runs the new
 *   image unconfirmed. If it is not confirmed before the boot after that (a crash, a reset), the
 *   bootloader swaps back: the old image runs again, confirmed, and the new one sits in slot 1.
 * - `confirm` of the running image makes it permanent.
 *
 * `save()`/`load()` give the flash as JSON, so a board process can be "powered off" and on.
 */
import { buildTestImage, imageBehaviour, readImageHeader, sha256, type Behaviour } from "../../update/image.js";
import { decodeSmp, encodeSmp, SMP_GROUP, SMP_IMAGE, SMP_OP, SMP_OS } from "../../bridge/smp.js";

export interface Slot {
  image: Uint8Array;
  hash: Buffer;
  version: string;
}

interface Upload {
  len: number;
  sha: Buffer | null;
  off: number;
  data: Uint8Array;
}

export interface FlashState {
  primary: Slot;
  secondary: Slot | null;
  /** Slot 1 boots next: once (test) or for good (permanent). */
  pending: "test" | "permanent" | null;
  /** The running image was swapped in for a test and is not confirmed yet. */
  testing: boolean;
  upload: Upload | null;
}

export interface FlashOptions {
  /** Largest image slot 1 takes. Default 1 MiB. */
  slotSize?: number;
  /** The image in slot 0 at first power-on. Default a test image of version 1.0.0. */
  initial?: Uint8Array;
}

/** SMP's rc values the server answers with. */
const RC = { EINVAL: 3, ENOENT: 5, EBADSTATE: 6, EMSGSIZE: 7, ENOTSUP: 8, ECORRUPT: 9 } as const;

function slotOf(image: Uint8Array): Slot {
  return { image, hash: sha256(image), version: readImageHeader(image)?.version ?? "0.0.0" };
}

export class TwoSlotFlash {
  readonly slotSize: number;
  private s: FlashState;
  /** Boot events, for tests: what the bootloader did at each boot. */
  readonly boots: Array<"normal" | "test-swap" | "permanent-swap" | "revert"> = [];

  constructor(options: FlashOptions = {}) {
    this.slotSize = options.slotSize ?? 1 << 20;
    this.s = {
      primary: slotOf(options.initial ?? buildTestImage({ version: "1.0.0" })),
      secondary: null,
      pending: null,
      testing: false,
      upload: null,
    };
  }

  /** A flash whose slot 0 holds a test image of this version. */
  static withVersion(version: string, options: Omit<FlashOptions, "initial"> = {}): TwoSlotFlash {
    return new TwoSlotFlash({ ...options, initial: buildTestImage({ version }) });
  }

  get running(): Slot {
    return this.s.primary;
  }

  get behaviour(): Behaviour {
    return imageBehaviour(this.s.primary.image);
  }

  get state(): Readonly<FlashState> {
    return this.s;
  }

  /** The bootloader at reset: swaps a pending image in, or reverts an unconfirmed test. */
  boot(): void {
    const s = this.s;
    if (s.pending && s.secondary) {
      const old = s.primary;
      s.primary = s.secondary;
      s.secondary = old;
      s.testing = s.pending === "test";
      this.boots.push(s.pending === "test" ? "test-swap" : "permanent-swap");
      s.pending = null;
      return;
    }
    if (s.testing) {
      // Booting again with the test image still unconfirmed: it reset (or crashed) before the
      // confirm. The old image comes back, confirmed; the new one stays in slot 1.
      const bad = s.primary;
      s.primary = s.secondary!;
      s.secondary = bad;
      s.testing = false;
      this.boots.push("revert");
      return;
    }
    this.boots.push("normal");
  }

  /** One SMP request packet; the response packet, or null for a packet that is not a request. */
  handle(packet: Uint8Array): { response: Uint8Array | null; reset: boolean } {
    const r = decodeSmp(packet);
    if (!r.ok) return { response: null, reset: false };
    const { header, body } = r.packet;
    if (header.op !== SMP_OP.READ && header.op !== SMP_OP.WRITE) return { response: null, reset: false };
    const write = header.op === SMP_OP.WRITE;
    const reply = (b: Map<string, unknown> | Record<string, unknown>) =>
      encodeSmp({ ...header, op: write ? SMP_OP.WRITE_RSP : SMP_OP.READ_RSP }, b);
    const rc = (code: number) => reply({ rc: code });
    if (header.group === SMP_GROUP.OS && header.id === SMP_OS.RESET && write) return { response: reply({}), reset: true };
    if (header.group !== SMP_GROUP.IMAGE) return { response: rc(RC.ENOTSUP), reset: false };
    switch (header.id) {
      case SMP_IMAGE.STATE:
        if (!write) return { response: reply(this.stateBody()), reset: false };
        return { response: this.stateWrite(body, reply, rc), reset: false };
      case SMP_IMAGE.UPLOAD:
        if (!write) return { response: rc(RC.ENOTSUP), reset: false };
        return { response: this.upload(body, reply, rc), reset: false };
      case SMP_IMAGE.ERASE:
        if (!write) return { response: rc(RC.ENOTSUP), reset: false };
        if (this.s.pending) return { response: rc(RC.EBADSTATE), reset: false };
        this.s.secondary = null;
        this.s.upload = null;
        return { response: reply({}), reset: false };
      default:
        return { response: rc(RC.ENOTSUP), reset: false };
    }
  }

  private stateBody(): Record<string, unknown> {
    const s = this.s;
    const images: Array<Record<string, unknown>> = [
      { image: 0, slot: 0, version: s.primary.version, hash: s.primary.hash, bootable: true, pending: false, confirmed: !s.testing, active: true, permanent: false },
    ];
    if (s.secondary) {
      images.push({
        image: 0,
        slot: 1,
        version: s.secondary.version,
        hash: s.secondary.hash,
        bootable: true,
        pending: s.pending !== null,
        confirmed: s.testing, // the old image, confirmed before the test swap
        active: false,
        permanent: s.pending === "permanent",
      });
    }
    return { images, splitStatus: 0 };
  }

  private stateWrite(body: Map<string, unknown>, reply: (b: Record<string, unknown>) => Uint8Array, rc: (c: number) => Uint8Array): Uint8Array {
    const s = this.s;
    const confirm = body.get("confirm") === true;
    const hash = body.get("hash");
    if (hash !== undefined && !(hash instanceof Uint8Array && hash.length === 32)) return rc(RC.EINVAL);
    const isPrimary = hash === undefined || s.primary.hash.equals(hash as Uint8Array);
    if (confirm && isPrimary) {
      s.testing = false;
      return reply(this.stateBody());
    }
    if (!s.secondary || !(hash instanceof Uint8Array) || !s.secondary.hash.equals(hash)) return rc(RC.ENOENT);
    s.pending = confirm ? "permanent" : "test";
    return reply(this.stateBody());
  }

  private upload(body: Map<string, unknown>, reply: (b: Record<string, unknown>) => Uint8Array, rc: (c: number) => Uint8Array): Uint8Array {
    const s = this.s;
    const off = body.get("off");
    const data = body.get("data");
    if (typeof off !== "number" || !Number.isSafeInteger(off) || off < 0 || off > this.slotSize || !(data instanceof Uint8Array)) return rc(RC.EINVAL);
    if (off === 0) {
      const len = body.get("len");
      const sha = body.get("sha");
      if (typeof len !== "number" || !Number.isInteger(len) || len <= 0) return rc(RC.EINVAL);
      if (len > this.slotSize) return rc(RC.EMSGSIZE);
      if (sha !== undefined && !(sha instanceof Uint8Array && sha.length === 32)) return rc(RC.EINVAL);
      if (s.pending) return rc(RC.EBADSTATE);
      const same = s.upload && sha instanceof Uint8Array && s.upload.sha?.equals(sha) && s.upload.len === len;
      if (same && s.upload!.off > 0) return reply({ off: s.upload!.off }); // resume: the board says how far it got
      s.secondary = null;
      s.upload = { len, sha: sha instanceof Uint8Array ? Buffer.from(sha) : null, off: 0, data: new Uint8Array(len) };
    }
    const u = s.upload;
    if (!u) return rc(RC.EBADSTATE);
    if (off !== u.off) return reply({ off: u.off }); // not where we are: say where we are
    if (off + data.length > u.len) return rc(RC.EINVAL);
    u.data.set(data, off);
    u.off += data.length;
    if (u.off < u.len) return reply({ off: u.off });
    const digest = sha256(u.data);
    const match = u.sha ? digest.equals(u.sha) : true;
    s.upload = null;
    if (!match) return reply({ off: u.off, match: false, rc: RC.ECORRUPT });
    s.secondary = slotOf(u.data);
    return reply({ off: u.off, match: true });
  }

  save(): string {
    const b64 = (x: Uint8Array) => Buffer.from(x).toString("base64");
    const slot = (x: Slot | null) => (x ? b64(x.image) : null);
    const s = this.s;
    return JSON.stringify({
      primary: slot(s.primary),
      secondary: slot(s.secondary),
      pending: s.pending,
      testing: s.testing,
      upload: s.upload ? { len: s.upload.len, sha: s.upload.sha ? b64(s.upload.sha) : null, off: s.upload.off, data: b64(s.upload.data.subarray(0, s.upload.off)) } : null,
      boots: this.boots,
    });
  }

  static load(text: string, options: FlashOptions = {}): TwoSlotFlash {
    const j = JSON.parse(text) as {
      primary: string;
      secondary: string | null;
      pending: FlashState["pending"];
      testing: boolean;
      upload: { len: number; sha: string | null; off: number; data: string } | null;
      boots?: TwoSlotFlash["boots"];
    };
    const f = new TwoSlotFlash(options);
    const buf = (x: string) => new Uint8Array(Buffer.from(x, "base64"));
    let upload: Upload | null = null;
    if (j.upload) {
      const data = new Uint8Array(j.upload.len);
      data.set(buf(j.upload.data));
      upload = { len: j.upload.len, sha: j.upload.sha ? Buffer.from(j.upload.sha, "base64") : null, off: j.upload.off, data };
    }
    f.s = {
      primary: slotOf(buf(j.primary)),
      secondary: j.secondary ? slotOf(buf(j.secondary)) : null,
      pending: j.pending,
      testing: j.testing,
      upload,
    };
    if (j.boots) f.boots.push(...j.boots);
    return f;
  }
}
