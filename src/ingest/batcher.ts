/**
 * Group commit: messages from every consumer (MQTT connections, an AMQP channel) wait here until
 * one transaction stores them all; each `add` resolves after that commit, and only then does its
 * consumer acknowledge the message. A batch goes as soon as it is full (readings), as soon as
 * every consumer is waiting (no more can come), or after the linger time.
 *
 * When the database is unreachable the same batch is retried with a growing pause and nothing is
 * acknowledged: the broker keeps the messages.
 */
import type { Logger } from "../model/logger.js";
import { decode, type Decoded, type Incoming } from "./message.js";
import type { IngestMetrics } from "./metrics.js";
import type { BatchStats, Item, Writer } from "./writer.js";

export interface BatcherOptions {
  root: string;
  /** A batch goes once it holds this many readings… */
  maxReadings: number;
  /** …or this many payload bytes (a batch of huge texts must not outgrow what one COPY string holds). */
  maxBytes: number;
  /** …or this many messages: the number of messages the consumers can have waiting at once. */
  maxMessages: number;
  lingerMs: number;
  /** How long a compact message waits for its dictionary before it is quarantined. */
  dictionaryWaitMs: number;
  log: Logger;
  metrics?: IngestMetrics;
}

interface Pending {
  item: Item;
  readings: number;
  bytes: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;

export class Batcher {
  private pending: Pending[] = [];
  private readings = 0;
  private bytes = 0;
  /** Arrival time of the oldest message of the batch being stored (for the lag). */
  private flushingSince: number | null = null;
  /** gateway + dictionary version → when a wait for it ran out: later messages do not wait again for a while. */
  private readonly missingDictionaries = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private stopped = false;
  private failing = false;
  private wake: (() => void) | null = null;

  constructor(
    private readonly writer: Writer,
    private readonly opts: BatcherOptions,
  ) {}

  /** Decodes, queues, and resolves once the message is committed (then acknowledge it). */
  async add(msg: Incoming): Promise<void> {
    if (this.stopped) throw new Error("ingest stopping");
    const decoded = await this.decode(msg);
    const readings = decoded.kind === "sequenced" ? decoded.readings.length : 1;
    this.opts.metrics?.received(decoded.kind === "sequenced" ? decoded.stream : decoded.kind, msg.redelivered);
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ item: { msg, decoded }, readings, bytes: msg.payload.length, resolve, reject });
      this.readings += readings;
      this.bytes += msg.payload.length;
      this.kick();
    });
  }

  private async decode(msg: Incoming): Promise<Decoded> {
    const lookup = this.writer.dictionary.bind(this.writer);
    let d = decode(this.opts.root, msg, lookup);
    if (d.kind !== "needs-dict") return d;
    const where = { site: d.site, gateway: d.gateway };
    try {
      await this.writer.loadDictionary(where);
    } catch (err) {
      this.opts.log.debug({ err: (err as Error).message }, "dictionary lookup failed");
    }
    d = decode(this.opts.root, msg, lookup);
    if (d.kind !== "needs-dict") return d;
    const key = `${d.site}\u0000${d.gateway}\u0000${d.version}`;
    const gaveUp = this.missingDictionaries.get(key);
    if (gaveUp === undefined || Date.now() - gaveUp > 60_000) {
      // Wait (a dictionary older than the one needed wakes the wait too: wait on to the deadline).
      const deadline = Date.now() + this.opts.dictionaryWaitMs;
      while (d.kind === "needs-dict" && Date.now() < deadline) {
        await this.writer.waitDictionary(where, deadline - Date.now());
        d = decode(this.opts.root, msg, lookup);
      }
      if (d.kind !== "needs-dict") return d;
      if (this.missingDictionaries.size > 10_000) this.missingDictionaries.clear();
      this.missingDictionaries.set(key, Date.now());
    }
    return {
      kind: "quarantine",
      reason: `needs dictionary version ${d.version}, which did not arrive within ${this.opts.dictionaryWaitMs / 1000} s (the ledger shows its numbers as a gap; a replay brings them again)`,
      where,
      seq: null,
    };
  }

  private kick(): void {
    if (this.flushing || this.pending.length === 0) return;
    const full = this.readings >= this.opts.maxReadings || this.bytes >= this.opts.maxBytes || this.pending.length >= this.opts.maxMessages || this.stopped;
    if (full) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      this.flushing = this.flush().finally(() => {
        this.flushing = null;
        this.kick();
      });
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        if (this.flushing || this.pending.length === 0) return;
        this.flushing = this.flush().finally(() => {
          this.flushing = null;
          this.kick();
        });
      }, this.opts.lingerMs);
    }
  }

  private async flush(): Promise<void> {
    const batch: Pending[] = [];
    let readings = 0;
    let bytes = 0;
    while (
      this.pending.length > 0 &&
      (batch.length === 0 || (readings + this.pending[0]!.readings <= this.opts.maxReadings && bytes + this.pending[0]!.bytes <= this.opts.maxBytes))
    ) {
      const p = this.pending.shift()!;
      batch.push(p);
      readings += p.readings;
      bytes += p.bytes;
    }
    this.readings -= readings;
    this.bytes -= bytes;
    const oldest = Math.min(...batch.map((p) => p.item.msg.at));
    this.flushingSince = oldest;
    for (let wait = RETRY_MIN_MS; ; wait = Math.min(wait * 2, RETRY_MAX_MS)) {
      let stats: BatchStats;
      try {
        stats = await this.writer.write(batch.map((p) => p.item));
      } catch (err) {
        this.opts.metrics?.dbError();
        if (!this.failing) this.opts.log.error({ err: (err as Error).message }, `cannot store a batch of ${batch.length} messages: ${(err as Error).message}; retrying, nothing acknowledged`);
        this.failing = true;
        if (this.stopped) {
          this.flushingSince = null;
          for (const p of batch) p.reject(new Error("ingest stopped before the batch was stored"));
          return;
        }
        await new Promise<void>((r) => {
          const t = setTimeout(r, wait);
          this.wake = () => {
            clearTimeout(t);
            r();
          };
        });
        this.wake = null;
        continue;
      }
      if (this.failing) this.opts.log.info("storing again");
      this.failing = false;
      this.opts.metrics?.committed(stats, Date.now() - oldest);
      this.flushingSince = null;
      for (const p of batch) p.resolve();
      return;
    }
  }

  /** Oldest message not yet committed (ms since it arrived), for the lag metric. */
  lagMs(now = Date.now()): number {
    const first = this.flushingSince ?? this.pending[0]?.item.msg.at;
    return first === undefined ? 0 : now - first;
  }

  /** Stores what is queued (one more try when the database is down), then refuses new messages. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    this.kick();
    while (this.flushing) await this.flushing;
    for (const p of this.pending.splice(0)) p.reject(new Error("ingest stopped"));
  }
}
