/**
 * One bridged board as a source: finds and opens its port (a fixed one, or any probed port where
 * a board with its id answers), runs the board session over it, and finds the board again when
 * it goes silent, is unplugged or re-enumerates under another name. Each tick hands the board's
 * readings to the store with their cursors; the board hears "stored" only after the commit.
 * Its writable points are commands on target `<name>` (action `write`).
 */
import { z } from "zod";
import { BoardSession } from "../../bridge/board-session.js";
import { serialPortId } from "../../buses/ports.js";
import type { ByteLink } from "../../buses/serial/byte-link.js";
import { MemoryPipe } from "../../buses/serial/memory-link.js";
import { SerialLink } from "../../buses/serial/serial-link.js";
import type { Actuator } from "../../model/command.js";
import type { PollCommit } from "../../model/cursor.js";
import type { Logger } from "../../model/logger.js";
import type { Reading } from "../../model/reading.js";
import type { Source, SourceDetail } from "../source.js";
import type { SourceDeps } from "../type.js";
import { candidatePorts } from "./finder.js";
import type { BridgeSourceConfig } from "./type.js";

/** How often the port is looked after (opened, searched, given up on). */
const SUPERVISE_MS = 250;
const REOPEN_MS = 2000;

/** A simulated board inside the agent (demo, tests): started on the board's end of a pipe. */
export interface SimulatedBoard {
  start(): Promise<void>;
  stop(): Promise<void>;
}
export type SimulatedBoardFactory = (end: ByteLink, cfg: BridgeSourceConfig) => Promise<SimulatedBoard>;

/** Board ids in use by the sources of one agent (one map per port registry, i.e. per agent). */
const idsInUse = new WeakMap<object, Map<string, string>>();

export class BridgeSource implements Source {
  readonly interval: number;
  private link: ByteLink | null = null;
  private port: string | null = null;
  private readonly session: BoardSession;
  private commit_: PollCommit | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = true;
  private busy = false;
  private openedAt = 0;
  private nextOpen = 0;
  private candidates: string[] = [];
  private lastError: string | null = null;
  private readonly ids: Map<string, string>;
  private pipe: MemoryPipe | null = null;
  private sim: SimulatedBoard | null = null;

  constructor(
    private readonly cfg: BridgeSourceConfig,
    private readonly deps: SourceDeps,
    private readonly log: Logger,
    private readonly simulate: SimulatedBoardFactory | null = null,
  ) {
    this.interval = cfg.interval;
    let ids = idsInUse.get(deps.ports);
    if (!ids) idsInUse.set(deps.ports, (ids = new Map()));
    this.ids = ids;
    if (cfg.port !== undefined) deps.ports.claim(serialPortId(cfg.port), { kind: "bridge", settings: `${cfg.baud} 8N1`, owner: `source '${cfg.name}'` }, () => cfg.port);
    this.session = new BoardSession(
      {
        name: cfg.name,
        expectId: cfg.board_id ?? null,
        heartbeatMs: cfg.heartbeat,
        offlineAfterMs: cfg.offline_after,
        timeSyncMs: cfg.time_sync,
        commandTimeoutMs: cfg.command_timeout,
        maxFrame: cfg.max_frame,
        window: cfg.window,
        maxPending: cfg.max_pending,
        writable: cfg.writable,
        limits: new Map(Object.entries(cfg.limits)),
        log,
        cursor: (key) => deps.cursor(key),
        idTaken: (id) => {
          const other = this.ids.get(id);
          return other !== undefined && other !== cfg.name ? `board id ${id} is already connected as '${other}'` : null;
        },
        otherBoard: () => {
          // Probing by id and another board answered: look on.
          if (cfg.port === undefined) void this.closePort();
        },
      },
      (bytes) => void this.link?.write(bytes),
    );
  }

  get name(): string {
    return this.cfg.name;
  }

  async start(): Promise<void> {
    this.stopped = false;
    if (this.cfg.simulated !== undefined) {
      if (!this.simulate) throw new Error(`source '${this.cfg.name}': simulated boards are not available here`);
      this.pipe = new MemoryPipe(this.cfg.name);
      await this.pipe.b.open();
      this.sim = await this.simulate(this.pipe.b, this.cfg);
      await this.sim.start();
    }
    this.supervise();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.session.stop();
    await this.closePort();
    await this.sim?.stop().catch(() => undefined);
    const id = this.session.boardId;
    if (id && this.ids.get(id) === this.cfg.name) this.ids.delete(id);
  }

  /** The board's readings since the last tick (their cursors follow in commit()). */
  async poll(): Promise<Reading[]> {
    const { readings, commit } = this.session.take();
    this.commit_ = commit;
    return readings;
  }

  commit(): PollCommit | null {
    const c = this.commit_;
    this.commit_ = null;
    return c;
  }

  status(): SourceDetail {
    const board = this.session.status(this.port);
    return {
      devices: [
        {
          name: this.cfg.name,
          online: this.session.online,
          lastError: this.session.error ?? this.lastError ?? this.notABoard(board),
          lastOkTs: this.session.lastOk,
          errors: { crc: board.crcErrors, garbage: board.garbage, oversized: board.oversized, retransmits: board.retransmits },
          ...(this.port ? { bus: this.port } : {}),
          board,
        },
      ],
      buses: this.port ? [{ name: this.port, open: this.link?.isOpen ?? false, queued: 0, lastError: this.lastError }] : [],
    };
  }

  /** Bytes came on the open port, but never a hello: say what that usually means. */
  private notABoard(b: ReturnType<BoardSession["status"]>): string | null {
    if (this.session.online || !this.link || b.framesIn > 0 || b.garbage + b.crcErrors + b.oversized === 0) return null;
    return `${b.garbage + b.crcErrors + b.oversized} chunks of bytes on ${this.port} but no hello: not a bridge board, or not at ${this.cfg.baud} baud?`;
  }

  health(): unknown {
    return { ...this.session.details(), points: this.session.describedPoints(), values: this.session.values(), logs: this.session.logs().slice(-50) };
  }

  /** The board's last log lines (for `edge-agent bridge log`). */
  logs(): ReturnType<BoardSession["logs"]> {
    return this.session.logs();
  }

  async writePoint(point: string, value: number | boolean | string): Promise<{ readBack: number | boolean | string }> {
    const { readBack } = await this.session.writePoint(point, value);
    return { readBack: readBack ?? "" };
  }

  actuators(): Actuator[] {
    return [boardActuator(this)];
  }

  /** The session, for the actuator's checks. */
  get board(): BoardSession {
    return this.session;
  }

  // ---- the port ---------------------------------------------------------------------------

  private supervise(): void {
    if (this.stopped || this.busy) return this.rearm();
    this.busy = true;
    this.step()
      .catch((err: unknown) => this.note((err as Error).message))
      .finally(() => {
        this.busy = false;
        this.rearm();
      });
  }

  private rearm(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.supervise(), SUPERVISE_MS);
  }

  private async step(): Promise<void> {
    const now = Date.now();
    if (!this.link) {
      if (now < this.nextOpen) return;
      await this.openNext();
      return;
    }
    const state = this.session.state;
    if (state === "online") {
      const id = this.session.boardId;
      if (id) this.ids.set(id, this.cfg.name);
      return;
    }
    // No board (yet, or any more) on this port: give it boot delay and a silence, then let go —
    // the next board by id may be elsewhere, and a re-enumerated port is a new device to open.
    const patience = this.cfg.boot_delay + this.cfg.offline_after;
    if (this.cfg.simulated === undefined && now - this.openedAt > patience) {
      if (this.cfg.port === undefined || state === "offline") await this.closePort();
    }
  }

  private async openNext(): Promise<void> {
    let link: ByteLink;
    let path: string;
    if (this.pipe) {
      link = this.pipe.a;
      path = link.name;
    } else if (this.cfg.port !== undefined) {
      path = this.cfg.port;
      link = new SerialLink({ path, baudRate: this.cfg.baud });
    } else {
      if (this.candidates.length === 0) {
        this.candidates = candidatePorts(this.cfg.probe, (id) => {
          const owner = this.deps.ports.owner(id);
          return owner !== undefined && owner !== `source '${this.cfg.name}'`;
        });
        if (this.candidates.length === 0) {
          this.note(`no port to look for board ${this.cfg.board_id} on (probed ${this.cfg.probe.join(", ")})`);
          this.nextOpen = Date.now() + REOPEN_MS;
          return;
        }
      }
      path = this.candidates.shift()!;
      link = new SerialLink({ path, baudRate: this.cfg.baud });
    }
    try {
      await link.open();
    } catch (err) {
      this.note((err as Error).message);
      this.nextOpen = Date.now() + (this.cfg.port !== undefined ? REOPEN_MS : 0);
      return;
    }
    if (this.stopped) return void (await link.close());
    this.link = link;
    this.port = path;
    this.openedAt = Date.now();
    this.lastError = null;
    link.onData((chunk) => this.session.receive(chunk));
    link.onClose((reason) => {
      if (this.link !== link) return;
      this.note(`${path} closed: ${reason}`);
      void this.closePort();
    });
    this.log.info({ board: this.cfg.name, port: path }, this.cfg.board_id && this.cfg.port === undefined ? `looking for board ${this.cfg.board_id} on ${path}` : `port open`);
    const delay = this.cfg.simulated !== undefined ? 0 : this.cfg.boot_delay;
    if (this.cfg.reset_on_open && link instanceof SerialLink) await link.pulseReset().catch((err: unknown) => this.note((err as Error).message));
    setTimeout(() => {
      if (this.link === link && !this.stopped) this.session.start();
    }, delay).unref();
  }

  private async closePort(): Promise<void> {
    const link = this.link;
    this.link = null;
    this.session.stop(this.cfg.port === undefined ? "not on this port" : "port closed");
    if (link) await link.close().catch(() => undefined);
    if (this.cfg.port === undefined) this.port = null;
  }

  private note(message: string): void {
    if (this.lastError !== message) this.log.warn({ board: this.cfg.name }, message);
    this.lastError = message;
  }
}

/** A board's writable points as an actuator: action `write` {point, value}, checked before anything is sent. */
export function boardActuator(src: BridgeSource): Actuator {
  const args = z
    .strictObject({ point: z.string().min(1).max(80), value: z.union([z.number(), z.boolean(), z.string().max(32)]) })
    .superRefine((a, ctx) => {
      try {
        src.board.checkWrite(a.point, a.value);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: (err as Error).message, path: ["point"] });
      }
    });
  return {
    name: src.name,
    kind: "bridge board",
    actions: new Map([["write", args]]),
    async execute(_action, a) {
      const { point, value } = a as { point: string; value: number | boolean | string };
      const { readBack } = await src.writePoint(point, value);
      return { point, value: readBack, online: src.board.online };
    },
    state: () => ({ online: src.board.online, state: src.board.state }),
  };
}

export function createBridgeSource(cfg: BridgeSourceConfig, deps: SourceDeps, simulate: SimulatedBoardFactory | null = null): BridgeSource {
  return new BridgeSource(cfg, deps, deps.log.child({ source: cfg.name }), simulate);
}

/** A simulated board on the board's end of an in-memory pipe, loaded only when a config has one. */
const simulatedBoard: SimulatedBoardFactory = async (end, cfg) => {
  const { SimBoard } = await import("../../simulators/board/board.js");
  const { ROOM_NODE } = await import("../../simulators/board/profiles.js");
  const { TwoSlotFlash } = await import("../../simulators/board/flash.js");
  const seed = [...cfg.name].reduce((h, c) => (Math.imul(h, 31) + c.charCodeAt(0)) >>> 0, 7);
  // Two image slots: the simulated board takes firmware updates too (in memory, for this run).
  return new SimBoard({ port: end, profile: ROOM_NODE, seed, intervalMs: 2000, logEveryMs: 30_000, flash: TwoSlotFlash.withVersion(ROOM_NODE.firmware) });
};

/** The agent's factory for `type: bridge` (SourceModule): one source per board. */
export function create(cfg: BridgeSourceConfig, deps: SourceDeps): Source[] {
  return [createBridgeSource(cfg, deps, cfg.simulated !== undefined ? simulatedBoard : null)];
}
