/**
 * Where command answers go: every answer into the outbox's results stream (so the platform gets
 * it even after an outage), ids remembered in the outbox's command table, the last few kept for
 * `edge-agent status`.
 */
import { rememberedIn, type ResultSink } from "../control/commands.js";
import type { CommandResult } from "../model/command.js";
import type { Outbox } from "../store/outbox.js";

const RECENT = 20;

export class Results {
  readonly recent: CommandResult[] = [];
  private readonly counted: Array<(status: CommandResult["status"]) => void> = [];

  constructor(private readonly targets: () => ReadonlySet<string>) {}

  /** Counts answers by status (the metrics endpoint). */
  onAnswer(count: (status: CommandResult["status"]) => void): void {
    this.counted.push(count);
  }

  sink(outbox: Outbox, notify: () => void): ResultSink {
    return {
      ...rememberedIn(outbox),
      publish: (result) => {
        const json = JSON.stringify(result);
        // The row's name is not sent; a fixed one for unknown targets keeps garbage topics out of the points table.
        const point = this.targets().has(result.target) ? result.target : "(unknown target)";
        outbox.stream("results").append([{ point, ts: result.ts, value: json, quality: "good" }]);
        this.recent.push(result);
        if (this.recent.length > RECENT) this.recent.shift();
        for (const c of this.counted) c(result.status);
        notify();
      },
    };
  }
}
