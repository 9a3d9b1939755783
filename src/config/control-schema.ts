/**
 * The actuators part of the config: streetlights and charging points. Kept beside schema.ts,
 * which includes it, so the control work reads as one piece.
 */
import { z } from "zod";
import { OFF_EVENTS, ON_EVENTS } from "../model/streetlight.js";
import { DAY, duration, HOUR, MINUTE, SECOND } from "./units.js";

const actuatorName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, { error: "expected a name of letters, digits, '-', '_' or '.'" })
  .max(64);

const hhmm = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, { error: "expected a local time like 00:30" });

/** What switches the lamp or the charger. */
export const relayConfig = z
  .union([
    z.strictObject({ modbus: z.strictObject({ device: z.string().min(1), point: z.string().min(1) }) }),
    z.strictObject({ gpio: z.strictObject({ pin: z.int().min(0).max(53), active_low: z.boolean().default(false) }) }),
    z.strictObject({ simulated: z.literal(true) }),
  ])
  .meta({ description: "modbus: { device, point } (a writable coil of a Modbus device), gpio: { pin } (BCM), or simulated: true." });

export const streetlightConfig = z.strictObject({
  name: actuatorName,
  relay: relayConfig,
  latitude: z.number().min(-90).max(90),
  longitude: z.number().min(-180).max(180),
  timezone: z.string().default("Europe/Rome").meta({ description: "IANA time zone of the part-night times." }),
  dimmable: z.boolean().default(false),
  on: z.enum(ON_EVENTS).default("sunset"),
  off: z.enum(OFF_EVENTS).default("sunrise"),
  on_offset: z.int().min(-180).max(180).default(0).meta({ description: "Minutes after the on event (negative: before)." }),
  off_offset: z.int().min(-180).max(180).default(0).meta({ description: "Minutes after the off event (negative: before)." }),
  part_night: z
    .strictObject({ from: hhmm, to: hhmm, mode: z.enum(["off", "dim"]).default("off"), level: z.int().min(0).max(100).optional() })
    .optional(),
  presence: z.string().optional().meta({ description: "Point id of a presence reading, e.g. pir-3/presence." }),
  presence_boost: z.strictObject({ level: z.int().min(0).max(100).default(100), hold: duration({ min: SECOND, max: DAY }).default(300_000) }).optional(),
  // Not a timer (compared with the clock): a week covers maintenance; longer is a schedule change.
  max_override: duration({ min: MINUTE, max: 7 * DAY, description: "Longest manual override a command may ask for." }).default(DAY),
});

export const chargerConfig = z.strictObject({
  name: actuatorName,
  relay: relayConfig,
  meter: z.string().min(1).meta({ description: "The Modbus device (an SDM120) that meters this point." }),
  power_point: z.string().default("active_power"),
  energy_point: z.string().default("import_active_energy"),
  max_power: z.number().positive().meta({ description: "Watts: the session is cut within one poll above this." }),
  max_kwh: z.number().positive().max(1000).default(10),
  // A charging session lasts hours; one running for more than a day is a fault, not a charge.
  max_duration: duration({ min: MINUTE, max: DAY }).default(4 * HOUR),
  // Power flows unmetered meanwhile: minutes at most.
  meter_timeout: duration({ min: SECOND, max: 10 * MINUTE, description: "No meter reading for this long ends a session (meter lost)." }).default(30_000),
});

export type RelayConfig = z.output<typeof relayConfig>;
export type StreetlightConfig = z.output<typeof streetlightConfig>;
export type ChargerConfig = z.output<typeof chargerConfig>;
