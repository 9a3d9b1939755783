/**
 * The gateway's own command target `outbox` (reserved: a configured actuator of that name hides
 * it, with a warning), action `replay`: the platform asks for a range of one stream again
 * (docs/mqtt-contract.md, "Replay"). The command path (commands.ts) checks, de-duplicates and
 * answers it like any command; the answer's `state` is the replay answer. Built at its first
 * command, so that its schema (zod) is not loaded by a gateway that is never asked.
 */
import { z } from "zod";
import type { Actuator } from "../model/command.js";
import type { Logger } from "../model/logger.js";
import type { SeqRange } from "../model/replay.js";
import type { StreamName } from "../model/status.js";
import { type Outbox, STREAMS } from "../store/outbox.js";
import { countOf } from "../model/seq-ranges.js";

/** The most numbers one replay may ask for (to − from < this). */
export const MAX_REPLAY_SPAN = 1_000_000;

const seq = z.int({ error: "expected a sequence number (a whole number from 1)" }).min(1);

export const replayArgs = z
  .strictObject({
    stream: z.enum(STREAMS as [StreamName, ...StreamName[]]),
    from: seq,
    to: seq,
  })
  .superRefine((a, ctx) => {
    if (a.to < a.from) ctx.addIssue({ code: "custom", path: ["to"], message: `must be at least from (${a.from}), got ${a.to}` });
    else if (a.to - a.from >= MAX_REPLAY_SPAN) ctx.addIssue({ code: "custom", path: ["to"], message: `at most ${MAX_REPLAY_SPAN} numbers at once: to − from must be below ${MAX_REPLAY_SPAN}, got ${a.to - a.from}` });
  });

export function outboxTarget(outbox: Outbox, sendAgain: (stream: StreamName, ranges: SeqRange[]) => void, log: Logger): Actuator {
  return {
    name: "outbox",
    kind: "outbox",
    actions: new Map([["replay", replayArgs]]),
    state: () => {
      const s = outbox.stats();
      return { kept: s.kept, replay_window_ms: s.replayWindowMs };
    },
    async execute(_action, args) {
      const a = args as { stream: StreamName; from: number; to: number };
      const answer = outbox.replay(a.stream, a.from, a.to);
      sendAgain(a.stream, answer.resent);
      log.info(
        { stream: a.stream, from: a.from, to: answer.to, resent: countOf(answer.resent), pending: countOf(answer.pending), missing: countOf(answer.missing.map((m): SeqRange => [m.from, m.to])) },
        "replay: kept rows put back for sending",
      );
      return { ...answer };
    },
  };
}
