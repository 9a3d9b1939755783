import { z } from "zod";
import type { Actuator } from "../../src/control/commands.js";

export type Outcome = "ok" | "throw" | "throw-non-error" | "slow";

/**
 * A charging point in memory: refuses a second start like the real one, and follows a plan of
 * outcomes per execution (throw, throw something that is not an Error, take a few turns of the
 * event loop). It counts executions running at once: the router must never run two.
 */
export class FakeCharger implements Actuator {
  readonly kind = "charger";
  readonly executed: Array<{ action: string; args: unknown }> = [];
  charging = false;
  running = 0;
  maxRunning = 0;
  /** Outcomes of the next executions, in order; "ok" once it runs out. */
  plan: Outcome[] = [];
  readonly actions: ReadonlyMap<string, z.ZodType> = new Map<string, z.ZodType>([
    ["start", z.strictObject({ max_kwh: z.number().min(0.01).max(10).optional(), max_minutes: z.int().min(1).max(240).optional() })],
    ["stop", z.strictObject({})],
  ]);

  constructor(readonly name: string) {}

  async execute(action: string, args: unknown): Promise<Record<string, unknown>> {
    this.executed.push({ action, args });
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      const outcome = this.plan.shift() ?? "ok";
      if (outcome === "slow") for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
      if (outcome === "throw") throw new Error("meter not read recently");
      if (outcome === "throw-non-error") throw Object.create(null) as object; // what a careless driver may do: String() of it throws
      if (action === "start") {
        if (this.charging) throw new Error(`${this.name} is already charging`);
        this.charging = true;
      } else this.charging = false;
      return this.state();
    } finally {
      this.running--;
    }
  }

  state(): Record<string, unknown> {
    return { charging: this.charging };
  }
}
