/**
 * The gateway's SMP client on one board's management channel: one request at a time per board
 * is not required by SMP, but an upload is paced by its own responses (each says the offset the
 * board has), so requests are matched to responses by SMP sequence number and several may be in
 * flight. The frames travel on the bridge's reliable channel; a request still unanswered after
 * `timeoutMs` (the board reset, or ignores the group) fails with a timeout, and every request fails
 * at once when the session is lost.
 */
import { type LinkClock, systemClock } from "./link.js";
import { decodeSmp, encodeSmp, type SmpHeader, SMP_OP, smpError } from "./smp.js";

export class SmpError extends Error {
  constructor(
    message: string,
    readonly kind: "timeout" | "offline" | "refused" | "bad-response" | "busy",
    readonly rc: number | null = null,
  ) {
    super(message);
    this.name = "SmpError";
  }
}

export interface SmpTransport {
  /** Sends one packet on the management channel; false: not now (no session, or the window is full). */
  send(packet: Uint8Array): boolean;
}

interface Waiting {
  group: number;
  id: number;
  resolve(body: Map<string, unknown>): void;
  reject(err: SmpError): void;
  timer: unknown;
}

export interface SmpRequest {
  group: number;
  id: number;
  write: boolean;
  body: Record<string, unknown> | Map<string, unknown>;
  timeoutMs?: number;
}

export class SmpClient {
  private seq = Math.floor(Math.random() * 256);
  private readonly waiting = new Map<number, Waiting>();
  private counts = { requests: 0, responses: 0, timeouts: 0, unmatched: 0, bad: 0 };

  constructor(
    private readonly transport: SmpTransport,
    private readonly defaultTimeoutMs = 5000,
    private readonly clock: LinkClock = systemClock,
  ) {}

  get inFlight(): number {
    return this.waiting.size;
  }

  stats(): Readonly<typeof this.counts> {
    return { ...this.counts };
  }

  /** Sends a request; resolves with the response's body, rejects with an SmpError. */
  request(req: SmpRequest): Promise<Map<string, unknown>> {
    if (this.waiting.size >= 255) return Promise.reject(new SmpError("too many SMP requests in flight", "busy"));
    let seq = this.seq;
    while (this.waiting.has(seq)) seq = (seq + 1) & 0xff;
    this.seq = (seq + 1) & 0xff;
    const header: SmpHeader = { version: 1, op: req.write ? SMP_OP.WRITE : SMP_OP.READ, flags: 0, group: req.group, seq, id: req.id };
    const packet = encodeSmp(header, req.body);
    return new Promise((resolve, reject) => {
      if (!this.transport.send(packet)) {
        reject(new SmpError("the board's link cannot take a management frame now (offline or window full)", "busy"));
        return;
      }
      this.counts.requests++;
      const timer = this.clock.setTimeout(() => {
        this.waiting.delete(seq);
        this.counts.timeouts++;
        reject(new SmpError(`no answer to SMP group ${req.group} command ${req.id} within ${req.timeoutMs ?? this.defaultTimeoutMs} ms`, "timeout"));
      }, req.timeoutMs ?? this.defaultTimeoutMs);
      this.waiting.set(seq, { group: req.group, id: req.id, resolve, reject, timer });
    });
  }

  /** A management frame's payload from the board. Never throws. */
  receive(payload: Uint8Array): void {
    const r = decodeSmp(payload);
    if (!r.ok) {
      this.counts.bad++;
      return;
    }
    const { header, body } = r.packet;
    const w = this.waiting.get(header.seq);
    if (!w || w.group !== header.group || w.id !== header.id || (header.op !== SMP_OP.READ_RSP && header.op !== SMP_OP.WRITE_RSP)) {
      this.counts.unmatched++;
      return;
    }
    this.waiting.delete(header.seq);
    this.clock.clearTimeout(w.timer);
    this.counts.responses++;
    const err = smpError(body);
    if (err) w.reject(new SmpError(`board refused: ${err.text} (rc ${err.rc})`, "refused", err.rc));
    else w.resolve(body);
  }

  /** The session ended: every request in flight fails. */
  fail(reason: string): void {
    for (const [seq, w] of this.waiting) {
      this.waiting.delete(seq);
      this.clock.clearTimeout(w.timer);
      w.reject(new SmpError(reason, "offline"));
    }
  }
}
