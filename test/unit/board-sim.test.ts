/**
 * The simulated bridge board against a minimal gateway over an in-memory pipe, on fake time:
 * the handshake, the description, readings kept until acknowledged and resent after a new
 * session, and each fault with the effect it must have at the gateway.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MemoryPipe } from "../../src/buses/serial/memory-link.js";
import type { LinkClock } from "../../src/bridge/link.js";
import { Capability, CommandStatus, PointType, ResetReason } from "../../src/bridge/messages.js";
import { SCHEMA_HASH } from "../../src/bridge/schema.js";
import { SimBoard, type SimBoardOptions, toHex } from "../../src/simulators/board/board.js";
import { type BoardProfile, ROOM_NODE } from "../../src/simulators/board/profiles.js";
import { planBoard } from "../../src/cli/simulate.js";
import { GatewayPeer, type GatewayPeerOptions } from "../helpers/bridge-gateway.js";

/** Time from vitest's fake timers (looked up at each call, so the fakes are used). */
const fakeClock: LinkClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

const cleanups: Array<() => Promise<void>> = [];

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setImmediate", "clearImmediate", "setInterval", "clearInterval", "Date"] });
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  vi.useRealTimers();
});

const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms);

async function setup(board: Partial<SimBoardOptions> = {}, gateway: GatewayPeerOptions = {}) {
  const pipe = new MemoryPipe("room-node");
  const peer = new GatewayPeer(pipe.a, { clock: fakeClock, ...gateway });
  await peer.start();
  const sim = new SimBoard({ port: pipe.b, clock: fakeClock, seed: 7, logEveryMs: 0, ...board });
  await sim.start();
  cleanups.push(async () => {
    await sim.stop();
    await peer.stop();
  });
  return { pipe, peer, sim };
}

/** Lets what is on the wire arrive (half way between two readings), then checks every reading made came exactly once. */
async function expectEveryReadingOnce(peer: GatewayPeer, sim: SimBoard): Promise<void> {
  await advance(300);
  const bootId = sim.currentBootId;
  const seqs = peer.seqs(bootId);
  expect(seqs.length).toBeGreaterThan(0);
  expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
  expect(sim.stats().readingsMade).toBe(seqs.length);
  expect(sim.stats().ringUsed).toBe(0);
}

describe("SimBoard handshake and description", () => {
  it("says Hello with the board's identity, and after the reply describes its points and its children's", async () => {
    const { peer, sim } = await setup({ boardId: "240ac45f9e10" });
    await advance(100);
    expect(peer.hellos).toHaveLength(1);
    const h = peer.hellos[0]!;
    expect(h.protocol).toBe(1);
    expect(h.schemaHash).toBe(SCHEMA_HASH);
    expect(toHex(h.boardId)).toBe("240ac45f9e10");
    expect(h.hardware).toBe("room-node/rev-c");
    expect(h.firmware).toBe("1.4.2");
    expect(h.imageHash).toHaveLength(32);
    expect(h.bootId).not.toBe(0);
    expect(h.bootId).toBe(sim.currentBootId);
    expect(h.resetReason).toBe(ResetReason.RESET_POWER_ON);
    expect(h.capabilities).toBe(Capability.CAP_TIME | Capability.CAP_CHILDREN | Capability.CAP_COMMANDS);
    expect(h.maxFrame).toBe(256);
    expect(h.window).toBe(8);
    expect(sim.sessionUp).toBe(true);

    const own = peer.describes.filter((d) => d.child === "");
    expect(own.flatMap((d) => d.points.map((p) => p.name))).toEqual(["temperature", "humidity", "co2", "setpoint", "led"]);
    expect(own.at(-1)!.complete).toBe(true);
    const setpoint = own[0]!.points.find((p) => p.name === "setpoint")!;
    expect(setpoint).toMatchObject({ writable: true, min: 5, max: 30, unit: "°C", type: PointType.POINT_NUMBER });
    expect(own[0]!.points.find((p) => p.name === "led")).toMatchObject({ writable: true, type: PointType.POINT_BOOL });
    for (const child of ["sensor-a", "sensor-b"]) {
      const d = peer.describes.filter((x) => x.child === child);
      expect(d.flatMap((x) => x.points.map((p) => `${p.child}/${p.name}`))).toEqual([`${child}/temperature`, `${child}/battery`]);
      expect(d.at(-1)!.complete).toBe(true);
    }
    const ids = peer.describes.flatMap((d) => d.points.map((p) => p.id));
    expect(new Set(ids).size).toBe(9);
  });

  it("repeats the same Hello every second while nobody answers, with one boot id", async () => {
    const pipe = new MemoryPipe("nobody");
    await pipe.a.open();
    const heard: Uint8Array[] = [];
    pipe.a.onData((c) => heard.push(c));
    const sim = new SimBoard({ port: pipe.b, clock: fakeClock, seed: 3, logEveryMs: 0 });
    await sim.start();
    cleanups.push(() => sim.stop());
    await advance(3500);
    expect(sim.stats().hellos).toBe(1);
    expect(sim.stats().link.framesOut).toBeGreaterThanOrEqual(4);
    expect(sim.sessionUp).toBe(false);
  });

  it("splits a long description across frames, the last with complete", async () => {
    const many: BoardProfile = {
      ...ROOM_NODE,
      points: Array.from({ length: 24 }, (_, i) => ({ name: `temperature_zone_${i}`, unit: "°C", type: "number" as const, wave: ROOM_NODE.points[0]!.wave! })),
      children: [{ id: "node-7f3a", points: Array.from({ length: 12 }, (_, i) => ({ name: `light_switch_${i}`, unit: "", type: "bool" as const, writable: { initial: false } })) }],
    };
    const { peer } = await setup({ profile: many }, { maxFrame: 256 });
    await advance(200);
    const own = peer.describes.filter((d) => d.child === "");
    const child = peer.describes.filter((d) => d.child === "node-7f3a");
    expect(own.length).toBeGreaterThan(1);
    expect(child.length).toBeGreaterThan(1);
    expect(own.map((d) => d.complete)).toEqual([...own.slice(1).map(() => false), true]);
    expect(child.map((d) => d.complete)).toEqual([...child.slice(1).map(() => false), true]);
    expect(own.flatMap((d) => d.points)).toHaveLength(24);
    expect(child.flatMap((d) => d.points.filter((p) => p.child === "node-7f3a"))).toHaveLength(12);
  });

  it("answers a TimeRequest from its own clock, with the crystal's offset and drift", async () => {
    const { peer, sim } = await setup({ clockOffsetUs: 5_000_000, clockDriftPpm: 50 });
    await advance(100);
    peer.timeRequest(1_700_000_000_000_000n);
    await advance(100_000);
    peer.timeRequest(1_700_000_100_000_000n);
    await advance(50);
    expect(peer.timeReplies).toHaveLength(2);
    const [a, b] = peer.timeReplies;
    expect(a!.t1Us).toBe(1_700_000_000_000_000n);
    expect(a!.t3Us >= a!.t2Us).toBe(true);
    expect(Number(a!.t2Us)).toBeGreaterThanOrEqual(5_000_000);
    // 100 s of real time, 50 ppm fast: 5 ms more on the board's clock.
    expect(Number(b!.t2Us - a!.t2Us)).toBeCloseTo(100_000_000 * (1 + 50e-6), -3);
    expect(sim.stats().timeReplies).toBe(2);
  });
});

describe("SimBoard readings", () => {
  it("numbers readings from 1 per boot and forgets them only when a ReadingsAck covers them", async () => {
    const { peer, sim } = await setup({}, { autoAck: false });
    await advance(3100);
    const seqs = peer.seqs(sim.currentBootId);
    // The two writable points at boot, then 7 measured points (3 own, 2 per child) each second.
    expect(seqs).toEqual(Array.from({ length: 2 + 3 * 7 }, (_, i) => i + 1));
    expect(sim.stats().ringUsed).toBe(23);
    peer.ack(sim.currentBootId, 10);
    await advance(50);
    expect(sim.stats().ringUsed).toBe(13);
    expect(sim.stats().readingsAcked).toBe(10);
    peer.ack(0x1234, 23); // another boot's ack removes nothing
    await advance(50);
    expect(sim.stats().ringUsed).toBe(13);
    await advance(1000);
    expect(peer.heartbeats.at(-1)!.ringUsed).toBe(sim.stats().ringUsed);
  });

  it("resends every unacknowledged reading, with its boot id and seq, after a new session", async () => {
    const { peer, sim } = await setup({}, { autoAck: false });
    await advance(2100);
    const boot = sim.currentBootId;
    const made = sim.stats().readingsMade;
    peer.ack(boot, 5);
    await advance(50);
    peer.arrivals = [];
    peer.restart(); // the gateway came back without its link state
    await advance(100);
    expect(peer.hellos).toHaveLength(2);
    expect(peer.hellos[1]!.bootId).toBe(boot);
    const again = peer.arrivals.filter((r) => r.bootId === boot).map((r) => r.seq);
    expect(again.slice(0, made - 5)).toEqual(Array.from({ length: made - 5 }, (_, i) => i + 6));
    expect(sim.stats().readingsResent).toBe(made - 5);
    expect(peer.repeats).toBe(made - 5);
  });

  it("after a reset a persistent ring still holds the old boot's readings, sent with the old boot id", async () => {
    const { peer, sim } = await setup({ persistent: true }, { autoAck: false });
    await advance(1100);
    const oldBoot = sim.currentBootId;
    const oldMade = sim.stats().readingsMade;
    expect(peer.hellos[0]!.capabilities & Capability.CAP_PERSISTENT_RING).toBeTruthy();
    peer.arrivals = [];
    sim.dtrReboot();
    await advance(100);
    expect(sim.currentBootId).not.toBe(oldBoot);
    expect(peer.hellos.at(-1)).toMatchObject({ bootId: sim.currentBootId, resetReason: ResetReason.RESET_PIN });
    expect(peer.arrivals.filter((r) => r.bootId === oldBoot).map((r) => r.seq)).toEqual(Array.from({ length: oldMade }, (_, i) => i + 1));
    expect(peer.arrivals.filter((r) => r.bootId === sim.currentBootId).map((r) => r.seq)[0]).toBe(1);
    peer.ack(oldBoot, oldMade);
    await advance(50);
    expect(sim.stats().ringUsed).toBe(sim.stats().readingsMade - oldMade);
  });

  it("without a persistent ring a reset loses what was not acknowledged, and numbering starts again", async () => {
    const { peer, sim } = await setup({}, { autoAck: false });
    await advance(1100);
    const lost = sim.stats().ringUsed;
    sim.reboot();
    await advance(100);
    expect(sim.stats().readingsLostInReset).toBe(lost);
    expect(peer.seqs(sim.currentBootId)[0]).toBe(1);
  });

  it("overwrites the oldest readings when the ring is full, and counts them", async () => {
    const { peer, sim } = await setup({ ringCapacity: 10 }, { autoAck: false });
    await advance(3100);
    const s = sim.stats();
    expect(s.ringUsed).toBe(10);
    expect(s.readingsDropped).toBe(s.readingsMade - 10);
    expect(s.ringDropped).toBe(s.readingsMade - 10);
    expect(peer.heartbeats.at(-1)!.ringDropped).toBeGreaterThan(0);
  });

  it("measures on while refused and stays quiet until a HelloRequest", async () => {
    const { peer, sim } = await setup({ schemaHash: 0x0badf00d });
    const reasons: string[] = [];
    sim.on("refused", (e) => reasons.push(e.reason));
    await advance(5000);
    expect(peer.hellos).toHaveLength(1);
    expect(reasons[0]).toMatch(/schema 0x0badf00d differs/);
    expect(sim.stats().state).toBe("refused");
    expect(peer.readings).toHaveLength(0);
    expect(peer.heartbeats).toHaveLength(0);
    const framesOut = sim.stats().link.framesOut;
    await advance(5000);
    expect(sim.stats().link.framesOut).toBe(framesOut);
    expect(sim.stats().readingsMade).toBeGreaterThan(20);

    peer.helloRequest();
    await advance(100);
    expect(peer.hellos).toHaveLength(2);
    expect(sim.stats().state).toBe("refused");
    sim.restoreSchema(); // reflashed with ours
    await advance(100);
    expect(sim.sessionUp).toBe(true);
    expect(peer.hellos.at(-1)).toMatchObject({ schemaHash: SCHEMA_HASH, resetReason: ResetReason.RESET_UPDATE });
  });
});

describe("SimBoard commands", () => {
  it("applies writes within bounds with a read-back and refuses the others", async () => {
    const { peer, sim } = await setup();
    await advance(100);
    const ids = sim.pointIds();
    peer.command(1, ids.get("setpoint")!, { case: "number", value: 22.5 });
    peer.command(2, ids.get("setpoint")!, { case: "number", value: 40 });
    peer.command(3, ids.get("led")!, { case: "flag", value: true });
    peer.command(4, ids.get("humidity")!, { case: "number", value: 50 });
    peer.command(5, 99, { case: "number", value: 1 });
    peer.command(6, ids.get("led")!, { case: "number", value: 1 });
    await advance(200);
    const byId = new Map(peer.results.map((r) => [r.id, r]));
    expect(byId.get(1)).toMatchObject({ status: CommandStatus.COMMAND_OK });
    expect(byId.get(1)!.readback!.value).toEqual({ case: "number", value: 22.5 });
    expect(byId.get(2)!.status).toBe(CommandStatus.COMMAND_REFUSED);
    expect(byId.get(2)!.message).toMatch(/out of bounds 5…30/);
    expect(byId.get(2)!.readback!.value).toEqual({ case: "number", value: 22.5 });
    expect(byId.get(3)!.readback!.value).toEqual({ case: "flag", value: true });
    expect(byId.get(4)!.status).toBe(CommandStatus.COMMAND_REFUSED);
    expect(byId.get(5)!.status).toBe(CommandStatus.COMMAND_UNKNOWN_POINT);
    expect(byId.get(6)!.status).toBe(CommandStatus.COMMAND_REFUSED);
    expect(sim.value("setpoint")).toBe(22.5);
    expect(sim.value("led")).toBe(true);
    // The change is a reading too, and the board logs it.
    expect(peer.readings.some((r) => r.reading.point === ids.get("setpoint") && r.reading.value.value === 22.5)).toBe(true);
    expect(peer.logs.some((l) => /setpoint 22.5 °C from gateway/.test(l))).toBe(true);
  });
});

describe("SimBoard faults", () => {
  it("bit flips: the gateway counts CRC errors and still gets every reading exactly once", async () => {
    const { peer, sim } = await setup({ faults: { bitFlip: 0.002 } });
    await advance(20_000);
    sim.setFaults({ bitFlip: 0 });
    await advance(5_000);
    expect(sim.stats().bitsFlipped).toBeGreaterThan(0);
    const g = peer.link.stats();
    expect(g.crcErrors + g.garbage).toBeGreaterThan(0);
    expect(sim.stats().link.retransmits).toBeGreaterThan(0);
    await expectEveryReadingOnce(peer, sim);
    expect(peer.repeats).toBe(0);
  });

  it("dropped frames are retransmitted; every reading arrives once", async () => {
    const { peer, sim } = await setup({ faults: { drop: 0.1 } });
    await advance(20_000);
    sim.setFaults({ drop: 0 });
    await advance(5_000);
    expect(sim.stats().framesDropped).toBeGreaterThan(0);
    expect(sim.stats().link.retransmits).toBeGreaterThan(0);
    await expectEveryReadingOnce(peer, sim);
  });

  it("duplicated frames are recognised by the link and delivered once", async () => {
    const { peer, sim } = await setup({ faults: { duplicate: 0.2 } });
    await advance(10_000);
    expect(sim.stats().framesDuplicated).toBeGreaterThan(0);
    expect(peer.link.stats().duplicates).toBeGreaterThan(0);
    await expectEveryReadingOnce(peer, sim);
    expect(peer.repeats).toBe(0);
  });

  it("short writes: frames split in small chunks still decode", async () => {
    const { pipe, peer, sim } = await setup({ faults: { shortWrites: true } });
    const chunks: number[] = [];
    pipe.faults.transform = (c, from) => {
      if (from === "b") chunks.push(c.length);
      return c;
    };
    await advance(5_000);
    expect(Math.max(...chunks)).toBeLessThanOrEqual(8);
    expect(peer.link.stats().resyncs).toBe(0);
    await expectEveryReadingOnce(peer, sim);
  });

  it("log spam between frames is skipped as garbage and spoils no frame", async () => {
    const { peer, sim } = await setup({ faults: { spamEveryMs: 300 } });
    await advance(5_000);
    expect(sim.stats().spamBytes).toBeGreaterThan(0);
    expect(peer.link.stats().garbage).toBeGreaterThan(0);
    expect(peer.link.stats().crcErrors).toBe(0);
    expect(sim.stats().link.retransmits).toBe(0);
    expect(peer.garbageTexts.some((t) => /^[IWED] \(\d+\) \w+: /.test(t))).toBe(true);
    await expectEveryReadingOnce(peer, sim);
  });

  it("a reset in the middle of a frame: the half frame is discarded, the board says Hello with a new boot id", async () => {
    const { peer, sim } = await setup();
    await advance(2_000);
    const before = peer.link.stats();
    const oldBoot = sim.currentBootId;
    sim.resetMidFrame();
    await advance(2_000);
    const after = peer.link.stats();
    expect(after.garbage + after.crcErrors).toBeGreaterThan(before.garbage + before.crcErrors);
    expect(sim.currentBootId).not.toBe(oldBoot);
    expect(peer.hellos.at(-1)).toMatchObject({ bootId: sim.currentBootId, resetReason: ResetReason.RESET_WATCHDOG });
    expect(sim.sessionUp).toBe(true);
    await advance(300);
    const seqs = peer.seqs(sim.currentBootId);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    expect(seqs.length).toBeGreaterThan(2);
    expect(sim.stats().ringUsed).toBe(0);
  });

  it("a DTR reboot says Hello with reset reason RESET_PIN", async () => {
    const { peer, sim } = await setup();
    const reboots: ResetReason[] = [];
    sim.on("reboot", (e) => reboots.push(e.reason));
    await advance(500);
    sim.dtrReboot();
    await advance(500);
    expect(reboots).toEqual([ResetReason.RESET_PIN]);
    expect(peer.hellos.map((h) => h.resetReason)).toEqual([ResetReason.RESET_POWER_ON, ResetReason.RESET_PIN]);
  });

  it("wrong baud: nothing valid reaches the gateway for a while, then the board comes back by itself", async () => {
    const { peer, sim } = await setup();
    await advance(1_000);
    const hellos = peer.hellos.length;
    sim.wrongBaud(5_000);
    await advance(50); // what was on the wire already
    const frames = peer.link.stats().frames;
    await advance(4_850);
    expect(peer.link.stats().frames).toBe(frames);
    expect(peer.link.stats().garbage + peer.link.stats().crcErrors + peer.link.stats().oversized).toBeGreaterThan(0);
    expect(sim.stats().garbledBytes).toBeGreaterThan(0);
    await advance(3_000);
    expect(peer.hellos.length).toBeGreaterThan(hellos);
    expect(sim.sessionUp).toBe(true);
    await advance(3_000);
    await expectEveryReadingOnce(peer, sim);
  });

  it("a child that vanishes: ChildEvent, no readings of its points until it comes back with its Describe", async () => {
    const { peer, sim } = await setup();
    const ids = sim.pointIds();
    const bPoints = new Set([ids.get("sensor-b/temperature"), ids.get("sensor-b/battery")]);
    await advance(1_100);
    sim.setChildPresent("sensor-b", false);
    await advance(50);
    const mark = peer.readings.length;
    await advance(3_000);
    expect(peer.childEvents).toEqual([{ child: "sensor-b", present: false }]);
    const during = peer.readings.slice(mark);
    expect(during.length).toBeGreaterThan(0);
    expect(during.some((r) => bPoints.has(r.reading.point))).toBe(false);
    const describes = peer.describes.length;
    sim.setChildPresent("sensor-b", true);
    await advance(1_100);
    expect(peer.childEvents.at(-1)).toEqual({ child: "sensor-b", present: true });
    expect(peer.describes.slice(describes).map((d) => d.child)).toEqual(["sensor-b"]);
    expect(peer.readings.slice(mark).some((r) => bPoints.has(r.reading.point))).toBe(true);
  });

  it("flood: readings as fast as the link takes them, none lost", async () => {
    const { peer, sim } = await setup({ ringCapacity: 5000 });
    await advance(100);
    sim.setFaults({ flood: true });
    await advance(1_000);
    sim.setFaults({ flood: false });
    await advance(1_000);
    expect(sim.stats().readingsMade).toBeGreaterThan(1000);
    expect(sim.stats().readingsDropped).toBe(0);
    await expectEveryReadingOnce(peer, sim);
  });

  it("flood with a full ring (window 16, 1024-byte frames, ring 1000): waits for acks instead of spinning, frames full", async () => {
    // Before: the flood measured until the ring grew, a full ring never grows, and the board hung in that loop.
    const { peer, sim } = await setup({ ringCapacity: 1000, maxFrame: 1024, window: 16 }, { autoAck: false, maxFrame: 1024, window: 16 });
    await advance(100);
    const measured = 7; // a flood round: 3 own points and 2 per child
    sim.setFaults({ flood: true });
    await advance(500);
    const full = sim.stats();
    // Bounded work: the ring filled once, nothing overwritten, nothing more made.
    expect(full.ringUsed).toBeGreaterThan(1000 - measured);
    expect(full.ringUsed).toBeLessThanOrEqual(1000);
    expect(full.readingsMade).toBe(full.ringUsed);
    expect(full.readingsDropped).toBe(0);
    await advance(2_000);
    expect(sim.stats().readingsMade).toBe(full.readingsMade);
    // Each frame was built when the window had room, filled to max_frame: ~50 readings, not ~20.
    expect(peer.arrivals).toHaveLength(full.readingsMade);
    expect(peer.arrivals.length / peer.batches).toBeGreaterThan(40);

    // Progress: acks free the ring, the flood goes on, and stops again at a full ring.
    const boot = sim.currentBootId;
    peer.ack(boot, peer.seqs(boot).at(-1)!);
    await advance(500);
    const after = sim.stats();
    expect(after.readingsAcked).toBe(full.readingsMade);
    expect(after.readingsMade).toBeGreaterThan(full.readingsMade + 1000 - 2 * measured);
    expect(after.ringUsed).toBeLessThanOrEqual(1000);
    expect(after.readingsDropped).toBe(0);
    expect(peer.seqs(boot)).toEqual(Array.from({ length: after.readingsMade }, (_, i) => i + 1));
  });
});

describe("simulate board --max-frame and --window", () => {
  it("are passed to the board, and a bad value names its flag", () => {
    expect(planBoard({ port: "/dev/null", maxFrame: "1024", window: "16" }).board).toMatchObject({ maxFrame: 1024, window: 16 });
    expect(planBoard({ port: "/dev/null" }).board.maxFrame).toBeUndefined();
    for (const bad of ["255", "65536", "1e3", "1024.5", "", " ", "0x400", "-1"]) {
      expect(() => planBoard({ port: "/dev/null", maxFrame: bad }), bad).toThrow(/^--max-frame: expected the largest frame in bytes, from 256 to 65535/);
    }
    for (const bad of ["0", "17", "2.5", "", "eight"]) {
      expect(() => planBoard({ port: "/dev/null", window: bad }), bad).toThrow(/^--window: expected the frames in flight, a whole number from 1 to 16/);
    }
  });
});
