/**
 * The agent's long-lived parts under one lifecycle, as zigbee2mqtt's controller runs its
 * extensions: each part has a name, start() and stop(); the agent lists them in order; this
 * starts them in that order and stops them in reverse, every call wrapped so that one failure
 * stays local.
 *
 * - A part that fails to start is reported with its name. An `essential` part (the outbox, the
 *   uplink) stops the start — what was started is stopped again — and the error says which part;
 *   any other is logged and left out, and the rest runs without it.
 * - Every stop is isolated: one that throws (or hangs past its time) is logged and the next part
 *   stops anyway. Parts marked `safety` (actuators entering their safe state) stop first.
 */
import { UserError } from "../model/errors.js";
import type { Logger } from "../model/logger.js";
import type { PartStatus } from "../model/status.js";

export interface Part {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface PartOptions {
  /** Without it the agent cannot do its job: a failed start fails the agent's start. */
  essential?: boolean;
  /** Stops before every other part (actuators: safe state while the buses are still open). */
  safety?: boolean;
  /** Longest a stop may take before the next part stops anyway, ms. */
  stopTimeoutMs?: number;
}

interface Entry {
  part: Part;
  opts: PartOptions;
  state: PartStatus["state"];
  error: string | null;
}

/** A failed essential part: the message names it. */
export class PartStartError extends Error {
  constructor(
    readonly part: string,
    cause: unknown,
  ) {
    super(`${part}: ${messageOf(cause)}`, { cause });
    this.name = "PartStartError";
  }
}

const DEFAULT_STOP_TIMEOUT_MS = 15_000;

export class Parts {
  private readonly entries: Entry[] = [];

  constructor(private readonly log: Logger) {}

  /** Starts `part` now (after those before it) and keeps it for stop(); returns whether it runs. */
  async start(part: Part, opts: PartOptions = {}): Promise<boolean> {
    const entry: Entry = { part, opts, state: "stopped", error: null };
    this.entries.push(entry);
    try {
      await part.start();
      entry.state = "running";
      return true;
    } catch (err) {
      entry.state = "failed";
      entry.error = messageOf(err);
      // A user's mistake (a path it cannot open) already names its place: it goes up as it is.
      if (opts.essential) throw err instanceof UserError ? err : new PartStartError(part.name, err);
      this.log.warn({ part: part.name }, `${part.name} did not start: ${entry.error}; the agent runs without it`);
      return false;
    }
  }

  /** Safety parts first, then every other in reverse order of start; each stop isolated. */
  async stop(): Promise<void> {
    const order = [...this.entries.filter((e) => e.opts.safety), ...this.entries.filter((e) => !e.opts.safety).reverse()];
    for (const entry of order) {
      // A part that failed to start may have half started: stop() is still asked to clean up.
      if (entry.state === "stopped") continue;
      try {
        await withTimeout(entry.part.stop(), entry.opts.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS, entry.part.name);
      } catch (err) {
        this.log.error({ part: entry.part.name }, `${entry.part.name} did not stop cleanly: ${messageOf(err)}`);
      }
      entry.state = "stopped";
    }
  }

  status(): PartStatus[] {
    return this.entries.map((e) => ({ name: e.part.name, state: e.state, error: e.error }));
  }
}

/** A part made of two functions, for the small ones (a timer, a listener). */
export function part(name: string, start: () => Promise<void> | void, stop: () => Promise<void> | void): Part {
  return {
    name,
    start: async () => {
      await start();
    },
    stop: async () => {
      await stop();
    },
  };
}

/** A timer as a part: runs `tick` every `ms` (unref'd: it never keeps the process alive). */
export function intervalPart(name: string, ms: number, tick: () => void): Part {
  let timer: NodeJS.Timeout | null = null;
  return part(
    name,
    () => {
      timer = setInterval(tick, ms);
      timer.unref();
    },
    () => {
      if (timer) clearInterval(timer);
      timer = null;
    },
  );
}

function withTimeout(p: Promise<void>, ms: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still stopping after ${Math.round(ms / 1000)} s; left behind`)), ms);
    timer.unref();
    p.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(`${what}: ${String(err)}`));
      },
    );
  });
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
