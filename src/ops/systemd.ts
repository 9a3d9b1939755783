/**
 * sd_notify for Node without native modules: READY, STOPPING, STATUS and the watchdog.
 *
 * Node cannot send on unix datagram sockets, so each message goes through the `systemd-notify`
 * binary. The unit sets NotifyAccess=all, because the sender is a child process of the agent.
 * systemd-notify is run without --no-block: it then waits until systemd has processed the
 * message, so it is still alive when systemd looks up its cgroup (a sender that exits first has
 * its message dropped: "Cannot find unit for notify message", systemd/systemd#2737).
 *
 * Without NOTIFY_SOCKET (a terminal, tests, another supervisor) every call is a cheap no-op.
 */
import { spawn } from "node:child_process";

/** Sends one notification: its assignments, e.g. ["READY=1", "STATUS=running"]. */
export type NotifySender = (assignments: readonly string[]) => Promise<void>;

/** What the notifier logs with; a pino logger fits. */
export interface NotifyLog {
  info(msg: string): void;
  warn(msg: string): void;
}

export interface NotifyOptions {
  /** Where NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID are read; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** The agent's PID; default process.pid. */
  pid?: number;
  /** Replaces the systemd-notify spawner (tests). */
  send?: NotifySender;
  /** Default: one line on stderr. */
  log?: NotifyLog;
}

/** systemd-notify gets this long, including its wait for systemd, before it is killed. */
const SEND_TIMEOUT_MS = 10_000;

const stderrLog: NotifyLog = {
  info: (msg) => process.stderr.write(`edge-agent: ${msg}\n`),
  warn: (msg) => process.stderr.write(`edge-agent: ${msg}\n`),
};

/** The default sender: `systemd-notify --pid=<pid> A=1 B=2`, resolved when it exits with 0. */
export function spawnSystemdNotify(opts: { pid: number; env: NodeJS.ProcessEnv; binary?: string }): NotifySender {
  const binary = opts.binary ?? "systemd-notify";
  return (assignments) =>
    new Promise<void>((resolve, reject) => {
      const child = spawn(binary, [`--pid=${opts.pid}`, ...assignments], {
        env: opts.env,
        stdio: ["ignore", "ignore", "pipe"],
      });
      let stderr = "";
      child.stderr?.setEncoding("utf8");
      child.stderr?.on("data", (chunk: string) => {
        if (stderr.length < 1000) stderr += chunk;
      });
      const timer = setTimeout(() => child.kill("SIGKILL"), SEND_TIMEOUT_MS);
      timer.unref();
      child.on("error", (err) => {
        clearTimeout(timer);
        reject(new Error(`cannot run ${binary}: ${err.message}`));
      });
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve();
        else reject(new Error(`${binary} failed (${code ?? signal}): ${stderr.trim() || "no message"}`));
      });
    });
}

/** Sends sd_notify messages when the agent runs under systemd; a no-op otherwise. */
export class Notifier {
  readonly env: NodeJS.ProcessEnv;
  readonly pid: number;
  readonly log: NotifyLog;
  private readonly sender: NotifySender;
  private failureLogged = false;

  constructor(opts: NotifyOptions = {}) {
    this.env = opts.env ?? process.env;
    this.pid = opts.pid ?? process.pid;
    this.log = opts.log ?? stderrLog;
    this.sender = opts.send ?? spawnSystemdNotify({ pid: this.pid, env: this.env });
  }

  /** True when systemd listens: NOTIFY_SOCKET is set. */
  get enabled(): boolean {
    return Boolean(this.env.NOTIFY_SOCKET);
  }

  /**
   * Sends the assignments; true when delivered. Never throws: a failure is logged the first time
   * only, since a gateway without a working systemd-notify would otherwise log it every 15 s.
   */
  async send(assignments: readonly string[]): Promise<boolean> {
    if (!this.enabled) return false;
    try {
      await this.sender(assignments);
      return true;
    } catch (err) {
      if (!this.failureLogged) {
        this.failureLogged = true;
        this.log.warn(`sd_notify failed (${assignments.join(" ")}), further failures are not logged: ${(err as Error).message}`);
      }
      return false;
    }
  }

  async ready(status?: string): Promise<void> {
    await this.send(status === undefined ? ["READY=1"] : ["READY=1", statusAssignment(status)]);
  }

  async stopping(): Promise<void> {
    await this.send(["STOPPING=1"]);
  }

  async status(text: string): Promise<void> {
    await this.send([statusAssignment(text)]);
  }
}

/** STATUS= is one line of the message: newlines would start new assignments. */
function statusAssignment(text: string): string {
  return `STATUS=${text.replace(/[\r\n]+/g, " ")}`;
}

let defaultNotifier: Notifier | null = null;

/** The process-wide notifier behind the notify* functions (process.env, stderr). */
function processNotifier(): Notifier {
  defaultNotifier ??= new Notifier();
  return defaultNotifier;
}

/** READY=1 (with a STATUS line if given): start-up is complete. */
export function notifyReady(status?: string, notifier: Notifier = processNotifier()): Promise<void> {
  return notifier.ready(status);
}

/** STOPPING=1: the agent is shutting down (flushing); systemd waits up to TimeoutStopSec. */
export function notifyStopping(notifier: Notifier = processNotifier()): Promise<void> {
  return notifier.stopping();
}

/** STATUS=text, shown by `systemctl status edge-agent`. */
export function notifyStatus(text: string, notifier: Notifier = processNotifier()): Promise<void> {
  return notifier.status(text);
}

/**
 * How often to ping, in ms: half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises. Null when
 * the watchdog is off: no NOTIFY_SOCKET, no valid WATCHDOG_USEC, or WATCHDOG_PID naming another
 * process (the variables were inherited from a parent that systemd watches, not this one).
 */
export function watchdogPingIntervalMs(env: NodeJS.ProcessEnv, pid: number): number | null {
  if (!env.NOTIFY_SOCKET) return null;
  const usec = env.WATCHDOG_USEC;
  if (!usec || !/^\d+$/.test(usec) || Number(usec) <= 0) return null;
  const wpid = env.WATCHDOG_PID;
  if (wpid !== undefined && wpid !== "" && wpid !== String(pid)) return null;
  return Math.max(1, Math.floor(Number(usec) / 2000));
}

export interface WatchdogOptions extends NotifyOptions {
  /** Shares a notifier (its environment, sender, log and its failure-logged-once state). */
  notifier?: Notifier;
}

export interface WatchdogStats {
  enabled: boolean;
  intervalMs: number | null;
  pings: number;
  /** Checks that found the agent unhealthy, so sent nothing. */
  withheld: number;
  healthy: boolean;
}

/**
 * Pings WATCHDOG=1 every half WatchdogSec, but only while `healthy()` says so: an agent whose
 * loops are stuck stops pinging, and systemd kills and restarts it after WatchdogSec.
 */
export class Watchdog {
  /** The ping period; null when systemd asked for no watchdog. */
  readonly intervalMs: number | null;
  private readonly notifier: Notifier;
  private timer: NodeJS.Timeout | null = null;
  private sending = false;
  private pings = 0;
  private withheld = 0;
  private lastHealthy = true;

  constructor(
    private readonly healthy: () => boolean,
    opts: WatchdogOptions = {},
  ) {
    const custom = opts.env !== undefined || opts.pid !== undefined || opts.send !== undefined || opts.log !== undefined;
    this.notifier = opts.notifier ?? (custom ? new Notifier(opts) : processNotifier());
    this.intervalMs = watchdogPingIntervalMs(this.notifier.env, this.notifier.pid);
  }

  get enabled(): boolean {
    return this.intervalMs !== null;
  }

  /** Checks and pings now, then every intervalMs. Does nothing when the watchdog is off. */
  start(): void {
    if (this.intervalMs === null || this.timer) return;
    this.check();
    this.timer = setInterval(() => this.check(), this.intervalMs);
    // The watchdog must never be what keeps the process alive.
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  stats(): WatchdogStats {
    return { enabled: this.enabled, intervalMs: this.intervalMs, pings: this.pings, withheld: this.withheld, healthy: this.lastHealthy };
  }

  private check(): void {
    let ok: boolean;
    try {
      ok = this.healthy();
    } catch {
      ok = false;
    }
    if (ok !== this.lastHealthy) {
      if (ok) this.notifier.log.info("watchdog: the agent is healthy again, pinging systemd");
      else this.notifier.log.warn(`watchdog: the agent is unhealthy, not pinging; systemd restarts it unless it recovers within WatchdogSec`);
      this.lastHealthy = ok;
    }
    if (!ok) {
      this.withheld++;
      return;
    }
    // A systemd-notify still waiting for systemd: do not pile up processes behind it.
    if (this.sending) return;
    this.sending = true;
    void this.notifier
      .send(["WATCHDOG=1"])
      .then((sent) => {
        if (sent) this.pings++;
      })
      .finally(() => {
        this.sending = false;
      });
  }
}

export interface TaskHealth {
  /** Names the task in the problems reported. */
  name?: string;
  /** When its last run ended; null if none has ended yet. */
  lastRunEnd: number | null;
  /** Its interval, ms. */
  interval: number;
}

export interface HealthInput {
  now: number;
  /** When the tasks were scheduled: the reference for a task that has not finished a run yet. */
  startedAt: number;
  /** Updated by a tick of the agent's event loop. */
  lastLoopTick: number;
  loopMaxLagMs: number;
  tasks: readonly TaskHealth[];
  /** The least a task may go without finishing a run, for tasks with short intervals. */
  graceMs: number;
}

/**
 * What is wrong, one line per problem; empty when healthy. All times must come from one clock,
 * preferably a monotonic one (performance.now()): a Pi without a real-time clock jumps its wall
 * clock forward at boot when NTP syncs, which would make every task look late.
 *
 * Rules: the event loop ticked within loopMaxLagMs; each task finished a run within
 * max(3 × its interval, graceMs), counted from startedAt while it has not finished one.
 */
export function healthProblems(h: HealthInput): string[] {
  const problems: string[] = [];
  const loopAge = h.now - h.lastLoopTick;
  if (loopAge > h.loopMaxLagMs) problems.push(`event loop: last tick ${seconds(loopAge)} ago (limit ${seconds(h.loopMaxLagMs)})`);
  h.tasks.forEach((t, i) => {
    const limit = Math.max(3 * t.interval, h.graceMs);
    const age = h.now - (t.lastRunEnd ?? h.startedAt);
    if (age > limit) {
      const what = t.lastRunEnd === null ? "no run finished since start" : "last run finished";
      problems.push(`task ${t.name ?? `#${i}`}: ${what} ${seconds(age)} ago (limit ${seconds(limit)})`);
    }
  });
  return problems;
}

/** True when healthProblems finds nothing: the check to give the Watchdog. */
export function isHealthy(h: HealthInput): boolean {
  return healthProblems(h).length === 0;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
