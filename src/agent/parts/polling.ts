/**
 * The sources on their schedule, and the processors that derive figures from what they read:
 * each tick's readings (and the derived ones) go to the recorder, which commits the ticks that
 * end close together in one transaction (Recorder.add); a pushing source's tick, whose cursors
 * must be answered, is stored at once. A source whose start or poll fails is counted and logged
 * once per distinct error, and polled again.
 */
import type { Logger } from "../../model/logger.js";
import type { Processor, ProcessorOutput } from "../../model/processor.js";
import type { Reading } from "../../model/reading.js";
import type { SourceStatus } from "../../model/status.js";
import type { Source } from "../../sources/source.js";
import type { Part } from "../parts.js";
import type { Recorder } from "../recorder.js";
import type { Scheduler } from "../scheduler.js";

interface Entry {
  source: Source;
  type: string;
  errors: number;
  lastError: string | null;
}

export class Polling implements Part {
  readonly name = "sources";
  private readonly entries: Entry[];

  constructor(
    sources: ReadonlyArray<{ source: Source; type: string }>,
    private readonly processors: readonly Processor[],
    private readonly scheduler: Scheduler,
    private readonly recorder: Recorder,
    private readonly log: Logger,
  ) {
    this.entries = sources.map((s) => ({ ...s, errors: 0, lastError: null }));
  }

  get sources(): Source[] {
    return this.entries.map((e) => e.source);
  }

  async start(): Promise<void> {
    for (const entry of this.entries) {
      try {
        await entry.source.start?.();
      } catch (err) {
        this.noteError(entry, err);
      }
      this.scheduler.add(entry.source.name, entry.source.interval, (tick) => this.tick(entry, tick));
    }
    this.scheduler.start();
  }

  async stop(): Promise<void> {
    await this.scheduler.stop();
    // The last ticks' readings, while the uplink still runs.
    this.recorder.flush();
    for (const entry of [...this.entries].reverse()) {
      try {
        await entry.source.stop?.();
      } catch (err) {
        this.noteError(entry, err);
      }
    }
  }

  /** The processors' second: what changes with time alone (a presence hold running out). */
  tickProcessors(): void {
    const out = this.run((p, now) => p.tick?.(now) ?? { readings: [], events: [] });
    this.recorder.store(out.readings, out.events);
  }

  status(): Record<string, SourceStatus> {
    const sched = this.scheduler.stats();
    const out: Record<string, SourceStatus> = Object.create(null) as Record<string, SourceStatus>;
    for (const e of this.entries) {
      const s = e.source;
      const detail = s.status?.() ?? { devices: [], buses: [] };
      const health = s.health?.();
      out[s.name] = {
        type: e.type,
        polls: sched[s.name]?.runs ?? 0,
        overruns: sched[s.name]?.overruns ?? 0,
        errors: e.errors,
        lastError: e.lastError,
        devices: detail.devices,
        buses: detail.buses,
        ...(health !== undefined ? { health } : {}),
      };
    }
    return out;
  }

  private async tick(entry: Entry, tickTs: number): Promise<void> {
    let readings: Reading[];
    try {
      readings = await entry.source.poll(tickTs);
    } catch (err) {
      this.noteError(entry, err);
      return;
    }
    const commit = entry.source.commit?.() ?? null;
    const derived = this.run((p, now) => p.process(readings, now));
    if (commit) {
      // A pushing source's cursors commit with its readings, and it must hear at once whether they did.
      const stored = this.recorder.store([...readings, ...derived.readings], derived.events, commit.cursors);
      try {
        commit.settled(stored);
      } catch (err) {
        this.noteError(entry, err);
      }
      return;
    }
    this.recorder.add(derived.readings.length > 0 ? [...readings, ...derived.readings] : readings, derived.events);
  }

  /** Runs every processor; one that throws is logged and skipped, the others still run. */
  private run(f: (p: Processor, now: number) => ProcessorOutput): ProcessorOutput {
    const all: ProcessorOutput = { readings: [], events: [] };
    const now = Date.now();
    for (const p of this.processors) {
      try {
        const out = f(p, now);
        all.readings.push(...out.readings);
        all.events.push(...out.events);
      } catch (err) {
        this.log.error({ processor: p.name, err: (err as Error).message }, "processor failed");
      }
    }
    return all;
  }

  private noteError(entry: Entry, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    entry.errors++;
    if (entry.lastError !== message) this.log.warn({ source: entry.source.name }, message);
    entry.lastError = message;
  }
}
