import type { z } from "zod";

/** A command's answer, as the platform gets it on `result` and the CLI prints it. */
export type CommandStatus = "ok" | "error" | "rejected";

export interface CommandResult {
  id: string | null;
  target: string;
  action?: string;
  status: CommandStatus;
  reason?: string;
  state?: Record<string, unknown>;
  ts: number;
}

/** Something the platform may command: a streetlight, a charging point, a bridged board. */
export interface Actuator {
  readonly name: string;
  readonly kind: string;
  /** The actions it takes, each with the schema (and bounds) of its arguments. A Map: action names come from outside. */
  readonly actions: ReadonlyMap<string, z.ZodType>;
  /** Carries out a validated action; resolves with the state after it. Throws when it failed. `id`: the command's. */
  execute(action: string, args: unknown, now: number, id?: string): Promise<Record<string, unknown>>;
  state(): Record<string, unknown>;
}

/** A command id: 1–64 letters, digits, '_', '.', ':' or '-'. */
export const COMMAND_ID = /^[A-Za-z0-9_.:-]{1,64}$/;
