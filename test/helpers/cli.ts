import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { waitForOutput } from "./wait.js";

/** The built CLI (npm test builds it first). */
export const CLI = resolve("dist/src/cli/main.js");

function ensureBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'npm run build' (npm test does it for you)`);
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion. */
export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {}): CliResult {
  ensureBuilt();
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: "utf8",
    env: { ...process.env, ...opts.env },
    timeout: opts.timeoutMs ?? 20_000,
    input: opts.input ?? "",
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Starts the CLI in the background and collects its output. */
export function startCli(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess & { out: () => string } {
  ensureBuilt();
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  return Object.assign(child, { out: () => out });
}

export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

/** The agent's periodic status line (log.status_interval). */
export const STATUS_LINE = /stored (\d+) · sent (\d+) · pending (\d+) · broker (\w+)/g;

/**
 * Waits until `edge-agent run` is up and handles SIGINT/SIGTERM; the child's config must set
 * log.status_interval. run.ts installs its signal handlers in the same turn as the agent's start
 * resolves, so a status line (printed by a timer) after "agent running" proves they are in
 * place; a signal before that ends the process without the agent's stop (exit code null).
 */
export async function agentReady(child: ReturnType<typeof startCli>, timeoutMs = 20_000): Promise<void> {
  await waitForOutput(
    child,
    (out) => {
      const at = out.indexOf("agent running");
      return at >= 0 && new RegExp(STATUS_LINE.source).test(out.slice(at));
    },
    "the agent running and a status line after it",
    { timeoutMs },
  );
}

/** The numbers of every status line printed so far. */
export function statusLines(out: string): Array<{ stored: number; sent: number; pending: number; broker: string }> {
  return [...out.matchAll(STATUS_LINE)].map((m) => ({ stored: Number(m[1]), sent: Number(m[2]), pending: Number(m[3]), broker: m[4]! }));
}
