/**
 * Commands from the platform (MQTT `cmd/<target>`) and from the technician's CLI take one path:
 * size, JSON, repeat, keys, envelope, target, expiry, action, arguments — checked in that order,
 * and anything wrong is rejected with a reason before any actuator is touched. Every result goes
 * through the outbox (results stream), so the platform gets it even after an outage.
 *
 * A command id is executed at most once and its answer never changes (DESIGN.md, invariant 7):
 * the id is reserved, durably, before the actuator is touched; copies that arrive meanwhile wait
 * for the first result; any later message with a known id — to any target, valid or not — is
 * answered with the first result again. Nothing from outside can make `handle()` reject: what
 * goes wrong below it (an actuator, the store, a logger) becomes an `error` answer.
 */
import { COMMAND_ID, type CommandResult } from "../model/command.js";
import type { Logger } from "../model/logger.js";

export type { Actuator, CommandResult, CommandStatus } from "../model/command.js";
import type { Actuator } from "../model/command.js";


/** What the gateway knows of a command id: its first answer, or that it was being executed. */
export type Remembered = { answered: CommandResult } | { executing: { target: string; action: string; ts: number } };

/** Where ids are remembered (durably, across restarts) and answers are published. */
export interface ResultSink {
  recall(id: string): Remembered | undefined;
  /** Called with `executing` before an id's command touches anything, then once with its answer. */
  remember(id: string, what: Remembered): void;
  /** Stores an answer for the uplink; every message gets one (a repeat gets the first again). */
  publish(result: CommandResult): void;
}

/** The outbox's table of command ids, as the router keeps them in it. */
export interface CommandTable {
  recallCommand(id: string): string | undefined;
  rememberCommand(id: string, ts: number, json: string): void;
}

/**
 * Ids kept in the outbox's table: an answer as its plain result JSON (what release 0.1.0 wrote,
 * so either version reads the other's), a reservation as `{"pending":true,…}`.
 */
export function rememberedIn(table: CommandTable): Pick<ResultSink, "recall" | "remember"> {
  return {
    recall: (id) => {
      const json = table.recallCommand(id);
      return json === undefined ? undefined : decodeRemembered(json);
    },
    remember: (id, what) => {
      if ("answered" in what) table.rememberCommand(id, what.answered.ts, JSON.stringify(what.answered));
      else table.rememberCommand(id, what.executing.ts, JSON.stringify({ pending: true, ...what.executing }));
    },
  };
}

function decodeRemembered(json: string): Remembered {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    value = null;
  }
  const v = typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  if (v.pending !== true && (v.status === "ok" || v.status === "error" || v.status === "rejected")) return { answered: v as unknown as CommandResult };
  // A reservation, or a row nobody can read: either way, whether it ran is unknown. Not again.
  return { executing: { target: typeof v.target === "string" ? v.target : "", action: typeof v.action === "string" ? v.action : "", ts: typeof v.ts === "number" ? v.ts : 0 } };
}

export const MAX_COMMAND_BYTES = 4096;
/** Commands (and copies waiting for one) queued per target; beyond that a message is answered busy. */
export const MAX_WAITING_PER_TARGET = 16;
/** Answers kept in memory besides the store, so an id stays answered even when the store fails. */
const ANSWERS_IN_MEMORY = 1000;

/** Keys that mean something to JavaScript objects: refused anywhere in a command, whatever the schema. */
const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(["__proto__", "constructor", "prototype"]);

type Checks = typeof import("./command-check.js");

/** The first key JavaScript treats specially, with its path (`args.__proto__`), or null. */
function forbiddenKey(value: unknown, path: string): string | null {
  if (typeof value !== "object" || value === null) return null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = forbiddenKey(value[i], `${path}[${i}]`);
      if (found) return found;
    }
    return null;
  }
  for (const key of Object.keys(value)) {
    const at = path ? `${path}.${key}` : key;
    if (FORBIDDEN_KEYS.has(key)) return at;
    const found = forbiddenKey((value as Record<string, unknown>)[key], at);
    if (found) return found;
  }
  return null;
}

/** The id of a payload when it is readable and well formed, else null (for answers that parse nothing else). */
function safeId(payload: Buffer | string): string | null {
  try {
    if ((typeof payload === "string" ? Buffer.byteLength(payload) : payload.length) > MAX_COMMAND_BYTES) return null;
    const id = own(JSON.parse(payload.toString()) as unknown, "id");
    return typeof id === "string" && COMMAND_ID.test(id) ? id : null;
  } catch {
    return null;
  }
}

function own(value: unknown, key: string): unknown {
  return typeof value === "object" && value !== null && !Array.isArray(value) && Object.hasOwn(value, key) ? (value as Record<string, unknown>)[key] : undefined;
}

function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  try {
    return String(err);
  } catch {
    return "unknown error";
  }
}

/** Outside text in a reason: quoted and cut, so a reason stays one short line. */
function shown(text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}…` : text;
}

interface Lane {
  /** The last command queued on this target; the next one starts after it. */
  tail: Promise<unknown>;
  /** Commands queued or running, and copies waiting for one of them. */
  waiting: number;
}

export class CommandRouter {
  private readonly actuators = new Map<string, Actuator>();
  /** Targets built at their first command (the gateway's own, like `outbox`): their schemas load only if used. */
  private readonly deferred = new Map<string, () => Promise<Actuator>>();
  /** One command at a time per target, so two commands cannot interleave on one device. */
  private readonly lanes = new Map<string, Lane>();
  /** Ids reserved in this run and not answered yet: copies wait for the first result. */
  private readonly inflight = new Map<string, { target: string; done: Promise<CommandResult> }>();
  /** The last answers, newest last (a Map keeps insertion order). */
  private readonly answers = new Map<string, CommandResult>();
  /** Set at stop: actuators go to their safe state, and no command may move them after that. */
  private closedBecause: string | null = null;
  /** The envelope's schema (zod), loaded with the first command (see command-check.ts). */
  private checks: Checks | null = null;

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

  /**
   * Declares a target that is built when its first command comes (its argument schemas need
   * zod, which a gateway never commanded does not load). False when the name is taken.
   */
  defer(name: string, build: () => Promise<Actuator>): boolean {
    if (this.actuators.has(name) || this.deferred.has(name)) return false;
    let building: Promise<Actuator> | null = null;
    this.deferred.set(name, () =>
      (building ??= build().catch((err: unknown) => {
        building = null;
        throw err;
      })),
    );
    return true;
  }

  targets(): string[] {
    return [...this.actuators.keys(), ...this.deferred.keys()];
  }

  /** A deferred target, built now (once); nothing when the target is not one. */
  private async build(target: string): Promise<void> {
    const build = this.deferred.get(target);
    if (!build) return;
    const actuator = await build();
    if (this.deferred.delete(target)) this.actuators.set(target, actuator);
  }

  actuator(name: string): Actuator | undefined {
    return this.actuators.get(name);
  }

  /**
   * Checks and runs one command; always resolves with its answer (and publishes it), never
   * rejects: a failure anywhere below is an `error` answer, logged, and the gateway goes on.
   */
  async handle(target: string, payload: Buffer | string, origin: "mqtt" | "local"): Promise<CommandResult> {
    try {
      return await this.route(target, payload, origin);
    } catch (err) {
      let ts = 0;
      try {
        ts = this.now();
      } catch {
        ts = Date.now();
      }
      const result: CommandResult = { id: null, target, status: "error", reason: `internal error, not executed: ${messageOf(err)}`, ts };
      this.safely(() => this.log.error({ origin, target, err: messageOf(err) }, "command path failed"));
      this.safely(() => this.sink.publish(result));
      return result;
    }
  }

  /**
   * Refuses every command from now on — new ones, and those queued but not started — and waits
   * for the ones running. Called before the actuators enter their safe state at stop, so nothing
   * moves them afterwards. Each refused command is still answered (rejected, with its id).
   */
  async close(reason = "the gateway is stopping; send again later"): Promise<void> {
    this.closedBecause = reason;
    await Promise.all([...this.lanes.values()].map((l) => l.tail.catch(() => undefined)));
  }

  private async route(target: string, payload: Buffer | string, origin: string): Promise<CommandResult> {
    // Loaded at the first command, then at hand: nothing below waits from here on until the id is reserved.
    const checks = this.checks ?? (this.checks = await import("./command-check.js"));
    if (this.deferred.has(target)) await this.build(target);
    const ts = this.now();
    if (this.closedBecause !== null) {
      const raw = safeId(payload);
      return this.answer({ id: raw, target, status: "rejected", reason: this.closedBecause, ts }, origin);
    }
    // Answers that are not an id's answer (no id, or the id is not kept): published, never remembered.
    const refuse = (reason: string, id: string | null = null, action?: string): CommandResult =>
      this.answer({ id, target, ...(action !== undefined ? { action } : {}), status: "rejected", reason, ts }, origin);

    const size = typeof payload === "string" ? Buffer.byteLength(payload) : payload.length;
    if (size > MAX_COMMAND_BYTES) return refuse(`payload of ${size} bytes is larger than ${MAX_COMMAND_BYTES}`);
    let raw: unknown;
    try {
      raw = JSON.parse(payload.toString());
    } catch {
      return refuse("malformed JSON");
    }
    const rawId = own(raw, "id");
    const echoed = typeof rawId === "string" ? rawId.slice(0, 64) : null;
    // An id that could be a command's is looked up before anything else about the message.
    const id = typeof rawId === "string" && COMMAND_ID.test(rawId) ? rawId : null;
    // Synchronous from the lookup to the reservation below, so two copies cannot both pass.
    if (id !== null) {
      const running = this.inflight.get(id);
      if (running) return this.copy(id, running, target, origin);
      const known = this.known(id, target, origin);
      if (known) return known;
    }
    // From here on, a rejection with a well-formed id is that id's first and final answer.
    const reject = (reason: string, action?: string): CommandResult => {
      const result: CommandResult = { id: echoed, target, ...(action !== undefined ? { action } : {}), status: "rejected", reason, ts };
      if (id !== null) this.settle(id, result);
      return this.answer(result, origin);
    };

    const bad = forbiddenKey(raw, "");
    if (bad !== null) return reject(bad.startsWith("args.") ? `${shown(bad)}: unknown key` : `envelope: ${shown(bad)}: unknown key`);
    const parsed = checks.envelope.safeParse(raw, { reportInput: true });
    if (!parsed.success) return reject(`envelope: ${checks.firstProblem(parsed.error, [])}`);
    const cmd = parsed.data;

    const actuator = this.actuators.get(target);
    if (!actuator) {
      const known = this.targets();
      return reject(`unknown target '${shown(target)}' (declared actuators: ${known.length ? known.join(", ") : "none"})`, cmd.action);
    }
    if (cmd.expires !== undefined && cmd.expires <= ts) {
      return reject(`expired at ${new Date(cmd.expires).toISOString()}`, cmd.action);
    }
    const schema = actuator.actions.get(cmd.action);
    if (!schema) {
      return reject(`unknown action '${cmd.action}' for ${actuator.kind} ${actuator.name}; expected one of: ${[...actuator.actions.keys()].join(", ")}`, cmd.action);
    }
    // The arguments as they came, own keys only: a copy would have turned `__proto__` into a prototype.
    const args = schema.safeParse(own(raw, "args") ?? {}, { reportInput: true });
    if (!args.success) return reject(checks.firstProblem(args.error, ["args"]), cmd.action);

    const lane = this.lane(target);
    if (lane.waiting >= MAX_WAITING_PER_TARGET) {
      return refuse(`busy: ${actuator.name} has ${lane.waiting} commands waiting; not executed, send again later`, cmd.id, cmd.action);
    }
    // Reserved durably before anything is touched: after a crash mid-execution it is not run again.
    try {
      this.sink.remember(cmd.id, { executing: { target, action: cmd.action, ts } });
    } catch (err) {
      this.safely(() => this.log.error({ id: cmd.id, target, err: messageOf(err) }, "could not reserve a command id"));
      return this.answer({ id: cmd.id, target, action: cmd.action, status: "error", reason: `could not store the command before executing it (${messageOf(err)}); not executed`, ts }, origin);
    }
    lane.waiting++;
    const done = lane.tail.then(() => this.execute(actuator, cmd.id, cmd.action, args.data, ts));
    lane.tail = done;
    this.inflight.set(cmd.id, { target, done });
    const result = await done;
    return this.answer(result, origin);
  }

  /** A copy of a command being executed: waits for its result and answers with it. */
  private async copy(id: string, running: { target: string; done: Promise<CommandResult> }, target: string, origin: string): Promise<CommandResult> {
    const lane = this.lane(running.target);
    if (lane.waiting >= MAX_WAITING_PER_TARGET) {
      return this.answer({ id, target, status: "rejected", reason: `busy: ${shown(running.target)} has ${lane.waiting} commands waiting; this copy was not queued, send again later`, ts: this.now() }, origin);
    }
    lane.waiting++;
    try {
      return this.again(await running.done, target, origin);
    } finally {
      this.leave(running.target, lane);
    }
  }

  /** The answer to an id answered already, or reserved by an earlier run; null when it is new. */
  private known(id: string, target: string, origin: string): CommandResult | null {
    const earlier = this.answers.get(id);
    if (earlier) return this.again(earlier, target, origin);
    const stored = this.sink.recall(id);
    if (!stored) return null;
    if ("answered" in stored) return this.again(stored.answered, target, origin);
    // Reserved by an earlier run that never answered: it may have acted. Never again; say so.
    const was = stored.executing;
    const actuator = this.actuators.get(was.target);
    const result: CommandResult = {
      id,
      target: was.target || target,
      ...(was.action ? { action: was.action } : {}),
      status: "error",
      reason: "the gateway restarted while this command was executing; it was not executed again — check the state",
      ...(actuator ? { state: this.stateOf(actuator) } : {}),
      ts: this.now(),
    };
    this.settle(id, result);
    return this.answer(result, origin);
  }

  private again(first: CommandResult, target: string, origin: string): CommandResult {
    this.safely(() => this.log.info({ id: first.id, target: shown(target) }, "repeated command id: answered again with its first result, not executed"));
    return this.answer(first, origin);
  }

  /** Runs a reserved command; never rejects. Its answer is remembered before anyone sees it. */
  private async execute(actuator: Actuator, id: string, action: string, args: unknown, ts: number): Promise<CommandResult> {
    let result: CommandResult;
    if (this.closedBecause !== null) {
      // Queued before the stop and not started: never executed, and that is its answer.
      result = { id, target: actuator.name, action, status: "rejected", reason: this.closedBecause, ts };
      this.settle(id, result);
      this.inflight.delete(id);
      this.leave(actuator.name, this.lane(actuator.name));
      return result;
    }
    try {
      const state = await actuator.execute(action, args, this.now(), id);
      result = { id, target: actuator.name, action, status: "ok", state, ts };
    } catch (err) {
      result = { id, target: actuator.name, action, status: "error", reason: messageOf(err), state: this.stateOf(actuator), ts };
    }
    this.settle(id, result);
    this.inflight.delete(id);
    this.leave(actuator.name, this.lane(actuator.name));
    return result;
  }

  /** Keeps an id's first answer: in memory, and in the store (which may fail: logged). */
  private settle(id: string, result: CommandResult): void {
    this.answers.set(id, result);
    if (this.answers.size > ANSWERS_IN_MEMORY) {
      const oldest = this.answers.keys().next();
      if (!oldest.done) this.answers.delete(oldest.value);
    }
    try {
      this.sink.remember(id, { answered: result });
    } catch (err) {
      this.safely(() => this.log.error({ id, err: messageOf(err) }, "could not store a command result"));
    }
  }

  private lane(target: string): Lane {
    let lane = this.lanes.get(target);
    if (!lane) {
      lane = { tail: Promise.resolve(), waiting: 0 };
      this.lanes.set(target, lane);
    }
    return lane;
  }

  private leave(target: string, lane: Lane): void {
    lane.waiting--;
    if (lane.waiting === 0 && this.lanes.get(target) === lane) this.lanes.delete(target);
  }

  private stateOf(actuator: Actuator): Record<string, unknown> {
    try {
      return actuator.state();
    } catch (err) {
      return { unknown: messageOf(err) };
    }
  }

  /** Logs and publishes one answer; neither may throw past here. */
  private answer(result: CommandResult, origin: string): CommandResult {
    const level = result.status === "ok" ? "info" : "warn";
    this.safely(() =>
      this.log[level]({ origin, id: result.id, target: shown(result.target), action: result.action, status: result.status, reason: result.reason }, "command"),
    );
    try {
      this.sink.publish(result);
    } catch (err) {
      this.safely(() => this.log.error({ id: result.id, err: messageOf(err) }, "could not store a command answer for the uplink"));
    }
    return result;
  }

  private safely(f: () => void): void {
    try {
      f();
    } catch {
      // A logger that throws must not take the command path with it.
    }
  }
}
