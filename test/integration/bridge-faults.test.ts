/**
 * The board simulator's faults against the gateway's side (bridge source → polling → outbox),
 * each with its expected outcome: what the gateway counts and logs, that the link recovers (or
 * the board is refused with the reason), and that every reading the board made reaches the
 * outbox exactly once — recognised by (board, boot, board sequence) when it comes again.
 */
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { Polling } from "../../src/agent/parts/polling.js";
import { Recorder } from "../../src/agent/recorder.js";
import { Scheduler } from "../../src/agent/scheduler.js";
import { I2cBusPool } from "../../src/buses/i2c/queue.js";
import { PortRegistry } from "../../src/buses/ports.js";
import type { ByteLink } from "../../src/buses/serial/byte-link.js";
import { encodeFrame } from "../../src/bridge/frame.js";
import { createLogger } from "../../src/ops/logger.js";
import { ResetReason, SimBoard, type SimBoardOptions } from "../../src/simulators/board/board.js";
import { ROOM_NODE } from "../../src/simulators/board/profiles.js";
import { type BridgeSource, createBridgeSource } from "../../src/sources/bridge/source.js";
import { bridge } from "../../src/sources/bridge/type.js";
import { Outbox } from "../../src/store/outbox.js";
import { waitFor } from "../helpers/wait.js";

const MEASURED = new Set(["temperature", "humidity", "co2", "setpoint", "led", "sensor-a/temperature", "sensor-a/battery", "sensor-b/temperature", "sensor-b/battery"]);

interface Rig {
  board: SimBoard;
  source: BridgeSource;
  outbox: Outbox;
  logs: string[];
  /** Board readings in the outbox (not the gateway's own online points). */
  stored(): Array<{ point: string; ts: number; value: unknown }>;
  status(): NonNullable<ReturnType<BridgeSource["status"]>["devices"][number]["board"]>;
  /** Stops measuring and waits until the board's ring is empty: everything made is acknowledged. */
  settle(timeoutMs?: number): Promise<void>;
}

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

async function rig(sim: Partial<SimBoardOptions> = {}, cfg: Record<string, unknown> = {}): Promise<Rig> {
  const outbox = Outbox.open({ path: ":memory:", quota: 256 * 1024 * 1024, whenFull: "drop-oldest", maxAge: 86_400_000, sync: "normal" });
  const logs: string[] = [];
  const log = createLogger({ pretty: false, level: "debug", destination: new Writable({ write: (c: Buffer, _e, cb) => (logs.push(c.toString()), cb()) }) });
  let board: SimBoard | undefined;
  const config = bridge.schema.parse({ type: "bridge", name: "node-1", simulated: "room-node", writable: ["setpoint"], heartbeat: "200ms", offline_after: "1s", interval: "50ms", ...cfg });
  const ports = new PortRegistry();
  const deps = { log, storePath: ":memory:", simulators: new Map(), ports, i2cBuses: new I2cBusPool(ports), cursor: (k: string) => outbox.cursor(k) };
  const source = createBridgeSource(config, deps, async (end: ByteLink) => {
    board = new SimBoard({ port: end, profile: ROOM_NODE, seed: 5, intervalMs: 20, ringCapacity: 20_000, logEveryMs: 0, ...sim });
    return board;
  });
  const polling = new Polling([{ source, type: "bridge" }], [], new Scheduler(), new Recorder(() => outbox, log), log);
  await polling.start();
  stops.push(async () => {
    await polling.stop();
    outbox.close();
  });
  const r: Rig = {
    get board() {
      return board!;
    },
    source,
    outbox,
    logs,
    stored: () => outbox.readAfter(0, 1_000_000).filter((x) => MEASURED.has(x.point.slice("node-1/".length))),
    status: () => source.status().devices[0]!.board!,
    settle: async (timeoutMs = 20_000) => {
      board!.pause();
      await waitFor("the board's ring empty (everything acknowledged)", () => (board!.stats().ringUsed === 0 && board!.stats().state === "session") || undefined, {
        timeoutMs,
        detail: () => JSON.stringify({ ...board!.stats(), link: undefined }),
      });
    },
  };
  await waitFor("the board online", () => source.status().devices[0]!.online || undefined, { timeoutMs: 10_000 });
  return r;
}

/** Every reading the board made and did not lose itself is stored once. */
function expectEachOnce(r: Rig): void {
  const s = r.board.stats();
  const stored = r.stored();
  expect(stored.length).toBe(s.readingsMade - s.readingsLostInReset - s.readingsDropped);
  expect(new Set(stored.map((x) => `${x.point}@${x.ts}`)).size).toBe(stored.length);
}

const logged = (r: Rig, re: RegExp) => r.logs.some((l) => re.test(l));

describe("bridge faults, each with its outcome", () => {
  it("clean: readings placed in UTC by the board's clock, each once, acknowledged after the commit", { timeout: 30_000 }, async () => {
    const before = Date.now();
    const r = await rig({ clockOffsetUs: 5e9, clockDriftPpm: 40 });
    await waitFor("readings", () => r.stored().length >= 200 || undefined);
    await r.settle();
    expectEachOnce(r);
    for (const x of r.stored()) {
      expect(x.ts).toBeGreaterThanOrEqual(before - 50);
      expect(x.ts).toBeLessThanOrEqual(Date.now() + 50);
    }
    // The board's cursor is the outbox's: what it acknowledged was committed first.
    const key = `bridge:${r.status().id}:${r.status().bootId}`;
    expect(r.outbox.cursor(key)).toBe(r.board.stats().readingsMade);
    expect(r.status()).toMatchObject({ crcErrors: 0, garbage: 0, children: ["sensor-a", "sensor-b"] });
  });

  it("bit flips: CRC errors counted and NAKed, every reading still stored once", { timeout: 40_000 }, async () => {
    const r = await rig({ faults: { bitFlip: 0.0005 } });
    await waitFor("CRC errors and readings", () => (r.status().crcErrors + r.status().garbage >= 3 && r.stored().length >= 300) || undefined, { timeoutMs: 30_000 });
    r.board.setFaults({ bitFlip: 0 });
    await r.settle();
    expectEachOnce(r);
    expect(r.status().naksSent).toBeGreaterThan(0);
  });

  it("dropped and doubled frames: retransmissions and duplicates, each reading once", { timeout: 40_000 }, async () => {
    const r = await rig({ faults: { drop: 0.05, duplicate: 0.05 } });
    await waitFor("some retransmits", () => (r.board.stats().link.retransmits > 0 && r.stored().length >= 300) || undefined, { timeoutMs: 30_000 });
    r.board.setFaults({ drop: 0, duplicate: 0 });
    await r.settle();
    expectEachOnce(r);
  });

  it("short writes: frames in 1–8 byte pieces decode as whole frames", { timeout: 30_000 }, async () => {
    const r = await rig({ faults: { shortWrites: true } });
    await waitFor("readings", () => r.stored().length >= 200 || undefined);
    await r.settle();
    expectEachOnce(r);
    expect(r.status().crcErrors).toBe(0);
  });

  it("log text between frames: counted as resyncs, its first line logged, no frame lost", { timeout: 30_000 }, async () => {
    const r = await rig({ faults: { spamEveryMs: 50 } });
    await waitFor("spam seen", () => (r.status().garbage >= 5 && r.stored().length >= 200) || undefined);
    await r.settle();
    expectEachOnce(r);
    expect(r.status().crcErrors).toBe(0);
    expect(logged(r, /bytes between frames \(not a frame\)/)).toBe(true);
  });

  it("a reset in the middle of a frame: the half frame counted, a new session with the new boot, the reset reason shown", { timeout: 30_000 }, async () => {
    const r = await rig({ persistent: true });
    await waitFor("readings", () => r.stored().length >= 50 || undefined);
    const firstBoot = r.status().bootId;
    r.board.resetMidFrame();
    await waitFor("the new session", () => (r.status().bootId !== firstBoot && r.source.status().devices[0]!.online) || undefined);
    expect(r.status().resetReason).toBe("watchdog");
    expect(r.status().sessions).toBe(2);
    await r.settle();
    // A persistent ring: what the old boot had not got acknowledged is resent, old boot id and all.
    expectEachOnce(r);
    expect(r.status().garbage + r.status().crcErrors).toBeGreaterThan(0);
  });

  it("a DTR reboot: the reset reason is 'reset pin'; a board without a persistent ring loses only what it had not sent", { timeout: 30_000 }, async () => {
    const r = await rig();
    await waitFor("readings", () => r.stored().length >= 50 || undefined);
    r.board.dtrReboot();
    await waitFor("the board back", () => (r.status().resetReason === "reset pin" && r.source.status().devices[0]!.online) || undefined);
    await r.settle();
    // What the board lost in the reset had maybe reached the gateway already (not yet acknowledged): stored once or not at all.
    const s = r.board.stats();
    const stored = r.stored();
    expect(stored.length).toBeGreaterThanOrEqual(s.readingsMade - s.readingsLostInReset);
    expect(stored.length).toBeLessThanOrEqual(s.readingsMade);
    expect(new Set(stored.map((x) => `${x.point}@${x.ts}`)).size).toBe(stored.length);
  });

  it("a lost acknowledgement: the board resends what the gateway had already stored, recognised as duplicates and stored once", { timeout: 30_000 }, async () => {
    const r = await rig({ persistent: true });
    await waitFor("readings", () => r.stored().length >= 50 || undefined);
    // The gateway's acks stop reaching the board: it keeps what it sent (the gateway stored it),
    // then reboots and resends all of it under its old boot id.
    r.board.loseAcks();
    const acked = r.board.stats().readingsAcked;
    await waitFor("readings sent and not acknowledged", () => (r.board.stats().ringUsed >= 30 ? true : undefined));
    r.board.pause();
    await waitFor("the gateway storing them", () => (r.stored().length >= r.board.stats().readingsMade ? true : undefined));
    r.board.reboot(ResetReason.RESET_SOFTWARE);
    r.board.loseAcks(false);
    await r.settle();
    expect(r.board.stats().readingsResent).toBeGreaterThan(0);
    expect(r.board.stats().readingsAcked).toBeGreaterThan(acked);
    expect(r.status().duplicates).toBeGreaterThan(0);
    expectEachOnce(r);
  });

  it("wrong baud for a while: garbage counted, the board offline, then back by itself", { timeout: 30_000 }, async () => {
    const r = await rig();
    await waitFor("readings", () => r.stored().length >= 20 || undefined);
    r.board.wrongBaud(2500);
    await waitFor("the board offline", () => (!r.source.status().devices[0]!.online ? true : undefined), { timeoutMs: 10_000 });
    await waitFor("the board back", () => r.source.status().devices[0]!.online || undefined, { timeoutMs: 15_000 });
    expect(r.status().garbage).toBeGreaterThan(0);
    expect(logged(r, /board offline/)).toBe(true);
  });

  it("a board built from another schema: refused with the reason in the status and the log, accepted once rebuilt", { timeout: 30_000 }, async () => {
    const r = await rig();
    r.board.wrongSchema(0x0badf00d);
    await waitFor("the refusal", () => (r.status().state === "refused" ? true : undefined));
    expect(r.status().refusedReason).toMatch(/schema 0x0badf00d differs from the gateway's 0x[0-9a-f]{8}/);
    expect(r.source.status().devices[0]!.lastError).toMatch(/schema 0x0badf00d/);
    expect(logged(r, /board refused: schema 0x0badf00d/)).toBe(true);
    r.board.restoreSchema();
    // The gateway asks again (after a refusal, once a minute); a restored board says hello itself.
    await waitFor("accepted again", () => r.source.status().devices[0]!.online || undefined, { timeoutMs: 15_000 });
  });

  it("a child node that vanishes: its online point goes false and comes back, its readings stop meanwhile", { timeout: 30_000 }, async () => {
    const r = await rig();
    await waitFor("readings", () => r.stored().length >= 20 || undefined);
    r.board.setChildPresent("sensor-a", false);
    await waitFor("sensor-a gone", () => (!r.status().children.includes("sensor-a") ? true : undefined));
    const online = () => r.outbox.readAfter(0, 1_000_000).filter((x) => x.point === "node-1/sensor-a/online").map((x) => x.value);
    await waitFor("sensor-a/online false stored", () => (online().at(-1) === false ? true : undefined));
    r.board.setChildPresent("sensor-a", true);
    await waitFor("sensor-a back", () => (online().at(-1) === true && r.status().children.includes("sensor-a") ? true : undefined));
  });

  it("a flood with a small gateway buffer: the gateway says busy, the board holds back, nothing is lost", { timeout: 40_000 }, async () => {
    const r = await rig({ faults: { flood: true }, maxFrame: 1024 }, { max_pending: 100, interval: "200ms" });
    await waitFor("thousands of readings", () => r.stored().length >= 5000 || undefined, { timeoutMs: 30_000 });
    r.board.setFaults({ flood: false });
    await r.settle();
    // A flood makes many readings per millisecond (same point and time): the count says it all.
    const s = r.board.stats();
    expect(r.stored().length).toBe(s.readingsMade);
    expect(s.readingsDropped).toBe(0);
    // It did hold the board back: frames arrived while busy and were asked for again.
    expect((r.source.board.details().link as { busyDrops: number }).busyDrops).toBeGreaterThan(0);
  });

  it("an oversized chunk, an unknown channel and a bad CRC: each counted, named once in the log, the link goes on", { timeout: 30_000 }, async () => {
    const r = await rig();
    const session = r.source.board;
    session.receive(new Uint8Array(3000).fill(0x41));
    session.receive(Uint8Array.of(0));
    session.receive(encodeFrame({ chan: 5, flags: 0, seq: 0, ack: 0, payload: Uint8Array.of(1, 2, 3) }));
    const bad = encodeFrame({ chan: 1, flags: 0, seq: 0, ack: 0, payload: Uint8Array.of(8, 1) });
    bad[bad.length - 3]! ^= 0xff;
    session.receive(bad);
    expect(r.status()).toMatchObject({ oversized: 1, unknownChannel: 1 });
    expect(r.status().crcErrors).toBeGreaterThanOrEqual(1);
    expect(logged(r, /largest frame \(1024 bytes\) was dropped/)).toBe(true);
    expect(logged(r, /a channel this gateway does not know/)).toBe(true);
    expect(logged(r, /a frame with a bad CRC/)).toBe(true);
    await r.settle();
    expectEachOnce(r);
  });

  it("garbage and hostile messages from a board never throw past the source", { timeout: 30_000 }, async () => {
    const r = await rig();
    // Straight into the session: random bytes, a frame of every channel with junk payloads.
    const session = r.source.board;
    let seed = 42;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) & 0xff);
    for (let i = 0; i < 200; i++) session.receive(Uint8Array.from({ length: 1 + (i % 300) }, rnd));
    expect(r.source.status().devices[0]!.online).toBe(true);
    await r.settle();
    expectEachOnce(r);
  });
});
