/**
 * Where each tick's readings go: the outbox (readings in one transaction, events in their own
 * stream), then whoever follows the values live (the uplink's pump, the live feed, the OPC UA
 * server). Counts what was stored, refused and what failed; a failed store is logged, never thrown.
 *
 * The polls' readings are added and committed together, `batchMs` after the first of them: with
 * `store.sync: full` every commit waits for the disk (fsync), so fifty meters polled on the same
 * second cost one commit instead of fifty (on issue 12's run, ~1 % of a core and ~130 ms per
 * second of a blocked event loop).
 */
import type { Cursor } from "../model/cursor.js";
import type { Logger } from "../model/logger.js";
import type { Reading } from "../model/reading.js";
import type { Outbox } from "../store/outbox.js";
import type { StreamName } from "../model/status.js";

export interface RecorderListeners {
  /** New rows in a stream (the uplink sends them). */
  stored?(stream: StreamName): void;
  /** Readings as they were stored (live feed, OPC UA). */
  readings?(readings: readonly Reading[]): void;
}

/** How long the first reading added waits for the others of its second before they are committed. */
export const STORE_BATCH_MS = 100;

export class Recorder {
  stored = 0;
  events = 0;
  refused = 0;
  storeErrors = 0;
  /** Readings of non-critical points not stored while the data budget saves (uplink.budget). */
  thinned = 0;
  private thinner: ((readings: readonly Reading[]) => Reading[]) | null = null;
  private readonly listeners: RecorderListeners[] = [];
  /** Added and not yet committed. */
  private pending: { readings: Reading[]; events: Reading[]; stores: number } = { readings: [], events: [], stores: 0 };
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly outbox: () => Outbox | null,
    private readonly log: Logger,
    private readonly batchMs = STORE_BATCH_MS,
  ) {}

  /** Adds a tick's readings to the next commit (see the file comment); flush() commits at once. */
  add(readings: readonly Reading[], events: readonly Reading[] = []): void {
    const p = this.pending;
    // Indexed: for…of makes an iterator result per reading unless the optimising compiler runs.
    for (let i = 0; i < readings.length; i++) p.readings.push(readings[i]!);
    for (let i = 0; i < events.length; i++) p.events.push(events[i]!);
    p.stores++;
    this.timer ??= setTimeout(() => this.flush(), this.batchMs);
  }

  /** Commits what was added (before the outbox closes, at stop). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const p = this.pending;
    if (p.stores === 0) return;
    this.pending = { readings: [], events: [], stores: 0 };
    this.store(p.readings, p.events, null, p.stores);
  }

  /** Readings pass through this before they are stored (the data budget's thinning). */
  thin(thinner: (readings: readonly Reading[]) => Reading[]): void {
    this.thinner = thinner;
  }

  listen(l: RecorderListeners): void {
    this.listeners.push(l);
  }

  /**
   * Stores readings in one transaction (with the cursors of a pushing source; events in their
   * own stream) and tells the listeners. True when every reading and cursor was committed.
   * `stores`: how many ticks they are (a failure counts once for each).
   */
  store(readings: readonly Reading[], events: readonly Reading[] = [], cursors: readonly Cursor[] | null = null, stores = 1): boolean {
    const outbox = this.outbox();
    if (!outbox) return false;
    if (this.thinner && readings.length > 0) {
      const kept = this.thinner(readings);
      this.thinned += readings.length - kept.length;
      readings = kept;
    }
    let complete = true;
    try {
      if (readings.length > 0 || (cursors && cursors.length > 0)) {
        const result = outbox.append(readings, cursors);
        this.stored += result.stored;
        this.refused += result.refused;
        if (result.refused > 0) complete = false;
      }
      if (events.length > 0) {
        outbox.stream("events").append(events);
        this.events += events.length;
      }
    } catch (err) {
      this.storeErrors += stores;
      this.log.error({ err: (err as Error).message }, "could not store readings");
      return false;
    }
    for (const l of this.listeners) {
      try {
        if (readings.length > 0) {
          l.readings?.(readings);
          l.stored?.("telemetry");
        }
        if (events.length > 0) l.stored?.("events");
      } catch (err) {
        this.log.error({ err: (err as Error).message }, "a listener of the stored readings failed");
      }
    }
    return complete;
  }
}
