import type { SourceConfig } from "../config/schema.js";
import { SimulatedSource } from "../sources/simulated.js";
import type { Source } from "../sources/source.js";

/** Builds the source a config entry describes. New source types register here. */
export function createSource(cfg: SourceConfig): Source {
  switch (cfg.type) {
    case "simulated":
      return new SimulatedSource(cfg);
  }
}
