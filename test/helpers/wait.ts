/**
 * Waiting for conditions instead of for wall-clock time: a test that sleeps "long enough" fails
 * on a loaded machine (CI shares its cores), a test that waits for what it needs does not. The
 * time limits here are only there to turn a hang into a failure that names what never came.
 */
import type { ChildProcess } from "node:child_process";

export interface WaitOptions {
  /** Fails after this long; generous, since it is only reached when something is wrong. */
  timeoutMs?: number;
  /** How often the condition is checked. */
  everyMs?: number;
  /** Appended to the failure: the state that did not match (output, counters…). */
  detail?: () => string;
}

/** Thrown by a check to stop waiting at once: what it waits for can no longer come. */
export class WaitAborted extends Error {}

/**
 * Polls `check` until it returns something other than undefined or false, and returns that.
 * A check that throws is retried (its last error is named if time runs out), unless it throws
 * WaitAborted.
 */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, opts: WaitOptions = {}): Promise<T> {
  const { timeoutMs = 20_000, everyMs = 20 } = opts;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      if (err instanceof WaitAborted) throw new Error(`gave up waiting for ${what}: ${err.message}`);
      last = err;
    }
    if (Date.now() > deadline) {
      const why = last === undefined ? "" : ` (last error: ${(last as Error).message})`;
      const detail = opts.detail ? `\n${opts.detail()}` : "";
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}${detail}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

type Output = ChildProcess & { out: () => string };

/** The last lines of a child's output, for a failure message. */
function tailOf(child: Output, lines = 30): string {
  const exit = child.exitCode !== null || child.signalCode !== null ? ` (exited: ${child.exitCode ?? child.signalCode})` : "";
  return `output so far${exit}:\n${child.out().split("\n").slice(-lines).join("\n")}`;
}

/**
 * Waits until a child's output (stdout and stderr, see startCli) matches `pattern`; returns the
 * match. A function pattern returns a truthy value once the output is what the test needs.
 */
export function waitForOutput(child: Output, pattern: RegExp, what?: string, opts?: WaitOptions): Promise<RegExpExecArray>;
export function waitForOutput<T>(child: Output, pattern: (out: string) => T | undefined | false, what: string, opts?: WaitOptions): Promise<T>;
export function waitForOutput<T>(child: Output, pattern: RegExp | ((out: string) => T | undefined | false), what?: string, opts: WaitOptions = {}): Promise<unknown> {
  const test = typeof pattern === "function" ? pattern : (out: string) => pattern.exec(out) ?? undefined;
  return waitFor(
    what ?? `output matching ${String(pattern)}`,
    () => {
      const found = test(child.out());
      // A child that is gone will print nothing more: fail now, with what it said.
      if ((found === undefined || found === false) && (child.exitCode !== null || child.signalCode !== null)) {
        throw new WaitAborted(`the process exited; ${tailOf(child)}`);
      }
      return found;
    },
    { ...opts, detail: () => tailOf(child) },
  );
}

/** Waits until `pred` holds: waitFor for a plain condition. */
export async function until(pred: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  await waitFor(what, () => pred() || undefined, { timeoutMs });
}

/** The same, named first (for call sites that read better that way). */
export async function untilThat(what: string, pred: () => boolean, timeoutMs = 15_000): Promise<void> {
  await until(pred, what, timeoutMs);
}
