/**
 * Reliable delivery of the firmware bridge (docs/firmware-bridge.md, sections 4 and 5): two Link
 * endpoints, a gateway and a board, over a simulated wire that loses, duplicates, reorders and
 * corrupts (seeded), on fake time.
 */
import { describe, expect, it } from "vitest";
import { FLAG, decodeWireFrame, encodeFrame } from "../../src/bridge/frame.js";
import { LINK_TIMING, Link, type LinkClock, type LinkEvents, type LinkOptions } from "../../src/bridge/link.js";
import { prng } from "../../src/simulators/prng.js";

class FakeClock implements LinkClock {
  t = 0;
  private seq = 0;
  private q: { at: number; id: number; fn: () => void }[] = [];
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const h = { at: this.t + ms, id: ++this.seq, fn };
    this.q.push(h);
    return h;
  }
  clearTimeout(h: unknown): void {
    this.q = this.q.filter((x) => x !== h);
  }
  /** Runs every timer due up to `t`, in order. */
  runUntil(t: number): void {
    for (;;) {
      let next: (typeof this.q)[number] | undefined;
      for (const h of this.q) if (h.at <= t && (!next || h.at < next.at || (h.at === next.at && h.id < next.id))) next = h;
      if (!next) break;
      this.q = this.q.filter((x) => x !== next);
      this.t = Math.max(this.t, next.at);
      next.fn();
    }
    this.t = t;
  }
  runFor(ms: number): void {
    this.runUntil(this.t + ms);
  }
}

interface Faults {
  drop?: number;
  dup?: number;
  corrupt?: number;
  reorder?: number;
  /** Cut: nothing gets through. */
  cut?: boolean;
  /** A line speed: each write takes its bytes / this many ms on the wire, one after another (115200 8N1: 11.52). */
  bytesPerMs?: number;
  /** Nothing is delivered before this time (a receiver busy for a moment); then all of it. */
  holdUntil?: number;
}

/** One direction of the wire: each write arrives after 1–4 ms in order (a serial line), or not, or twice, or damaged, or late. */
class Wire {
  faults: Faults;
  private last = 0;
  constructor(
    private readonly clock: FakeClock,
    private readonly rnd: () => number,
    faults: Faults,
    public to?: Link,
  ) {
    this.faults = faults;
  }
  write = (bytes: Uint8Array): void => {
    const f = this.faults;
    if (f.cut || this.rnd() < (f.drop ?? 0)) return;
    const copies = this.rnd() < (f.dup ?? 0) ? 2 : 1;
    for (let c = 0; c < copies; c++) {
      const b = bytes.slice();
      if (this.rnd() < (f.corrupt ?? 0)) b[Math.floor(this.rnd() * b.length)]! ^= 1 << Math.floor(this.rnd() * 8);
      let at = f.bytesPerMs ? Math.max(this.last, this.clock.t) + b.length / f.bytesPerMs : Math.max(this.last, this.clock.t + 1 + this.rnd() * 3);
      if (this.rnd() < (f.reorder ?? 0)) at += 5 + this.rnd() * 20;
      else this.last = at;
      if (f.holdUntil !== undefined) at = Math.max(at, f.holdUntil);
      this.clock.setTimeout(() => this.to?.receive(b), at - this.clock.t);
    }
  };
}

interface End {
  link: Link;
  got: { chan: number; payload: string; reliable: boolean }[];
  lost: string[];
  started: number;
  wire: Wire;
}

function pair(seed: number, faults: Faults = {}, opts: Partial<LinkOptions> = {}) {
  const clock = new FakeClock();
  const rnd = prng(seed);
  const mk = (role: "gateway" | "board"): End => {
    const end = { got: [], lost: [], started: 0, wire: new Wire(clock, rnd, { ...faults }) } as unknown as End;
    const events: LinkEvents = {
      write: (b) => end.wire.write(b),
      deliver: (chan, payload, reliable) => end.got.push({ chan, payload: Buffer.from(payload).toString(), reliable }),
      sessionLost: (r) => end.lost.push(r),
      sessionStarted: () => end.started++,
      error: (err) => {
        throw err;
      },
    };
    end.link = new Link(events, { role, clock, ...opts });
    return end;
  };
  const gw = mk("gateway");
  const board = mk("board");
  gw.wire.to = board.link;
  board.wire.to = gw.link;
  return { clock, gw, board };
}

const text = (s: string) => new TextEncoder().encode(s);

/** The board says Hello (REL 0 on channel 0); the gateway replies (its REL 0 on channel 0). */
function handshake(p: ReturnType<typeof pair>): void {
  p.board.link.reset();
  expect(p.board.link.send(0, text("hello"), { reliable: true })).toBe("sent");
  for (let i = 0; i < 200 && !p.gw.got.some((g) => g.payload === "hello"); i++) p.clock.runFor(10);
  expect(p.gw.link.send(0, text("reply"), { reliable: true })).toBe("sent");
  for (let i = 0; i < 200 && !p.board.got.some((g) => g.payload === "reply"); i++) p.clock.runFor(10);
  expect(p.gw.started).toBe(1);
}

/** Sends n numbered messages from `from`, refilling on backpressure, until all are out or time runs out. */
function pump(p: ReturnType<typeof pair>, from: End, chan: number, n: number, prefix: string): void {
  let next = 0;
  const fill = () => {
    while (next < n) {
      const r = from.link.send(chan, text(`${prefix}${next}`), { reliable: true });
      if (r === "full") return;
      expect(["sent", "queued"]).toContain(r);
      next++;
    }
  };
  fill();
  for (let i = 0; i < 20_000 && (next < n || from.link.stats().inFlight > 0); i++) {
    p.clock.runFor(5);
    fill();
  }
}

describe("Link", () => {
  it("delivers in order on a clean wire, with acks riding on data or sent 20 ms later", () => {
    const p = pair(1);
    handshake(p);
    expect(p.gw.got).toEqual([{ chan: 0, payload: "hello", reliable: true }]);
    expect(p.board.got).toEqual([{ chan: 0, payload: "reply", reliable: true }]);
    pump(p, p.board, 1, 50, "r");
    expect(p.gw.got.slice(1).map((g) => g.payload)).toEqual(Array.from({ length: 50 }, (_, i) => `r${i}`));
    const s = p.board.link.stats();
    expect(s).toMatchObject({ retransmits: 0, inFlight: 0, session: true, crcErrors: 0 });
    expect(s.srttMs).toBeGreaterThan(0);
    expect(s.srttMs).toBeLessThan(LINK_TIMING.ackDelayMs + 10);
    // Unreliable frames go out at once and carry the current ack.
    p.board.link.send(3, text("log line"), { reliable: false });
    p.clock.runFor(10);
    expect(p.gw.got.at(-1)).toEqual({ chan: 3, payload: "log line", reliable: false });
  });

  it("acknowledges at once when half the window is taken, so a full window never waits the 20 ms", () => {
    const p = pair(9);
    handshake(p);
    p.gw.link.setSession({ window: 8 });
    p.board.link.setSession({ window: 8 });
    const acksBefore = p.gw.link.stats().framesOut;
    for (let i = 0; i < 4; i++) p.board.link.send(1, text(`r${i}`), { reliable: true });
    // The wire takes 1–4 ms per frame: well before the 20 ms delayed ack.
    p.clock.runFor(8);
    expect(p.gw.got.slice(1).map((g) => g.payload)).toEqual(["r0", "r1", "r2", "r3"]);
    expect(p.gw.link.stats().framesOut).toBe(acksBefore + 1);
    expect(p.board.link.stats().inFlight).toBe(0);
  });

  it("on a slow line, a full window of long frames is not resent: the timeout follows the measured round trip", () => {
    // 115200 8N1: a 1024-byte frame is ~89 ms on the wire, a window of 8 is ~0.7 s — past the
    // initial 300 ms timeout; a fixed timeout would resend whole windows again and again.
    const p = pair(12, { bytesPerMs: 11.52 });
    handshake(p);
    p.gw.link.setSession({ window: 8, maxFrame: 1024 });
    p.board.link.setSession({ window: 8, maxFrame: 1024 });
    const payload = "x".repeat(1000);
    let sent = 0;
    const fill = () => {
      while (sent < 200 && p.board.link.send(1, text(`${payload}${sent}`), { reliable: true }) !== "full") sent++;
    };
    fill();
    for (let i = 0; i < 10_000 && (sent < 200 || p.board.link.stats().inFlight > 0); i++) {
      p.clock.runFor(10);
      fill();
      // Once, the gateway's acks come 450 ms late (an agent busy for a moment).
      if (i === 300) p.gw.wire.faults.holdUntil = p.clock.t + 450;
    }
    expect(p.gw.got.length - 1).toBe(200);
    const s = p.board.link.stats();
    // With a fixed 300 ms timeout that pause resent the whole window (8 frames, 0.7 s of line).
    expect(s.retransmits).toBe(0);
    expect(s.rtoMs).toBeGreaterThan(LINK_TIMING.rtoInitialMs);
  });

  it("acknowledges with a pure ack when nothing else goes out within 20 ms", () => {
    const p = pair(2);
    handshake(p);
    const writes: Uint8Array[] = [];
    const w = p.gw.wire.write;
    p.gw.wire.write = (b) => {
      writes.push(b);
      w(b);
    };
    p.board.link.send(1, text("x"), { reliable: true });
    p.clock.runFor(5);
    expect(writes).toHaveLength(0);
    p.clock.runFor(LINK_TIMING.ackDelayMs);
    expect(writes).toHaveLength(1);
    const f = decodeWireFrame(writes[0]!);
    expect(f.ok && { chan: f.frame.chan, flags: f.frame.flags, ack: f.frame.ack, n: f.frame.payload.length }).toEqual({ chan: 0, flags: FLAG.ACK, ack: 1, n: 0 });
  });

  it.each([11, 12, 13, 14, 15])("delivers every REL message exactly once, in order, over a bad wire (seed %i)", (seed) => {
    const p = pair(seed, { drop: 0.1, dup: 0.05, corrupt: 0.05, reorder: 0.05 });
    handshake(p);
    pump(p, p.board, 1, 300, "t");
    pump(p, p.gw, 2, 100, "c");
    p.clock.runFor(10_000);
    expect(p.gw.got.filter((g) => g.chan === 1).map((g) => g.payload)).toEqual(Array.from({ length: 300 }, (_, i) => `t${i}`));
    expect(p.board.got.filter((g) => g.chan === 2).map((g) => g.payload)).toEqual(Array.from({ length: 100 }, (_, i) => `c${i}`));
    expect(p.board.lost).toEqual([]);
    expect(p.gw.lost).toEqual([]);
    expect(p.gw.started).toBe(1);
    const gs = p.gw.link.stats();
    const bs = p.board.link.stats();
    expect(bs.retransmits).toBeGreaterThan(0);
    expect(gs.crcErrors + gs.garbage + bs.crcErrors + bs.garbage).toBeGreaterThan(0);
    expect(gs.duplicates).toBeGreaterThan(0);
    expect(gs.naksSent + bs.naksSent).toBeGreaterThan(0);
  });

  it("recovers a lost frame by NAK, well before the retransmission timeout", () => {
    const p = pair(3);
    handshake(p);
    let n = 0;
    const w = p.board.wire.write;
    p.board.wire.write = (b) => {
      if (n++ !== 1) w(b);
    };
    const t0 = p.clock.t;
    for (const m of ["a", "b", "c"]) p.board.link.send(1, text(m), { reliable: true });
    let done = -1;
    for (let i = 0; i < 100 && done < 0; i++) {
      p.clock.runFor(1);
      if (p.gw.got.filter((g) => g.chan === 1).length === 3) done = p.clock.t - t0;
    }
    expect(p.gw.got.filter((g) => g.chan === 1).map((g) => g.payload)).toEqual(["a", "b", "c"]);
    expect(done).toBeGreaterThan(0);
    expect(done).toBeLessThan(LINK_TIMING.rtoInitialMs / 4);
    expect(p.gw.link.stats().naksSent).toBe(1);
    expect(p.board.link.stats()).toMatchObject({ naksReceived: 1, timeouts: 0 });
  });

  it("without a later frame to show the gap, the timeout resends the lost one", () => {
    const p = pair(4);
    handshake(p);
    let n = 0;
    const w = p.board.wire.write;
    p.board.wire.write = (b) => {
      if (n++ !== 0) w(b);
    };
    p.board.link.send(1, text("only"), { reliable: true });
    p.clock.runFor(LINK_TIMING.rtoInitialMs - 1);
    expect(p.gw.got.filter((g) => g.chan === 1)).toHaveLength(0);
    p.clock.runFor(10);
    expect(p.gw.got.filter((g) => g.chan === 1)).toHaveLength(1);
    expect(p.board.link.stats()).toMatchObject({ timeouts: 1, retransmits: 1 });
  });

  it("a busy side pauses new REL frames without losing the session, and takes them all when it clears", () => {
    const p = pair(5);
    handshake(p);
    p.gw.link.setBusy(true);
    p.clock.runFor(10);
    expect(p.board.link.stats().peerBusy).toBe(true);
    for (let i = 0; i < 20; i++) expect(["sent", "queued"]).toContain(p.board.link.send(1, text(`b${i}`), { reliable: true }));
    expect(p.board.link.stats()).toMatchObject({ inFlight: 0, queued: 20 });
    p.clock.runFor(60_000);
    expect(p.gw.got.filter((g) => g.chan === 1)).toHaveLength(0);
    expect(p.board.lost).toEqual([]);
    const t0 = p.clock.t;
    p.gw.link.setBusy(false);
    while (p.gw.got.filter((g) => g.chan === 1).length < 20 && p.clock.t - t0 < 1000) p.clock.runFor(1);
    expect(p.gw.got.filter((g) => g.chan === 1).map((g) => g.payload)).toEqual(Array.from({ length: 20 }, (_, i) => `b${i}`));
    expect(p.clock.t - t0).toBeLessThan(100);
  });

  it("frames already out when the peer turned busy are kept waiting, then asked for by NAK", () => {
    const p = pair(6);
    handshake(p);
    p.gw.link.setBusy(true); // the board has not heard it yet
    for (let i = 0; i < 3; i++) p.board.link.send(1, text(`x${i}`), { reliable: true });
    p.clock.runFor(30_000);
    expect(p.gw.link.stats()).toMatchObject({ naksSent: 0 });
    expect(p.gw.link.stats().busyDrops).toBeGreaterThan(0);
    expect(p.board.lost).toEqual([]);
    const t0 = p.clock.t;
    p.gw.link.setBusy(false);
    while (p.gw.got.filter((g) => g.chan === 1).length < 3 && p.clock.t - t0 < 1000) p.clock.runFor(1);
    expect(p.clock.t - t0).toBeLessThan(50);
    expect(p.gw.got.filter((g) => g.chan === 1).map((g) => g.payload)).toEqual(["x0", "x1", "x2"]);
  });

  it("loses the session after 8 timeouts without progress, at 300+600+1200+2400+3000×4 ms", () => {
    const p = pair(7);
    handshake(p);
    p.board.wire.faults.cut = true;
    const t0 = p.clock.t;
    p.board.link.send(1, text("into the void"), { reliable: true });
    p.clock.runUntil(t0 + 16_499);
    expect(p.board.lost).toEqual([]);
    p.clock.runUntil(t0 + 16_501);
    expect(p.board.lost).toHaveLength(1);
    expect(p.board.link.stats()).toMatchObject({ session: false, retransmits: 7, timeouts: 8, inFlight: 0, sessionsLost: 1 });
    expect(p.board.link.send(1, text("x"), { reliable: true })).toBe("no-session");
  });

  it("acknowledges a REL frame on an unknown channel, counts it, and delivers nothing", () => {
    const p = pair(8);
    handshake(p);
    p.board.link.send(5, text("future"), { reliable: true });
    p.board.link.send(1, text("after"), { reliable: true });
    p.clock.runFor(100);
    expect(p.gw.got.map((g) => g.payload)).toEqual(["hello", "after"]);
    expect(p.gw.link.stats().unknownChannel).toBe(1);
    expect(p.board.link.stats()).toMatchObject({ inFlight: 0, retransmits: 0 });
  });

  it("takes a resent Hello as a duplicate, and a new Hello as a new session", () => {
    const p = pair(9);
    handshake(p);
    p.gw.link.receive(encodeFrame({ chan: 0, flags: FLAG.REL, seq: 0, ack: 0, payload: text("hello") }));
    expect(p.gw.started).toBe(1);
    expect(p.gw.link.stats().duplicates).toBe(1);
    p.board.link.reset();
    p.board.link.send(0, text("hello again"), { reliable: true });
    p.clock.runFor(50);
    expect(p.gw.started).toBe(2);
    expect(p.gw.got.map((g) => g.payload)).toEqual(["hello", "hello again"]);
  });

  it("ignores REL frames outside a session (the gateway before a Hello)", () => {
    const p = pair(10);
    p.gw.link.receive(encodeFrame({ chan: 1, flags: FLAG.REL | FLAG.ACK, seq: 40, ack: 7, payload: text("stale") }));
    p.gw.link.receive(encodeFrame({ chan: 0, flags: 0, seq: 0, ack: 0, payload: text("heartbeat") }));
    expect(p.gw.got).toEqual([{ chan: 0, payload: "heartbeat", reliable: false }]);
    expect(p.gw.link.stats()).toMatchObject({ outOfSession: 1, naksSent: 0, framesOut: 0 });
  });

  it("bounds its queue: refuses with 'full' and says when there is room again", () => {
    const p = pair(16, {}, { queueLimit: 4, window: 2 });
    handshake(p);
    let drained = 0;
    (p.board.link as unknown as { events: LinkEvents }).events.drained = () => drained++;
    const results = Array.from({ length: 8 }, (_, i) => p.board.link.send(1, text(`q${i}`), { reliable: true }));
    expect(results).toEqual(["sent", "sent", "queued", "queued", "queued", "queued", "full", "full"]);
    p.clock.runFor(200);
    expect(drained).toBe(1);
    expect(p.gw.got.filter((g) => g.chan === 1)).toHaveLength(6);
    expect(p.board.link.send(1, new Uint8Array(250), { reliable: true })).toBe("too-large");
    p.board.link.setSession({ maxFrame: 512 });
    expect(p.board.link.send(1, new Uint8Array(250), { reliable: true })).toBe("sent");
  });

  it("reports text between frames once per burst, and keeps going", () => {
    const p = pair(17);
    const texts: string[] = [];
    (p.gw.link as unknown as { events: LinkEvents }).events.garbage = (t) => texts.push(t);
    p.gw.link.receive(text("\0boot: ESP-ROM:esp32s3-20210327\r\n\0more\r\n\0"));
    handshake(p);
    expect(texts).toEqual(["boot: ESP-ROM:esp32s3-20210327"]);
    expect(p.gw.link.stats()).toMatchObject({ garbage: 2, resyncs: 2 });
  });

  it("never throws on random bytes, and a throwing handler stays in its place", () => {
    const errors: unknown[] = [];
    const link = new Link(
      {
        write: () => {
          throw new Error("port gone");
        },
        deliver: () => {
          throw new Error("app bug");
        },
        error: (e) => errors.push(e),
      },
      { role: "gateway", clock: new FakeClock() },
    );
    const rnd = prng(99);
    for (let i = 0; i < 2000; i++) link.receive(Uint8Array.from({ length: Math.floor(rnd() * 64) }, () => (rnd() < 0.1 ? 0 : Math.floor(rnd() * 256))));
    link.receive(encodeFrame({ chan: 0, flags: FLAG.REL, seq: 0, ack: 0, payload: text("hello") }));
    expect(link.stats().callbackErrors).toBeGreaterThan(0);
    expect(errors.length).toBe(link.stats().callbackErrors);
    link.close();
  });
});
