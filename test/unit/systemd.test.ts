import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { silentLogger } from "../../src/ops/logger.js";
import {
  type HealthInput,
  healthProblems,
  isHealthy,
  Notifier,
  type NotifyLog,
  notifyReady,
  notifyStatus,
  notifyStopping,
  spawnSystemdNotify,
  Watchdog,
  watchdogPingIntervalMs,
} from "../../src/ops/systemd.js";
import { tempDir } from "../helpers/tmp.js";

const PID = 4242;
const SYSTEMD_ENV = { NOTIFY_SOCKET: "/run/systemd/notify", WATCHDOG_USEC: "30000000", WATCHDOG_PID: String(PID) };

/** A sender that records every message, and a log that records every line. */
function capture() {
  const sent: string[][] = [];
  const logged: string[] = [];
  const log: NotifyLog = { info: (m) => logged.push(`info ${m}`), warn: (m) => logged.push(`warn ${m}`) };
  const send = (a: readonly string[]) => {
    sent.push([...a]);
    return Promise.resolve();
  };
  return { sent, logged, log, send };
}

describe("Watchdog", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("pings WATCHDOG=1 at half WATCHDOG_USEC while healthy, and stops pinging while unhealthy", async () => {
    const c = capture();
    let healthy = true;
    const wd = new Watchdog(() => healthy, { env: SYSTEMD_ENV, pid: PID, send: c.send, log: c.log });
    expect(wd.intervalMs).toBe(15_000);
    wd.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(c.sent).toEqual([["WATCHDOG=1"]]); // at start
    await vi.advanceTimersByTimeAsync(14_999);
    expect(c.sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(c.sent).toHaveLength(2); // 15 s
    await vi.advanceTimersByTimeAsync(30_000);
    expect(c.sent).toHaveLength(4); // 30 s, 45 s

    healthy = false;
    await vi.advanceTimersByTimeAsync(120_000);
    expect(c.sent).toHaveLength(4);
    expect(wd.stats()).toMatchObject({ pings: 4, withheld: 8, healthy: false });
    expect(c.logged.filter((l) => l.startsWith("warn"))).toHaveLength(1); // the transition, once

    healthy = true;
    await vi.advanceTimersByTimeAsync(15_000);
    expect(c.sent).toHaveLength(5);
    expect(c.logged.at(-1)).toMatch(/^info watchdog: the agent is healthy again/);

    wd.stop();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(c.sent).toHaveLength(5);
    expect(c.sent.every((m) => m.length === 1 && m[0] === "WATCHDOG=1")).toBe(true);
  });

  it("treats a health check that throws as unhealthy", async () => {
    const c = capture();
    const wd = new Watchdog(
      () => {
        throw new Error("boom");
      },
      { env: SYSTEMD_ENV, pid: PID, send: c.send, log: c.log },
    );
    wd.start();
    await vi.advanceTimersByTimeAsync(60_000);
    wd.stop();
    expect(c.sent).toEqual([]);
  });

  it("does not pile up pings behind a systemd-notify that has not returned", async () => {
    const sent: string[][] = [];
    let release: () => void = () => {};
    const send = (a: readonly string[]) => {
      sent.push([...a]);
      return new Promise<void>((r) => (release = r));
    };
    const wd = new Watchdog(() => true, { env: SYSTEMD_ENV, pid: PID, send, log: capture().log });
    wd.start();
    await vi.advanceTimersByTimeAsync(45_000);
    expect(sent).toHaveLength(1);
    release();
    await vi.advanceTimersByTimeAsync(15_000);
    wd.stop();
    expect(sent).toHaveLength(2);
  });

  it("is off without NOTIFY_SOCKET or WATCHDOG_USEC, and when WATCHDOG_PID names another process", async () => {
    const c = capture();
    const checks = vi.fn(() => true);
    const envs: NodeJS.ProcessEnv[] = [
      { WATCHDOG_USEC: "30000000" },
      { NOTIFY_SOCKET: "/run/systemd/notify" },
      { ...SYSTEMD_ENV, WATCHDOG_PID: String(PID + 1) },
      { ...SYSTEMD_ENV, WATCHDOG_USEC: "0" },
      { ...SYSTEMD_ENV, WATCHDOG_USEC: "30s" },
    ];
    for (const env of envs) {
      const wd = new Watchdog(checks, { env, pid: PID, send: c.send, log: c.log });
      expect(wd.enabled).toBe(false);
      wd.start();
    }
    await vi.advanceTimersByTimeAsync(120_000);
    expect(c.sent).toEqual([]);
    expect(checks).not.toHaveBeenCalled();
  });

  it("accepts an unset WATCHDOG_PID, as older systemd versions send none", () => {
    const { WATCHDOG_PID: _, ...env } = SYSTEMD_ENV;
    expect(watchdogPingIntervalMs(env, PID)).toBe(15_000);
    expect(watchdogPingIntervalMs({ ...SYSTEMD_ENV, WATCHDOG_USEC: "1000" }, PID)).toBe(1);
  });
});

describe("Notifier", () => {
  it("sends READY, STATUS and STOPPING under systemd, keeping STATUS on one line", async () => {
    const c = capture();
    const n = new Notifier({ env: SYSTEMD_ENV, pid: PID, send: c.send, log: c.log });
    await notifyReady("polling 3 sources", n);
    await notifyStatus("stored 10\nsent 8", n);
    await notifyStopping(n);
    await n.ready();
    expect(c.sent).toEqual([["READY=1", "STATUS=polling 3 sources"], ["STATUS=stored 10 sent 8"], ["STOPPING=1"], ["READY=1"]]);
  });

  it("does nothing without NOTIFY_SOCKET", async () => {
    const c = capture();
    const n = new Notifier({ env: {}, pid: PID, send: c.send, log: c.log });
    expect(n.enabled).toBe(false);
    await notifyReady("x", n);
    await notifyStopping(n);
    expect(await n.send(["WATCHDOG=1"])).toBe(false);
    expect(c.sent).toEqual([]);
  });

  it("logs a failing sender once and never throws", async () => {
    const logged: string[] = [];
    const n = new Notifier({
      env: SYSTEMD_ENV,
      pid: PID,
      send: () => Promise.reject(new Error("cannot run systemd-notify: spawn systemd-notify ENOENT")),
      log: { info: (m) => logged.push(m), warn: (m) => logged.push(m) },
    });
    await expect(n.ready()).resolves.toBeUndefined();
    await expect(n.send(["WATCHDOG=1"])).resolves.toBe(false);
    await n.stopping();
    expect(logged).toHaveLength(1);
    expect(logged[0]).toContain("ENOENT");
  });

  it("takes a pino logger", () => {
    expect(new Notifier({ env: {}, log: silentLogger() }).enabled).toBe(false);
  });
});

describe("spawnSystemdNotify", () => {
  it("runs the binary with --pid and the assignments, in the given environment", async () => {
    const dir = tempDir();
    const out = join(dir, "args");
    const fake = join(dir, "systemd-notify");
    writeFileSync(fake, `#!/bin/sh\nprintf '%s\\n' "$@" "socket=$NOTIFY_SOCKET" > "${out}"\n`);
    chmodSync(fake, 0o755);
    const send = spawnSystemdNotify({ pid: PID, env: { NOTIFY_SOCKET: "/run/x" }, binary: fake });
    await send(["READY=1", "STATUS=up"]);
    expect(readFileSync(out, "utf8").split("\n")).toEqual([`--pid=${PID}`, "READY=1", "STATUS=up", "socket=/run/x", ""]);
  });

  it("rejects when the binary is missing or fails, and the notifier logs that once", async () => {
    const dir = tempDir();
    const failing = join(dir, "systemd-notify");
    writeFileSync(failing, "#!/bin/sh\necho 'No such file or directory' >&2\nexit 1\n");
    chmodSync(failing, 0o755);
    await expect(spawnSystemdNotify({ pid: PID, env: {}, binary: failing })(["READY=1"])).rejects.toThrow(/failed \(1\): No such file/);
    const missing = spawnSystemdNotify({ pid: PID, env: {}, binary: join(dir, "absent") });
    await expect(missing(["READY=1"])).rejects.toThrow(/cannot run .*absent/);
    const logged: string[] = [];
    const n = new Notifier({ env: SYSTEMD_ENV, pid: PID, send: missing, log: { info: () => {}, warn: (m) => logged.push(m) } });
    await n.ready();
    await n.status("x");
    expect(logged).toHaveLength(1);
  });
});

describe("isHealthy", () => {
  const base: HealthInput = {
    now: 1_000_000,
    startedAt: 900_000,
    lastLoopTick: 999_000,
    loopMaxLagMs: 5_000,
    graceMs: 30_000,
    tasks: [
      { name: "meters", lastRunEnd: 999_500, interval: 1_000 },
      { name: "rooms", lastRunEnd: 950_000, interval: 60_000 },
    ],
  };

  it("is healthy when the loop ticks and every task runs in time", () => {
    expect(healthProblems(base)).toEqual([]);
    expect(isHealthy(base)).toBe(true);
  });

  it("needs an event loop tick within loopMaxLagMs (the limit itself is still in time)", () => {
    expect(isHealthy({ ...base, lastLoopTick: base.now - 5_000 })).toBe(true);
    expect(healthProblems({ ...base, lastLoopTick: base.now - 5_001 })).toEqual(["event loop: last tick 5.0 s ago (limit 5.0 s)"]);
  });

  it("gives each task max(3 × interval, graceMs)", () => {
    // 1 s interval: the grace of 30 s applies.
    expect(isHealthy({ ...base, tasks: [{ lastRunEnd: base.now - 30_000, interval: 1_000 }] })).toBe(true);
    expect(healthProblems({ ...base, tasks: [{ lastRunEnd: base.now - 30_001, interval: 1_000 }] })).toEqual([
      "task #0: last run finished 30.0 s ago (limit 30.0 s)",
    ]);
    // 60 s interval: three intervals, 180 s.
    expect(isHealthy({ ...base, tasks: [{ lastRunEnd: base.now - 180_000, interval: 60_000 }] })).toBe(true);
    expect(isHealthy({ ...base, tasks: [{ lastRunEnd: base.now - 180_001, interval: 60_000 }] })).toBe(false);
  });

  it("counts a task that has not finished a run from startedAt", () => {
    const never = { name: "slow", lastRunEnd: null, interval: 10_000 };
    expect(isHealthy({ ...base, startedAt: base.now - 30_000, tasks: [never] })).toBe(true);
    expect(healthProblems({ ...base, startedAt: base.now - 40_000, tasks: [never] })).toEqual([
      "task slow: no run finished since start 40.0 s ago (limit 30.0 s)",
    ]);
  });

  it("reports every problem at once", () => {
    const stuck = { ...base, now: base.now + 600_000 };
    expect(healthProblems(stuck)).toHaveLength(3);
    expect(isHealthy(stuck)).toBe(false);
  });
});
