/**
 * Commands from the platform (MQTT `cmd/<target>`) and from the technician's CLI take one path:
 * size, JSON, envelope, target, repeat, expiry, action, arguments — each checked in that order,
 * and anything wrong is rejected with a reason before any actuator is touched. A repeated id is
 * answered again with the first result, never executed twice. Every result goes through the
 * outbox (results stream), so the platform gets it even after an outage.
 */
import { z } from "zod";
import { formatPath } from "../config/path.js";
import type { Logger } from "../ops/logger.js";

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

/** Something the platform may command: a streetlight, a charging point. */
export interface Actuator {
  readonly name: string;
  readonly kind: string;
  /** The actions it takes, each with the schema (and bounds) of its arguments. */
  readonly actions: Readonly<Record<string, z.ZodType>>;
  /** Carries out a validated action; resolves with the state after it. Throws when it failed. */
  execute(action: string, args: unknown, now: number): Promise<Record<string, unknown>>;
  state(): Record<string, unknown>;
}

/** Where results are kept: remembered by id, and stored for the uplink. */
export interface ResultSink {
  recall(id: string): CommandResult | undefined;
  record(result: CommandResult): void;
}

export const MAX_COMMAND_BYTES = 4096;

const envelope = z.strictObject({
  id: z.string().min(1).max(64).regex(/^[A-Za-z0-9_.:-]+$/, { error: "expected 1–64 letters, digits, '_', '.', ':' or '-'" }),
  action: z.string().min(1).max(32),
  args: z.record(z.string(), z.unknown()).default({}),
  expires: z.number().int().positive().optional(),
});

function describe(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return "invalid";
  if (issue.code === "unrecognized_keys") return `${formatPath([...issue.path, issue.keys[0]!])}: unknown key`;
  const where = formatPath(issue.path);
  return `${where === "(top level)" ? "" : `${where}: `}${issue.code === "invalid_type" && issue.input === undefined ? "required" : issue.message}`;
}

export class CommandRouter {
  private readonly actuators = new Map<string, Actuator>();
  /** One command at a time per target, so two commands cannot interleave on one device. */
  private readonly busy = new Map<string, Promise<unknown>>();

  constructor(
    actuators: readonly Actuator[],
    private readonly sink: ResultSink,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    for (const a of actuators) this.actuators.set(a.name, a);
  }

  /** Declares one more actuator (the agent builds them once the devices they use exist). */
  register(actuator: Actuator): void {
    this.actuators.set(actuator.name, actuator);
  }

  targets(): string[] {
    return [...this.actuators.keys()];
  }

  actuator(name: string): Actuator | undefined {
    return this.actuators.get(name);
  }

  /** Checks and runs one command; always resolves with its result (and records it). */
  async handle(target: string, payload: Buffer | string, origin: "mqtt" | "local"): Promise<CommandResult> {
    const ts = this.now();
    const reject = (reason: string, id: string | null = null, action?: string): CommandResult =>
      this.finish({ id, target, ...(action ? { action } : {}), status: "rejected", reason, ts }, origin);

    const size = typeof payload === "string" ? Buffer.byteLength(payload) : payload.length;
    if (size > MAX_COMMAND_BYTES) return reject(`payload of ${size} bytes is larger than ${MAX_COMMAND_BYTES}`);
    let raw: unknown;
    try {
      raw = JSON.parse(payload.toString());
    } catch {
      return reject("malformed JSON");
    }
    const rawId = typeof raw === "object" && raw !== null && typeof (raw as { id?: unknown }).id === "string" ? (raw as { id: string }).id.slice(0, 64) : null;
    const parsed = envelope.safeParse(raw);
    if (!parsed.success) return reject(`envelope: ${describe(parsed.error)}`, rawId);
    const cmd = parsed.data;

    const actuator = this.actuators.get(target);
    if (!actuator) {
      const known = this.targets();
      return reject(`unknown target '${target}' (declared actuators: ${known.length ? known.join(", ") : "none"})`, cmd.id, cmd.action);
    }
    const earlier = this.sink.recall(cmd.id);
    if (earlier) {
      this.log.info({ id: cmd.id, target }, "repeated command: answered again, not executed");
      return this.finish(earlier, origin);
    }
    if (cmd.expires !== undefined && cmd.expires <= ts) {
      return reject(`expired at ${new Date(cmd.expires).toISOString()}`, cmd.id, cmd.action);
    }
    const schema = actuator.actions[cmd.action];
    if (!schema) {
      return reject(`unknown action '${cmd.action}' for ${actuator.kind} ${actuator.name}; expected one of: ${Object.keys(actuator.actions).join(", ")}`, cmd.id, cmd.action);
    }
    const args = schema.safeParse(cmd.args);
    if (!args.success) return reject(`args.${describe(args.error)}`, cmd.id, cmd.action);

    const previous = this.busy.get(target) ?? Promise.resolve();
    const run = previous.then(async (): Promise<CommandResult> => {
      try {
        const state = await actuator.execute(cmd.action, args.data, this.now());
        return { id: cmd.id, target, action: cmd.action, status: "ok", state, ts };
      } catch (err) {
        return { id: cmd.id, target, action: cmd.action, status: "error", reason: err instanceof Error ? err.message : String(err), state: actuator.state(), ts };
      }
    });
    this.busy.set(
      target,
      run.catch(() => undefined),
    );
    return this.finish(await run, origin);
  }

  private finish(result: CommandResult, origin: string): CommandResult {
    const level = result.status === "ok" ? "info" : "warn";
    this.log[level]({ origin, id: result.id, target: result.target, action: result.action, status: result.status, reason: result.reason }, "command");
    try {
      this.sink.record(result);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, "could not store a command result");
    }
    return result;
  }
}
