/**
 * Firmware updates end to end against the simulated board (two slots, MCUboot-like bootloader,
 * SMP on the management channel) and the gateway's real BoardSession, on fake time: the upload,
 * the test boot, the health gate, confirm and rollback, resume after a board power cut and after
 * a gateway restart, and the refusals before a byte is sent.
 */
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { BoardSession } from "../../src/bridge/board-session.js";
import type { LinkClock } from "../../src/bridge/link.js";
import { MemoryPipe } from "../../src/buses/serial/memory-link.js";
import { silentLogger } from "../../src/ops/logger.js";
import { SimBoard } from "../../src/simulators/board/board.js";
import { TwoSlotFlash } from "../../src/simulators/board/flash.js";
import { decodeSmp, encodeSmp } from "../../src/bridge/smp.js";
import { buildTestImage, sha256, type Behaviour } from "../../src/update/image.js";
import { ImageStore } from "../../src/update/image-store.js";
import { JobStore } from "../../src/update/jobs.js";
import { signManifest, type Manifest } from "../../src/update/manifest.js";
import { type UpdateEvent, UpdateRefused, Updater, type UpdateSettings } from "../../src/update/updater.js";
import { tempDir } from "../helpers/tmp.js";

const fakeClock: LinkClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

const cleanups: Array<() => Promise<void> | void> = [];

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setImmediate", "clearImmediate", "setInterval", "clearInterval", "Date"] });
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  vi.useRealTimers();
});

const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms);

const { privateKey, publicKey } = generateKeyPairSync("ed25519");
const PRIVATE_PEM = privateKey.export({ format: "pem", type: "pkcs8" }).toString();
const HARDWARE = "room-node/rev-c";

function manifestFor(image: Uint8Array, version: string, over: { hardware?: string; keyName?: string; pem?: string } = {}): Manifest {
  return signManifest(image, { version, hardware: over.hardware ?? HARDWARE }, { name: over.keyName ?? "release", privatePem: over.pem ?? PRIVATE_PEM });
}

const settings = (over: Partial<UpdateSettings> = {}): UpdateSettings => ({
  keys: new Map<string, KeyObject>([["release", publicKey]]),
  allowDowngrade: false,
  health: { heartbeats: 3, windowMs: 5000, bootTimeoutMs: 10_000 },
  offlineTimeoutMs: 60_000,
  pipeline: 2,
  requestTimeoutMs: 2000,
  maxRetries: 20,
  bootloaderOf: () => null,
  download: { hosts: [], ca: null, idleTimeoutMs: 1000, attempts: 2 },
  ...over,
});

interface Rig {
  sim: SimBoard;
  flash: TwoSlotFlash;
  session: BoardSession;
  updater: Updater;
  events: UpdateEvent[];
  dir: string;
  restartGateway(): Promise<void>;
  powerCycleBoard(): Promise<void>;
}

async function rig(options: { flash?: TwoSlotFlash; settings?: Partial<UpdateSettings>; dir?: string } = {}): Promise<Rig> {
  const dir = options.dir ?? tempDir();
  const pipe = new MemoryPipe("room-node");
  let flash = options.flash ?? new TwoSlotFlash({ initial: buildTestImage({ version: "1.0.0", size: 8192 }) });
  const newSim = () => new SimBoard({ port: pipe.b, clock: fakeClock, seed: 5, logEveryMs: 0, intervalMs: 500, maxFrame: 1024, flash });
  const newSession = () =>
    new BoardSession(
      {
        name: "node-1",
        expectId: null,
        heartbeatMs: 500,
        offlineAfterMs: 3000,
        timeSyncMs: 60_000,
        commandTimeoutMs: 1000,
        maxPending: 10_000,
        writable: [],
        limits: new Map(),
        log: silentLogger(),
        cursor: () => undefined,
        clock: fakeClock,
      },
      (b) => void pipe.a.write(b),
    );
  const r = {} as Rig;
  r.dir = dir;
  r.events = [];
  r.flash = flash;
  r.session = newSession();
  await pipe.a.open();
  pipe.a.onData((c) => r.session.receive(c));
  // The session keeps what it received for the store: hand it over as the source does.
  const drain = setInterval(() => {
    const t = r.session.take();
    t.commit?.settled(true);
  }, 200);
  const newUpdater = () => {
    const u = new Updater(new JobStore(join(dir, "updates.db")), new ImageStore(join(dir, "images"), 4 << 20), (name) => (name === "node-1" ? r.session : undefined), settings(options.settings), silentLogger());
    u.onEvent((e) => r.events.push(e));
    return u;
  };
  r.updater = newUpdater();
  r.sim = newSim();
  r.session.start();
  await r.sim.start();
  await r.updater.start();
  r.restartGateway = async () => {
    await r.updater.stop();
    r.updater = newUpdater();
    await r.updater.start();
  };
  r.powerCycleBoard = async () => {
    // Power off: RAM is gone, the flash (saved) is what comes back.
    await r.sim.stop();
    flash = TwoSlotFlash.load(flash.save());
    r.flash = flash;
    r.sim = newSim();
    await r.sim.start();
  };
  cleanups.push(async () => {
    clearInterval(drain);
    await r.updater.stop();
    await r.sim.stop();
    r.session.stop();
  });
  await advance(2000);
  expect(r.session.online).toBe(true);
  return r;
}

async function until(cond: () => boolean, ms = 120_000, step = 100): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    if (cond()) return;
    await advance(step);
  }
  throw new Error("condition not met in time");
}

const stateOf = (r: Rig, id: string) => r.updater.job(id)?.state;

describe("firmware update against the simulated board", () => {
  it("uploads, test-boots, passes the health gate and confirms; the board then runs the new image for good", async () => {
    const r = await rig();
    const image = buildTestImage({ version: "1.1.0", size: 40_000 });
    const job = r.updater.submit({ id: "u1", board: "node-1", manifest: manifestFor(image, "1.1.0"), image });
    expect(job.state).toBe("verified");
    await until(() => stateOf(r, "u1") === "confirmed").catch((e) => {
      console.log(JSON.stringify(r.updater.job("u1")), r.events.slice(-5));
      throw e;
    });
    const done = r.updater.job("u1")!;
    expect(done.offset).toBe(image.length);
    expect(done.fromVersion).toBe("1.0.0");
    expect(done.observed).toMatch(/booted 1\.1\.0/);
    expect(r.flash.running.version).toBe("1.1.0");
    expect(r.flash.state.testing).toBe(false);
    expect(r.session.helloInfo()!.imageHash).toBe(sha256(image).toString("hex"));
    // The states went in order, with progress between.
    const states = r.events.map((e) => e.state).filter((s, i, a) => s !== a[i - 1]);
    expect(states).toEqual(["verified", "uploading", "testing", "confirmed"]);
    expect(r.events.filter((e) => e.state === "uploading").length).toBeGreaterThan(1);
    // Confirmed means permanent: a reset does not revert.
    r.sim.reboot();
    await advance(2000);
    expect(r.flash.running.version).toBe("1.1.0");
    expect(r.flash.boots.at(-1)).toBe("normal");
  });

  for (const [behaviour, why] of [
    ["crash", /did not stay up|reset/],
    ["silent", /no telemetry/],
  ] as Array<[Behaviour, RegExp]>) {
    it(`a new image that is ${behaviour === "crash" ? "crashing at boot" : "silent (no telemetry)"} is rolled back, and the old one runs`, async () => {
      const r = await rig();
      const image = buildTestImage({ version: "1.2.0", size: 20_000, behaviour });
      r.updater.submit({ id: `bad-${behaviour}`, board: "node-1", manifest: manifestFor(image, "1.2.0"), image });
      await until(() => ["confirmed", "rolled-back", "failed"].includes(stateOf(r, `bad-${behaviour}`) ?? ""));
      const job = r.updater.job(`bad-${behaviour}`)!;
      expect(job.state).toBe("rolled-back");
      expect(`${job.reason} ${job.observed}`).toMatch(why);
      await advance(3000);
      expect(r.flash.running.version).toBe("1.0.0");
      expect(r.flash.boots).toContain("revert");
      expect(r.session.online).toBe(true);
      expect(r.session.helloInfo()!.firmware).toBe("1.0.0");
    });
  }

  it("a board power cut mid-upload: the upload resumes at the offset the board reports, not from zero", async () => {
    const r = await rig();
    const image = buildTestImage({ version: "1.1.0", size: 200_000 });
    r.updater.submit({ id: "cut", board: "node-1", manifest: manifestFor(image, "1.1.0"), image });
    await until(() => (r.flash.state.upload?.off ?? 0) > 60_000, 120_000, 20);
    const before = r.flash.state.upload!.off;
    await r.powerCycleBoard();
    expect(r.flash.state.upload!.off).toBe(before);
    // Count what the board receives from here on: the rest, not the whole image again.
    let bytesAfter = 0;
    const orig = r.flash.handle.bind(r.flash);
    r.flash.handle = (p) => {
      bytesAfter += p.length;
      return orig(p);
    };
    await until(() => stateOf(r, "cut") === "confirmed");
    expect(bytesAfter).toBeLessThan(image.length - before + 20_000);
    expect(r.flash.running.version).toBe("1.1.0");
  });

  it("a gateway restart mid-upload and in the health gate: the job resumes where it was", async () => {
    const r = await rig();
    const image = buildTestImage({ version: "1.3.0", size: 150_000 });
    r.updater.submit({ id: "gw", board: "node-1", manifest: manifestFor(image, "1.3.0"), image });
    await until(() => (r.flash.state.upload?.off ?? 0) > 40_000, 120_000, 5);
    await r.restartGateway();
    expect(r.updater.job("gw")!.state).toBe("uploading");
    const resumedAt = r.flash.state.upload!.off;
    const mark = r.events.length;
    await until(() => stateOf(r, "gw") === "testing");
    await advance(1500); // in the health gate
    await r.restartGateway();
    expect(r.updater.job("gw")!.state).toBe("testing");
    await until(() => stateOf(r, "gw") === "confirmed");
    expect(r.flash.running.version).toBe("1.3.0");
    expect(r.flash.state.testing).toBe(false);
    // Resumed, not restarted: the board never went back below where the restart found it.
    expect(resumedAt).toBeGreaterThan(40_000);
    const after = r.events.slice(mark).filter((e) => e.job === "gw" && e.state === "uploading" && e.offset > 0);
    expect(after.length).toBeGreaterThan(0);
    expect(after.every((e) => e.offset >= resumedAt)).toBe(true);
  });

  it("refuses before sending a byte: bad signature, unknown key, wrong hardware, downgrade, hash mismatch, truncated image, no room", async () => {
    const r = await rig();
    const image = buildTestImage({ version: "1.1.0", size: 10_000 });
    const good = manifestFor(image, "1.1.0");
    const other = generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString();
    let sent = 0;
    const orig = r.flash.handle.bind(r.flash);
    r.flash.handle = (p) => {
      sent++;
      return orig(p);
    };
    const refuse = (m: Manifest, img: Uint8Array, code: string, text: RegExp, id: string) => {
      let err: unknown;
      try {
        r.updater.submit({ id, board: "node-1", manifest: m, image: img });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(UpdateRefused);
      expect((err as UpdateRefused).code).toBe(code);
      expect((err as Error).message).toMatch(text);
      expect(r.updater.job(id)).toBeNull();
    };
    refuse({ ...good, signature: manifestFor(image, "1.1.0", { pem: other }).signature }, image, "signature", /does not verify/, "a");
    refuse(manifestFor(image, "1.1.0", { keyName: "someone", pem: other }), image, "unknown-key", /does not trust/, "b");
    refuse(manifestFor(image, "1.1.0", { hardware: "street-cabinet/rev-a" }), image, "hardware", /is for hardware 'street-cabinet\/rev-a'/, "c");
    const old = buildTestImage({ version: "0.9.0", size: 10_000 });
    refuse(manifestFor(old, "0.9.0"), old, "downgrade", /older than the board's 1\.0\.0/, "d");
    const tampered = image.slice();
    tampered[5000] ^= 1;
    refuse(good, tampered, "image", /SHA-256/, "e");
    refuse(good, image.subarray(0, 9000), "image", /truncated/, "f");
    const huge = buildTestImage({ version: "1.1.0", size: 5 << 20 });
    refuse(manifestFor(huge, "1.1.0"), huge, "no-room", /exceeds the image store's limit/, "g");
    expect(() => r.updater.submit({ id: "h", board: "node-2", manifest: good, image })).toThrow(/no board named 'node-2'/);
    await advance(3000);
    expect(sent).toBe(0);
    expect(r.flash.running.version).toBe("1.0.0");
  });

  it("power cuts at random offsets during the upload: each time it resumes where the board is; nothing is sent twice but the chunks in flight", async () => {
    const r = await rig();
    const image = buildTestImage({ version: "1.1.0", size: 300_000 });
    let sent = 0;
    const count = (f: TwoSlotFlash) => {
      const orig = f.handle.bind(f);
      f.handle = (p) => {
        sent += p.length;
        return orig(p);
      };
    };
    count(r.flash);
    r.updater.submit({ id: "cuts", board: "node-1", manifest: manifestFor(image, "1.1.0"), image });
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const cuts: number[] = [];
    await until(() => r.flash.state.upload !== null, 120_000, 5);
    const offsets = Array.from({ length: 5 }, () => Math.floor((0.05 + 0.9 * rnd()) * image.length)).sort((a, b) => a - b);
    for (const at of offsets) {
      if (at <= (r.flash.state.upload?.off ?? 0)) continue;
      await until(() => r.flash.state.upload === null || r.flash.state.upload.off >= at, 120_000, 1);
      if (!r.flash.state.upload) break;
      cuts.push(r.flash.state.upload.off);
      await r.powerCycleBoard();
      count(r.flash);
      expect(r.flash.state.upload!.off).toBe(cuts.at(-1));
    }
    expect(cuts.length).toBeGreaterThanOrEqual(3);
    await until(() => stateOf(r, "cuts") === "confirmed");
    expect(r.flash.running.version).toBe("1.1.0");
    // At most a window of chunks per cut is sent again (those in flight when the power went).
    expect(sent).toBeLessThan(image.length + cuts.length * 8 * 1100 + 20_000);
  });

  it("a board that lies about its offset: the job fails saying so, and the board keeps its image", async () => {
    const r = await rig();
    const image = buildTestImage({ version: "1.1.0", size: 50_000 });
    const orig = r.flash.handle.bind(r.flash);
    let n = 0;
    r.flash.handle = (p) => {
      const out = orig(p);
      // The tenth upload answer claims far more than was sent.
      if (out.response && ++n === 10) {
        const d = decodeSmp(out.response);
        if (d.ok && d.packet.body.has("off")) return { ...out, response: encodeSmp({ ...d.packet.header }, { off: 45_000 }) };
      }
      return out;
    };
    r.updater.submit({ id: "liar", board: "node-1", manifest: manifestFor(image, "1.1.0"), image });
    await until(() => ["failed", "confirmed", "rolled-back"].includes(stateOf(r, "liar") ?? ""));
    expect(r.updater.job("liar")).toMatchObject({ state: "failed" });
    expect(r.updater.job("liar")!.reason).toMatch(/the board reported offset 45000, beyond the \d+ bytes sent/);
    await advance(3000);
    expect(r.flash.running.version).toBe("1.0.0");
  });

  it("a board without two image slots (no management channel) is refused before anything is sent, with the reason", async () => {
    const pipe = new MemoryPipe("avr");
    const session = new BoardSession(
      { name: "avr", expectId: null, heartbeatMs: 500, offlineAfterMs: 3000, timeSyncMs: 60_000, commandTimeoutMs: 1000, maxPending: 10_000, writable: [], limits: new Map(), log: silentLogger(), cursor: () => undefined, clock: fakeClock },
      (b) => void pipe.a.write(b),
    );
    await pipe.a.open();
    pipe.a.onData((c) => session.receive(c));
    const sim = new SimBoard({ port: pipe.b, clock: fakeClock, seed: 3, logEveryMs: 0, intervalMs: 500 }); // no flash
    session.start();
    await sim.start();
    const dir = tempDir();
    const u = new Updater(new JobStore(join(dir, "updates.db")), new ImageStore(join(dir, "images"), 4 << 20), () => session, settings(), silentLogger());
    await u.start();
    cleanups.push(async () => {
      await u.stop();
      await sim.stop();
      session.stop();
    });
    await advance(2000);
    expect(session.helloInfo()!.management).toBe(false);
    const image = buildTestImage({ version: "1.5.0", size: 5000 });
    expect(() => u.submit({ id: "avr", board: "avr", manifest: manifestFor(image, "1.5.0"), image })).toThrow(/does not take updates over the bridge .*AVR with a serial bootloader/);
    expect(u.jobs()).toEqual([]);
  });

  it("a downgrade goes through when allowed; the same id twice is one job", async () => {
    const r = await rig({ settings: { allowDowngrade: true } });
    const old = buildTestImage({ version: "0.9.0", size: 10_000 });
    const a = r.updater.submit({ id: "dg", board: "node-1", manifest: manifestFor(old, "0.9.0"), image: old });
    const b = r.updater.submit({ id: "dg", board: "node-1", manifest: manifestFor(old, "0.9.0"), image: old });
    expect(b.created).toBe(a.created);
    await until(() => stateOf(r, "dg") === "confirmed");
    expect(r.flash.running.version).toBe("0.9.0");
    expect(r.updater.jobs().length).toBe(1);
  });
});

/** Several boards, each on its own pipe and session, one updater: for rollouts. */
async function fleet(names: string[], flashes: Record<string, TwoSlotFlash> = {}) {
  const dir = tempDir();
  const boards = new Map<string, { session: BoardSession; sim: SimBoard; flash: TwoSlotFlash }>();
  for (const [i, name] of names.entries()) {
    const pipe = new MemoryPipe(name);
    const flash = flashes[name] ?? new TwoSlotFlash({ initial: buildTestImage({ version: "1.0.0", size: 8192 }) });
    const session = new BoardSession(
      { name, expectId: null, heartbeatMs: 500, offlineAfterMs: 3000, timeSyncMs: 60_000, commandTimeoutMs: 1000, maxPending: 10_000, writable: [], limits: new Map(), log: silentLogger(), cursor: () => undefined, clock: fakeClock },
      (b) => void pipe.a.write(b),
    );
    await pipe.a.open();
    pipe.a.onData((c) => session.receive(c));
    const sim = new SimBoard({ port: pipe.b, clock: fakeClock, seed: 11 + i, logEveryMs: 0, intervalMs: 500, maxFrame: 1024, flash });
    session.start();
    await sim.start();
    boards.set(name, { session, sim, flash });
  }
  const drain = setInterval(() => {
    for (const b of boards.values()) b.session.take().commit?.settled(true);
  }, 200);
  const events: UpdateEvent[] = [];
  const make = () => {
    const u = new Updater(new JobStore(join(dir, "updates.db")), new ImageStore(join(dir, "images"), 4 << 20), (n) => boards.get(n)?.session, settings(), silentLogger());
    u.onEvent((e) => events.push(e));
    return u;
  };
  const f = { boards, events, updater: make() };
  await f.updater.start();
  cleanups.push(async () => {
    clearInterval(drain);
    await f.updater.stop();
    for (const b of boards.values()) {
      await b.sim.stop();
      b.session.stop();
    }
  });
  await advance(2000);
  return Object.assign(f, {
    async restart() {
      await f.updater.stop();
      f.updater = make();
      await f.updater.start();
    },
  });
}

describe("staged rollout across the boards of a gateway", () => {
  it("one board at a time, in order; each starts only after the one before is confirmed; a gateway restart carries on", async () => {
    const f = await fleet(["a", "b", "c"]);
    const image = buildTestImage({ version: "1.1.0", size: 30_000 });
    const jobs = f.updater.submitRollout({ id: "r1", boards: ["a", "b", "c"], manifest: manifestFor(image, "1.1.0"), image });
    expect(jobs.map((j) => [j.board, j.state])).toEqual([["a", "verified"], ["b", "queued"], ["c", "queued"]]);
    // Never two at once: sample the states while it runs.
    let overlap = false;
    const running = () => f.updater.jobs(10).filter((j) => j.rollout === "r1" && ["downloading", "verified", "uploading", "testing"].includes(j.state)).length;
    await until(() => {
      if (running() > 1) overlap = true;
      return f.updater.job("r1/a")?.state === "confirmed" && f.updater.job("r1/b")?.state !== "queued";
    });
    await f.restart(); // b runs or is next: the rollout goes on from its file
    await until(() => {
      if (running() > 1) overlap = true;
      return f.updater.job("r1/c")?.state === "confirmed";
    });
    expect(overlap).toBe(false);
    for (const n of ["a", "b", "c"]) expect(f.boards.get(n)!.flash.running.version).toBe("1.1.0");
    const order = f.events.filter((e) => e.state === "confirmed").map((e) => e.board);
    expect(order).toEqual(["a", "b", "c"]);
    // The same rollout id again is the same rollout.
    expect(f.updater.submitRollout({ id: "r1", boards: ["a", "b", "c"], manifest: manifestFor(image, "1.1.0"), image }).map((j) => j.state)).toEqual(["confirmed", "confirmed", "confirmed"]);
  });

  it("stops at the first board that does not confirm: the rest are not touched", async () => {
    // b's slot is too small for the image: its upload is refused (a board-side failure).
    const f = await fleet(["a", "b", "c"], { b: new TwoSlotFlash({ initial: buildTestImage({ version: "1.0.0", size: 8192 }), slotSize: 10_000 }) });
    const image = buildTestImage({ version: "1.2.0", size: 30_000 });
    f.updater.submitRollout({ id: "r2", boards: ["a", "b", "c"], manifest: manifestFor(image, "1.2.0"), image });
    await until(() => ["failed", "rolled-back"].includes(f.updater.job("r2/c")?.state ?? ""));
    expect(f.updater.job("r2/a")!.state).toBe("confirmed");
    expect(f.updater.job("r2/b")!.state).toBe("failed");
    expect(f.updater.job("r2/c")!.reason).toMatch(/rollout stopped: b failed/);
    expect(f.boards.get("c")!.flash.running.version).toBe("1.0.0");
    expect(f.boards.get("c")!.flash.state.secondary).toBeNull();
  });

  it("refuses a rollout when any board would refuse it, naming the board, and with nothing started", async () => {
    const f = await fleet(["a", "b"]);
    const image = buildTestImage({ version: "1.1.0", size: 10_000 });
    const m = manifestFor(image, "1.1.0");
    expect(() => f.updater.submitRollout({ id: "x", boards: ["a", "nope"], manifest: m, image })).toThrow(/nope: no board named 'nope'/);
    expect(() => f.updater.submitRollout({ id: "y", boards: ["a", "a"], manifest: m, image })).toThrow(/each board once/);
    expect(() => f.updater.submitRollout({ id: "z", boards: [], manifest: m, image })).toThrow(/1 to 100 boards/);
    expect(f.updater.jobs()).toEqual([]);
  });
});
