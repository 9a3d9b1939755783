import { z } from "zod";
import type { Actuator } from "../../src/control/commands.js";

/** A streetlight in memory: records what it was asked to do, and can be told to fail. */
export class FakeLight implements Actuator {
  readonly kind = "streetlight";
  readonly executed: Array<{ action: string; args: unknown }> = [];
  on = false;
  fail = false;
  readonly actions: ReadonlyMap<string, z.ZodType> = new Map<string, z.ZodType>([
    ["set", z.strictObject({ on: z.boolean(), level: z.int().min(0).max(100).optional(), duration_s: z.int().min(60).max(86_400).default(3600) })],
    ["auto", z.strictObject({})],
  ]);

  constructor(readonly name: string) {}

  async execute(action: string, args: unknown) {
    this.executed.push({ action, args });
    if (this.fail) throw new Error("coil write not confirmed by read-back");
    if (action === "set") this.on = (args as { on: boolean }).on;
    return this.state();
  }

  state() {
    return { on: this.on };
  }
}
