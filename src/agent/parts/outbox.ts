/** The outbox as a part: opened first (what happened to the file is logged), housekept, closed last. */
import type { Logger } from "../../model/logger.js";
import { FORMAT, Outbox } from "../../store/outbox.js";
import type { Config } from "../config.js";
import { intervalPart, type Part } from "../parts.js";

const HOUSEKEEPING_MS = 60_000;

export class OutboxPart implements Part {
  readonly name = "outbox";
  outbox: Outbox | null = null;

  constructor(
    private readonly cfg: Config["store"],
    private readonly log: Logger,
    /** Called just before the file closes: the last figures to keep. */
    private readonly beforeClose: () => void,
  ) {}

  async start(): Promise<void> {
    const cfg = this.cfg;
    const outbox = Outbox.open({ path: cfg.path, quota: cfg.quota, whenFull: cfg.when_full, maxAge: cfg.max_age, sync: cfg.sync, replayWindow: cfg.replay_window });
    this.outbox = outbox;
    this.log.info({ path: cfg.path, pending: outbox.depth, lastSeq: outbox.lastSeq }, "outbox open");
    if (outbox.openedFormat < FORMAT) this.log.info(`outbox upgraded from format ${outbox.openedFormat} to ${FORMAT}; everything pending was kept`);
    for (const s of outbox.skipped) {
      this.log.warn(
        `the last stop was not clean (store.sync: normal): ${s.stream} numbers resume at ${s.to + 1}; ${s.from}..${s.to} are skipped, so what the power cut took back shows as a gap, never as a reused number`,
      );
    }
  }

  async stop(): Promise<void> {
    this.beforeClose();
    this.outbox?.close();
  }

  /** Readings past max_age (and kept rows past the replay window) dropped, the WAL checkpointed, every minute. */
  housekeeping(): Part {
    return intervalPart("housekeeping", HOUSEKEEPING_MS, () => {
      try {
        const expired = this.outbox?.expire() ?? 0;
        if (expired > 0) this.log.warn({ readings: expired }, "dropped readings older than store.max_age");
        this.outbox?.checkpoint();
      } catch (err) {
        this.log.error({ err: (err as Error).message }, "outbox housekeeping failed");
      }
    });
  }
}

