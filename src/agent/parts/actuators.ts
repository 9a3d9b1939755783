/**
 * The streetlights and charging points as one safety part: their safe state at start (before
 * the first poll) and at stop, first of all parts, while the buses are still open. Each on its
 * own: one that fails is logged and the others still go safe.
 */
import type { Charger } from "../../control/charger.js";
import type { Streetlight } from "../../control/streetlight.js";
import type { Logger } from "../../model/logger.js";
import type { Part } from "../parts.js";
import type { Recorder } from "../recorder.js";

export class ActuatorsPart implements Part {
  readonly name = "actuators";

  constructor(
    private readonly controllers: ReadonlyArray<Streetlight | Charger>,
    private readonly recorder: Recorder,
    private readonly log: Logger,
    /** Refuses every command from now on and waits for those running (the command router's close). */
    private readonly closeCommands: () => Promise<void>,
  ) {}

  async start(): Promise<void> {
    await this.each("start", (c) => c.start());
  }

  async stop(): Promise<void> {
    // No command may move an actuator after its safe state: not a new one, not one queued.
    await this.closeCommands().catch((err: unknown) => this.log.error({ err: (err as Error).message }, "could not close the command path"));
    await this.each("stop", async (c) => {
      // A charger's session record goes to the outbox like any event (a streetlight has none).
      const out = await c.stop();
      if (out) this.recorder.store(out.readings, out.events);
    });
  }

  private async each(what: string, f: (c: Streetlight | Charger) => Promise<unknown>): Promise<void> {
    for (const c of this.controllers) {
      await f(c).catch((err: unknown) => this.log.error({ actuator: c.name, err: (err as Error).message }, `could not enter the safe state at ${what}`));
    }
  }
}
