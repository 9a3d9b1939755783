/**
 * The gateway's side of a board, fed by a board-role link in the test: what a board says is
 * hostile — names that mean something to JavaScript, numbers that are not numbers, clocks at the
 * end of their range, ids it never described, floods of log lines — and the session turns it
 * into named readings or counts it, never throws, and keeps its promises: a reading is
 * acknowledged to the board only after the store said it committed.
 */
import { describe, expect, it } from "vitest";
import { BoardSession, type BoardSessionOptions } from "../../src/bridge/board-session.js";
import { CHANNEL } from "../../src/bridge/frame.js";
import { Link } from "../../src/bridge/link.js";
import { decodeTelemetry, encodeLink, encodeLog, encodeTelemetry, PointType, Quality, ResetReason, type TelemetryInit } from "../../src/bridge/messages.js";
import { SCHEMA_HASH } from "../../src/bridge/schema.js";
import { silentLogger } from "../../src/ops/logger.js";
import { until } from "../helpers/wait.js";

interface Pair {
  session: BoardSession;
  board: Link;
  acks: Array<{ boot: number; upto: number }>;
  cursors: Map<string, number>;
  telemetry(init: TelemetryInit["body"]): void;
}

async function pair(over: Partial<BoardSessionOptions> = {}): Promise<Pair> {
  const acks: Pair["acks"] = [];
  const cursors = new Map<string, number>();
  let session: BoardSession | undefined;
  const board = new Link(
    {
      write: (b) => setImmediate(() => session!.receive(b)),
      deliver: (chan, payload) => {
        if (chan !== CHANNEL.TELEMETRY) return;
        const r = decodeTelemetry(payload);
        if (r.ok && r.message.body.case === "ack") acks.push({ boot: r.message.body.value.bootId, upto: r.message.body.value.uptoSeq });
      },
    },
    { role: "board", maxFrame: 1024 },
  );
  session = new BoardSession(
    {
      name: "node-1",
      expectId: null,
      heartbeatMs: 1000,
      offlineAfterMs: 5000,
      timeSyncMs: 60_000,
      commandTimeoutMs: 1000,
      maxPending: 10_000,
      writable: ["setpoint"],
      limits: new Map([["setpoint", { min: 10, max: 25 }]]),
      log: silentLogger(),
      cursor: (k) => cursors.get(k),
      ...over,
    },
    (b) => setImmediate(() => board.receive(b)),
  );
  session.start();
  board.reset();
  board.send(
    CHANNEL.LINK,
    encodeLink({
      body: {
        case: "hello",
        value: { protocol: 1, schemaHash: SCHEMA_HASH, boardId: Uint8Array.of(1, 2, 3, 4), hardware: "t", firmware: "1", bootId: 77, resetReason: ResetReason.RESET_POWER_ON, maxFrame: 1024, window: 8, uptimeUs: 5_000_000n },
      },
    }),
    { reliable: true },
  );
  await until(() => session!.online, "the session online");
  board.setSession({ window: 8, maxFrame: 1024 });
  const p: Pair = {
    session,
    board,
    acks,
    cursors,
    telemetry: (body) => void board.send(CHANNEL.TELEMETRY, encodeTelemetry({ body } as TelemetryInit), { reliable: true }),
  };
  return p;
}

/** The next non-empty take (what a poll would hand the store). */
async function nextTake(p: Pair): Promise<ReturnType<BoardSession["take"]>> {
  let t = p.session.take();
  await until(() => t.readings.length > 0 || ((t = p.session.take()), t.readings.length > 0), "readings from the board");
  return t;
}

const point = (id: number, name: string, extra: Record<string, unknown> = {}) => ({ id, name, unit: "", type: PointType.POINT_NUMBER, writable: false, min: 0, max: 0, child: "", ...extra });

describe("BoardSession", () => {
  it("takes names that mean something to JavaScript as plain point names, refuses ones that are not [a-z0-9_.-]", async () => {
    const p = await pair();
    p.telemetry({
      case: "describe",
      value: { complete: true, points: [point(1, "constructor"), point(2, "tostring"), point(3, "__proto__"), point(4, "Temp"), point(5, "a/b"), point(6, "x".repeat(40)), point(7, "ok")] },
    });
    await until(() => p.session.describedPoints().length > 0, "the description");
    expect(p.session.describedPoints().map((x) => x.name).sort()).toEqual(["constructor", "ok", "tostring"]);
    expect(({} as Record<string, unknown>).constructor).toBe(Object);
  });

  it("turns numbers that are not numbers into bad readings, clamps nothing silently, and names undescribed points", async () => {
    const p = await pair();
    p.telemetry({ case: "describe", value: { complete: true, points: [point(1, "t")] } });
    p.telemetry({
      case: "readings",
      value: {
        bootId: 77,
        firstSeq: 1,
        readings: [
          { point: 1, tUs: 6_000_000n, value: { case: "number", value: Number.NaN }, quality: Quality.GOOD },
          { point: 1, tUs: 6_000_000n, value: { case: "number", value: Number.POSITIVE_INFINITY }, quality: Quality.GOOD },
          { point: 1, tUs: 18_446_744_073_709_551_615n, value: { case: "number", value: -1e308 }, quality: Quality.GOOD },
          { point: 4_294_967_295, tUs: 6_000_000n, value: { case: "text", value: "x".repeat(700) }, quality: Quality.GOOD },
          { point: 1, tUs: 6_000_000n, value: { case: undefined }, quality: Quality.GOOD },
        ],
      },
    });
    (await nextTake(p)).commit?.settled(true); // the online point
    const t = await nextTake(p);
    expect(t.readings.map((r) => [r.point, r.value, r.quality])).toEqual([
      ["node-1/t", null, "bad"],
      ["node-1/t", null, "bad"],
      ["node-1/t", -1e308, "uncertain"],
      ["node-1/point-4294967295", "x".repeat(256), "good"],
      ["node-1/t", null, "bad"],
    ]);
    // A board time at the end of the uint64 range is no time: placed at arrival, uncertain.
    expect(Math.abs(t.readings[2]!.ts - Date.now())).toBeLessThan(5000);
    for (const r of t.readings) expect(Number.isFinite(r.ts)).toBe(true);
  });

  it("acknowledges to the board only what the store committed, and again what comes twice", async () => {
    const p = await pair();
    p.telemetry({ case: "describe", value: { complete: true, points: [point(1, "t")] } });
    const batch = (first: number, n: number) =>
      p.telemetry({ case: "readings", value: { bootId: 77, firstSeq: first, readings: Array.from({ length: n }, (_, i) => ({ point: 1, tUs: BigInt(6e6 + i), value: { case: "number" as const, value: i }, quality: Quality.GOOD })) } });
    (await nextTake(p)).commit?.settled(true); // the online point
    batch(1, 5);
    const taken = await nextTake(p);
    expect(taken.readings).toHaveLength(5);
    expect(taken.commit!.cursors).toEqual([["bridge:01020304:0000004d", 5]]);
    // Not committed: nothing acknowledged, and the readings come back with the next take.
    taken.commit!.settled(false);
    await new Promise((r) => setTimeout(r, 50));
    expect(p.acks).toEqual([]);
    const again = p.session.take();
    expect(again.readings).toHaveLength(5);
    p.cursors.set("bridge:01020304:0000004d", 5);
    again.commit!.settled(true);
    await until(() => p.acks.length > 0, "the ack");
    expect(p.acks).toEqual([{ boot: 77, upto: 5 }]);
    // The board resends 3..7 (it missed the ack for 3..5): 6 and 7 are new, 3..5 recognised.
    batch(3, 5);
    const next = await nextTake(p);
    expect(next.readings.map((r) => r.value)).toEqual([3, 4]);
    expect(p.session.status(null).duplicates).toBe(3);
  });

  it("keeps at most 50 board log lines a second in the gateway's log, and the last 200 for `bridge log`", async () => {
    const lines: string[] = [];
    const log = silentLogger();
    const counting = Object.assign(Object.create(log) as typeof log, { info: (_o: unknown, m: string) => void lines.push(m), child: () => counting });
    const p = await pair({ log: counting });
    for (let i = 0; i < 500; i++) p.board.send(CHANNEL.LOG, encodeLog({ level: 1, tUs: 1n, text: `line ${i}\u0007\u001b[31m` }), { reliable: false });
    await until(() => p.session.logs().length === 200, "the kept lines");
    expect(lines.filter((l) => l.startsWith("board: line")).length).toBeLessThanOrEqual(50);
    expect(p.session.logs().at(-1)!.text).toBe("line 499  [31m");
  });
});
