/**
 * Boards that move: unplugged and plugged back under the same name, or re-enumerated under
 * another one (ttyACM0 → ttyACM1). Bound by its unique id, the board is found again on whichever
 * port it answers, without a restart; a board with another id on a probed port is never taken.
 * The C reference firmware plays the board (build/ebp-host), socat the USB cable.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { exited, runCli, startCli, agentReady } from "../helpers/cli.js";
import { PtyPair } from "../helpers/socat.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor, waitForOutput } from "../helpers/wait.js";

const FIRMWARE = "drivers/bridge/firmware";
const HOST = resolve(FIRMWARE, "build/ebp-host");

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

beforeAll(async () => {
  await promisify(execFile)("make", ["-s", "-C", FIRMWARE, "build/ebp-host"], { timeout: 120_000 });
}, 130_000);

function track<T extends ChildProcess>(child: T): T {
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited(child);
  });
  return child;
}

function board(port: string, id: string, extra: string[] = []): ChildProcess & { out: () => string } {
  const child = track(spawn(HOST, ["--port", port, "--id", id, "--interval-ms", "100", "--ring", "4096", ...extra], { stdio: ["ignore", "ignore", "pipe"] }));
  let out = "";
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  return Object.assign(child, { out: () => out });
}

/** A pty pair whose gateway end is `<dir>/<gw>` and board end `<dir>/<b>`. */
async function cable(dir: string, gw: string, b: string): Promise<PtyPair> {
  const pair = new PtyPair(dir);
  Object.assign(pair, { a: join(dir, gw), b: join(dir, b) });
  await pair.plug();
  cleanups.push(() => pair.unplug());
  return pair;
}

interface Listed {
  online: boolean;
  port: string | null;
  id: string | null;
  sessions: number;
  state: string;
}
const listed = (config: string): Listed => (JSON.parse(runCli(["bridge", "list", "-c", config, "--json"]).stdout) as Listed[])[0]!;

function writeConfig(dir: string, source: string): string {
  const config = join(dir, "agent.yaml");
  writeFileSync(
    config,
    `site: lab\ngateway: gw-replug\nuplink: { url: "mqtt://127.0.0.1:9" }\nstore: { path: ./outbox.db }\nlog: { level: info, status_interval: 1s }\nsources:\n  - ${source}\n`,
  );
  return config;
}

interface StatusJson {
  sources: Record<string, { devices: Array<{ online: boolean; lastError: string | null }> }>;
}
const statusOf = (config: string) => JSON.parse(runCli(["status", "-c", config, "--json"]).stdout) as StatusJson;

describe("ports that are not what the config says", () => {
  it("a port where something else talks (not a board): counted, named in the status, nothing else affected", { timeout: 60_000 }, async () => {
    const dir = tempDir();
    const pair = await cable(dir, "ttyUSB0", "other");
    const config = writeConfig(dir, `{ type: bridge, name: node-1, port: ${pair.a}, boot_delay: 0s }`);
    const agent = track(startCli(["run", "-c", config]));
    await agentReady(agent);
    // A device printing text lines (an NMEA GPS, a console) on the port.
    const other = track(spawn("sh", ["-c", `while :; do printf '$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n' > ${pair.b}; sleep 0.1; done`], { stdio: "ignore" }));
    await waitFor(
      "the status naming it",
      () => statusOf(config).sources["node-1"]!.devices[0]!.lastError?.match(/bytes on .* but no hello: not a bridge board/) ?? undefined,
      { timeoutMs: 15_000, detail: () => JSON.stringify(statusOf(config).sources["node-1"]) },
    );
    expect(listed(config)).toMatchObject({ online: false, state: "connecting" });
    await waitForOutput(agent, /bytes between frames \(not a frame\).*GPGGA/, "the text logged once");
    other.kill("SIGKILL");
    agent.kill("SIGTERM");
    expect(await exited(agent)).toBe(0);
  });

  it("a second agent on the same port: refused with 'in use by another process', the first keeps its board", { timeout: 60_000 }, async () => {
    const dir = tempDir();
    const pair = await cable(dir, "ttyUSB0", "board");
    board(pair.b, "c0ffee02");
    const first = writeConfig(dir, `{ type: bridge, name: node-1, port: ${pair.a}, boot_delay: 0s }`);
    const agent = track(startCli(["run", "-c", first]));
    await agentReady(agent);
    await waitFor("the board online", () => listed(first).online || undefined);
    const dir2 = tempDir();
    const second = writeConfig(dir2, `{ type: bridge, name: node-1, port: ${pair.a}, boot_delay: 0s }`);
    const agent2 = track(startCli(["run", "-c", second]));
    await agentReady(agent2);
    await waitForOutput(agent2, /is in use by another process/, "the second agent's refusal");
    expect(statusOf(second).sources["node-1"]!.devices[0]!.lastError).toMatch(/in use by another process/);
    expect(listed(first).online).toBe(true);
    agent2.kill("SIGTERM");
    agent.kill("SIGTERM");
    expect(await exited(agent2)).toBe(0);
    expect(await exited(agent)).toBe(0);
  });
});

describe("a bridged board that moves", () => {
  it("by id: found on the probed port where it answers, skipping another board, and again after it re-enumerates under a new name", { timeout: 90_000 }, async () => {
    const dir = tempDir();
    const decoy = await cable(dir, "ttyACM0", "boardX");
    board(decoy.b, "b0b0b0b0");
    const first = await cable(dir, "ttyACM1", "board1");
    const persist = join(dir, "ring.bin");
    let b = board(first.b, "a1b2c3d4", ["--persist", persist]);
    const config = writeConfig(dir, `{ type: bridge, name: node-1, board_id: a1b2c3d4, probe: ["${dir}/ttyACM*"], boot_delay: 0s, heartbeat: 200ms, offline_after: 1s }`);
    const agent = track(startCli(["run", "-c", config]));
    await agentReady(agent);
    await waitFor("the board online on ttyACM1", () => {
      const l = listed(config);
      return l.online && l.port === join(dir, "ttyACM1") ? l : undefined;
    });
    await waitForOutput(agent, /a board with id b0b0b0b0 answered, not a1b2c3d4/, "the other board named");
    await waitForOutput(b, /session up/, "the board's session up");

    // Unplugged; it comes back as ttyACM2 (a new cable, the board reset: a new boot id).
    b.kill("SIGKILL");
    await exited(b);
    await first.unplug();
    const second = await cable(dir, "ttyACM2", "board2");
    b = board(second.b, "a1b2c3d4", ["--persist", persist]);
    await waitFor(
      "the board online again on ttyACM2",
      () => {
        const l = listed(config);
        return l.online && l.port === join(dir, "ttyACM2") ? l : undefined;
      },
      { timeoutMs: 30_000, detail: () => JSON.stringify(listed(config)) },
    );
    expect(listed(config).sessions).toBe(2);
    await waitForOutput(b, /acked boot_id/, "readings acknowledged on the new port");
    // The other board was never taken.
    expect(agent.out()).not.toMatch(/"id":"b0b0b0b0"[^\n]*board online/);
    agent.kill("SIGTERM");
    expect(await exited(agent)).toBe(0);
  });

  it("by port: unplugged and plugged back under the same name, the session comes back without a restart", { timeout: 60_000 }, async () => {
    const dir = tempDir();
    const pair = await cable(dir, "ttyUSB0", "board");
    let b = board(pair.b, "c0ffee01");
    const config = writeConfig(dir, `{ type: bridge, name: node-1, port: ${pair.a}, boot_delay: 0s, heartbeat: 200ms, offline_after: 1s }`);
    const agent = track(startCli(["run", "-c", config]));
    await agentReady(agent);
    await waitFor("the board online", () => listed(config).online || undefined);
    b.kill("SIGKILL");
    await exited(b);
    await pair.unplug();
    await waitFor("the board offline", () => (listed(config).online ? undefined : true), { timeoutMs: 10_000 });
    await pair.plug();
    b = board(pair.b, "c0ffee01");
    await waitFor("the board online again", () => (listed(config).online && listed(config).sessions === 2) || undefined, { timeoutMs: 30_000, detail: () => JSON.stringify(listed(config)) });
    await waitForOutput(agent, /board offline/, "the board's going offline logged");
    agent.kill("SIGTERM");
    expect(await exited(agent)).toBe(0);
  });
});
