/**
 * Where each tick's readings go: the outbox (readings in one transaction, events in their own
 * stream), then whoever follows the values live (the uplink's pump, the live feed, the OPC UA
 * server). Counts what was stored, refused and what failed; a failed store is logged, never thrown.
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

export class Recorder {
  stored = 0;
  events = 0;
  refused = 0;
  storeErrors = 0;
  private readonly listeners: RecorderListeners[] = [];

  constructor(
    private readonly outbox: () => Outbox | null,
    private readonly log: Logger,
  ) {}

  listen(l: RecorderListeners): void {
    this.listeners.push(l);
  }

  /**
   * Stores one tick's readings in one transaction (with the cursors of a pushing source; events in
   * their own stream) and tells the listeners. True when every reading and cursor was committed.
   */
  store(readings: readonly Reading[], events: readonly Reading[] = [], cursors: readonly Cursor[] | null = null): boolean {
    const outbox = this.outbox();
    if (!outbox) return false;
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
      this.storeErrors++;
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
