/** Field types shared by the config's sections and by the source types' pieces of it. */
import { z } from "zod";

/** A place in the config: `["sources", 2, "interval"]`. */
export type Path = (string | number)[];
/** Adds an error at a place. */
export type Report = (path: Path, message: string) => void;

/** Names that end up in MQTT topics and point ids: no separators, no wildcards. */
export const name = (what: string) =>
  z
    .string({ error: `expected a ${what}` })
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, {
      error: `expected a ${what} of letters, digits, '-', '_' or '.' (no '/', '+', '#' or spaces)`,
    })
    .max(64);

/** A point id, `<source or device>/<point>`. */
export const pointRef = (what: string) =>
  z
    .string({ error: "expected a point id like room-101/co2" })
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/, { error: "expected a point id like room-101/co2" })
    .meta({ description: what });

export const hostPort = (defaultPort: number) =>
  z.strictObject({
    host: z.string().min(1),
    port: z.int().min(1).max(65535).default(defaultPort),
  });
