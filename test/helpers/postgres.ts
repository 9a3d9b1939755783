/**
 * A PostgreSQL server of its own for a test or a benchmark: `initdb` in a temp dir, `postgres` on a
 * free loopback port, stopped and removed by `stop()`. The binaries come from Debian's
 * `postgresql` package (/usr/lib/postgresql/<version>/bin, not on PATH) or EDGE_TEST_PG_BIN.
 * PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user the
 * package creates. No vitest import: scripts use it too.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { freePort } from "./broker.js";

export interface TestPostgres {
  /** postgres://… for the superuser, database `postgres`. */
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** Runs SQL through a one-off client (`pg`), returns the rows. */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Stops the server (fast shutdown) and removes its directory. */
  stop(): Promise<void>;
  /** Kills the server (SIGKILL: a crash) and keeps its data; `start()` brings it back on the same port. */
  kill(): Promise<void>;
  start(): Promise<void>;
  /** The server's log so far (for a failing test's message). */
  log(): string;
}

function binDir(): string {
  const env = process.env.EDGE_TEST_PG_BIN;
  if (env) return env;
  const base = "/usr/lib/postgresql";
  const versions = existsSync(base) ? readdirSync(base).filter((v) => existsSync(join(base, v, "bin", "initdb"))).sort((a, b) => Number(b) - Number(a)) : [];
  if (versions.length === 0) throw new Error("PostgreSQL is not installed: install the Debian package `postgresql` (or set EDGE_TEST_PG_BIN to the directory holding initdb and postgres)");
  return join(base, versions[0]!, "bin");
}

/** As root, the uid/gid of the `postgres` user (the server refuses root); otherwise null. */
function serverUser(): { uid: number; gid: number } | null {
  if (userInfo().uid !== 0) return null;
  try {
    const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
    return { uid, gid };
  } catch {
    throw new Error("running as root, PostgreSQL needs a `postgres` user to run as (the Debian package `postgresql` creates it)");
  }
}

export interface PostgresOptions {
  /** More `-c name=value` settings for the server. */
  settings?: Record<string, string | number>;
}

export async function startPostgres(opts: PostgresOptions = {}): Promise<TestPostgres> {
  const bin = binDir();
  const dir = mkdtempSync(join(tmpdir(), "edge-pg-"));
  const data = join(dir, "data");
  const logFile = join(dir, "server.log");
  const as = serverUser();
  if (as) {
    chownSync(dir, as.uid, as.gid);
    chmodSync(dir, 0o700);
  }
  const spawnOpts = as ? { uid: as.uid, gid: as.gid } : {};
  execFileSync(join(bin, "initdb"), ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"], { ...spawnOpts, stdio: "pipe", cwd: dir });
  const port = await freePort();
  const settings: Record<string, string | number> = {
    listen_addresses: "127.0.0.1",
    port,
    unix_socket_directories: dir,
    logging_collector: "off",
    max_connections: 100,
    ...opts.settings,
  };
  const args = ["-D", data, ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`])];
  const { openSync } = await import("node:fs");
  let proc: ChildProcess | null = null;
  let exited = true;
  const log = () => {
    try {
      return readFileSync(logFile, "utf8");
    } catch {
      return "";
    }
  };
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const pg = (await import("pg")).default;
  const query = async <T,>(sql: string, params?: unknown[]): Promise<T[]> => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query(sql, params as unknown[])).rows as T[];
    } finally {
      await c.end();
    }
  };
  const start = async () => {
    const out = openSync(logFile, "a");
    if (as) chownSync(logFile, as.uid, as.gid);
    const p = spawn(join(bin, "postgres"), args, { ...spawnOpts, stdio: ["ignore", out, out], cwd: dir });
    proc = p;
    exited = false;
    p.once("exit", () => {
      if (proc === p) exited = true;
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (exited) throw new Error(`postgres exited at start; its log:\n${log()}`);
      try {
        await query("SELECT 1");
        return;
      } catch (err) {
        if (Date.now() > deadline) {
          p.kill("SIGKILL");
          throw new Error(`postgres did not accept connections within 30 s (${(err as Error).message}); its log:\n${log()}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  const halt = async (signal: NodeJS.Signals) => {
    const p = proc;
    if (!p || exited) return;
    const gone = new Promise<void>((r) => p.once("exit", () => r()));
    p.kill(signal);
    const t = setTimeout(() => p.kill("SIGKILL"), 10_000);
    await gone;
    clearTimeout(t);
    exited = true;
  };
  const kill = async () => {
    await halt("SIGKILL");
    // The postmaster's children die with it, but may hold the shared memory a moment longer.
    await new Promise((r) => setTimeout(r, 1000));
  };
  await start();
  const stop = async () => {
    await halt("SIGINT"); // fast shutdown
    rmSync(dir, { recursive: true, force: true });
  };
  return { url, port, dir, query, stop, kill, start, log };
}
