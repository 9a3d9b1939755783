/** `type: simulated`: points that invent plausible values (demo, tests). */
import { z } from "zod";
import { name, type Path } from "../../config/fields.js";
import type { SourceFacts } from "../../config/source-type.js";
import { DAY, duration } from "../../config/units.js";
import type { SourceType } from "../type.js";
import { uniqueNames } from "../unique.js";

const wave = z.enum(["sine", "ramp", "random-walk", "square", "constant"]);

const simulatedPoint = z.strictObject({
  name: name("point name"),
  wave: wave.default("sine"),
  min: z.number().default(0),
  max: z.number().default(100),
  // Not a timer (the phase of a wave): a yearly cycle is the longest worth simulating.
  period: duration({ min: 1, max: 365 * DAY }).default(60_000),
  step: z.number().min(0).optional().meta({ description: "random-walk: largest change per reading." }),
  unit: z.string().optional(),
  decimals: z.int().min(0).max(12).default(2),
});

const schema = z.strictObject({
  type: z.literal("simulated"),
  name: name("source name"),
  interval: duration({ min: 1, max: DAY }),
  points: z.array(simulatedPoint).min(1, { error: "needs at least one point" }),
});

export type SimulatedSourceConfig = z.output<typeof schema>;
export type SimulatedPointConfig = z.output<typeof simulatedPoint>;

export const simulated: SourceType<SimulatedSourceConfig> = {
  type: "simulated",
  schema,
  check(cfg, at, ctx) {
    ctx.claimName(cfg.name, [...at, "name"]);
    uniqueNames(cfg.points, cfg.name, [...at, "points"], ctx.report);
  },
  facts(cfg, at: Path): SourceFacts {
    return {
      prefixes: [{ name: cfg.name, path: [...at, "name"] }],
      points: cfg.points.map((p) => ({ id: `${cfg.name}/${p.name}`, ...(p.unit ? { unit: p.unit } : {}) })),
      claims: [],
      devices: [],
    };
  },
  summary: (cfg) => ({ points: cfg.points.length }),
};
