/** `type: gpio`: a digital input such as a PIR presence sensor, on a BCM pin. */
import { z } from "zod";
import { name } from "../../config/fields.js";
import { DAY, duration, MINUTE, SECOND } from "../../config/units.js";
import type { SourceType } from "../type.js";

const PIN_ERROR = "expected a BCM GPIO number 0–53";

const schema = z
  .strictObject({
    type: z.literal("gpio"),
    name: name("source name"),
    pin: z
      .int({ error: PIN_ERROR })
      .min(0, { error: PIN_ERROR })
      .max(53, { error: PIN_ERROR })
      .meta({ description: "BCM GPIO number (GPIO17 is header pin 11), not the header pin number." }),
    point: name("point name").default("presence"),
    edge: z.enum(["rising", "falling", "both"]).default("both"),
    debounce: duration({ max: MINUTE, description: "A change counts once the input has held it this long." }).default(50),
    active_low: z.boolean().default(false).meta({ description: "The input is active when low (e.g. a contact to ground)." }),
    interval: duration({ min: SECOND, max: DAY, description: "The current value is also reported this often; edges are reported as they happen." }).default(60_000),
    simulated: z.boolean().default(false).meta({ description: "Use a simulated pin driven by a simulated presence (demo, tests)." }),
  })
  .meta({ description: "A digital input, e.g. a PIR presence sensor: point <name>/<point> (true = active)." });

export type GpioSourceConfig = z.output<typeof schema>;

export const gpio: SourceType<GpioSourceConfig> = {
  type: "gpio",
  schema,
  facts: (cfg, at) => ({
    prefixes: [{ name: cfg.name, path: [...at, "name"] }],
    points: [{ id: `${cfg.name}/${cfg.point}` }],
    // A simulated pin is the source's own; real ones are one per physical pin.
    claims: cfg.simulated ? [] : [{ key: `gpio:${cfg.pin}`, path: [...at, "pin"], what: `GPIO ${cfg.pin}` }],
    devices: [],
  }),
  summary: () => ({ points: 1 }),
};
