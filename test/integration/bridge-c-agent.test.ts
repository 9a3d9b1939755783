/**
 * The C reference firmware (drivers/bridge/firmware, built with gcc and nanopb) against the
 * agent over a socat pty pair, with Mosquitto as the platform: the spec is implementable and
 * both sides agree. Handshake, telemetry to the broker with the gateway's sequence numbers
 * whole, commands acknowledged and read back (and refused outside the bounds), and a gateway
 * SIGKILL while the board keeps measuring: after the restart every board reading is in the
 * outbox exactly once (the board's resends recognised), and none is lost.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { sharedBrokerUrl } from "../helpers/broker.js";
import { agentReady, exited, runCli, startCli } from "../helpers/cli.js";
import { SerialLink } from "../../src/buses/serial/serial-link.js";
import { PtyPair } from "../helpers/socat.js";
import { Collector } from "../helpers/subscriber.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor, waitForOutput } from "../helpers/wait.js";

const FIRMWARE = "drivers/bridge/firmware";
const HOST = resolve(FIRMWARE, "build/ebp-host");
const POINTS = ["temperature", "humidity", "co2", "setpoint", "led"];

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

beforeAll(async () => {
  await promisify(execFile)("make", ["-s", "-C", FIRMWARE, "build/ebp-host"], { timeout: 120_000 });
}, 130_000);

function host(args: string[]): ChildProcess & { out: () => string } {
  const child = spawn(HOST, args, { stdio: ["ignore", "ignore", "pipe"] });
  let out = "";
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited(child);
  });
  return Object.assign(child, { out: () => out });
}

function agent(config: string): ReturnType<typeof startCli> {
  const child = startCli(["run", "-c", config]);
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited(child);
  });
  return child;
}

async function setup(name: string) {
  const url = await sharedBrokerUrl(cleanups);
  const dir = tempDir();
  const pty = await PtyPair.open(dir);
  cleanups.push(() => pty.unplug());
  const gateway = `gw-bridge-${name}-${process.pid}-${Date.now()}`;
  const base = `edge/lab/${gateway}`;
  const sub = await Collector.connect(url, `${base}/#`);
  cleanups.push(() => sub.close());
  const config = join(dir, "agent.yaml");
  writeFileSync(
    config,
    [
      "site: lab",
      `gateway: ${gateway}`,
      `uplink: { url: "${url}", batch: { linger: 50ms }, reconnect: { min: 100ms, max: 300ms } }`,
      "store: { path: ./outbox.db }",
      "log: { level: info, status_interval: 1s }",
      "sources:",
      `  - { type: bridge, name: node-1, port: ${pty.a}, board_id: a1b2c3d4, writable: [setpoint, led], limits: { setpoint: { min: 10, max: 25 } }, boot_delay: 0s }`,
      "",
    ].join("\n"),
  );
  return { pty, sub, config, base, dir };
}

/** The board's readings at the broker (not the gateway's own `online` points), by outbox sequence number. */
function boardReadings(sub: Collector): Map<number, unknown[]> {
  const out = new Map<number, unknown[]>();
  for (const m of sub.messages) {
    m.r.forEach((r, i) => {
      const point = String(r[0]);
      if (point.startsWith("node-1/") && POINTS.includes(point.slice("node-1/".length))) out.set(m.seq[0] + i, r);
    });
  }
  return out;
}

describe("the C reference firmware against the agent, over a socat pty", () => {
  it("handshake, readings at the broker once each with whole sequence numbers, commands read back or refused", { timeout: 90_000 }, async () => {
    const { pty, sub, config } = await setup("basic");
    const started = Date.now();
    const a = agent(config);
    await agentReady(a);
    const board = host(["--port", pty.b, "--id", "a1b2c3d4", "--interval-ms", "20", "--count", "300", "--ring", "4096", "--seed", "7"]);
    await waitForOutput(a, /"board online"/, "the board online at the agent");
    await waitForOutput(board, /all acked count=300/, "every reading acknowledged to the board");
    await waitFor("300 board readings at the broker", () => boardReadings(sub).size >= 300 || undefined, { timeoutMs: 20_000 });

    const readings = boardReadings(sub);
    expect(readings.size).toBe(300);
    const perPoint = new Map<string, number>();
    for (const r of readings.values()) {
      perPoint.set(String(r[0]), (perPoint.get(String(r[0])) ?? 0) + 1);
      // Placed in UTC from the board's own clock, not at arrival only.
      expect(Number(r[1])).toBeGreaterThan(started - 5000);
      expect(Number(r[1])).toBeLessThan(Date.now() + 1000);
    }
    expect([...perPoint.values()]).toEqual([60, 60, 60, 60, 60]);
    // The gateway's numbering stays whole (no gap, no reuse).
    const report = sub.seq.report();
    expect(report.gaps).toEqual([]);
    expect(sub.reused).toBe(0);

    const list = runCli(["bridge", "list", "-c", config, "--json"]);
    expect(list.code).toBe(0);
    const [b] = JSON.parse(list.stdout) as Array<Record<string, unknown>>;
    expect(b).toMatchObject({ name: "node-1", online: true, id: "a1b2c3d4", hardware: "room-node/rev-c", firmware: "1.0.0", port: pty.a, crcErrors: 0 });

    const ok = runCli(["bridge", "send", "node-1", "setpoint", "21.5", "-c", config, "--json"]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ status: "ok", target: "node-1", state: { point: "setpoint", value: 21.5 } });
    await waitForOutput(board, /command id=\d+ point=setpoint status=ok value=21\.5 readback=21\.5/, "the board applying the write");
    const led = runCli(["bridge", "send", "node-1", "led", "true", "-c", config, "--json"]);
    expect(JSON.parse(led.stdout)).toMatchObject({ status: "ok", state: { point: "led", value: true } });

    // The config's bound (25) is tighter than the board's (30): refused before anything is sent.
    const high = runCli(["bridge", "send", "node-1", "setpoint", "27", "-c", config]);
    expect(high.code).toBe(2);
    expect(high.stdout).toMatch(/rejected — .*27 is above 25/);
    const notWritable = runCli(["bridge", "send", "node-1", "co2", "400", "-c", config]);
    expect(notWritable.code).toBe(2);
    expect(notWritable.stdout).toMatch(/co2 is not writable/);
    expect(board.out()).not.toMatch(/value=27|point=co2/);

    a.kill("SIGTERM");
    expect(await exited(a)).toBe(0);
  });

  it("a gateway SIGKILL while the board keeps measuring: after the restart every board reading is in the outbox exactly once", { timeout: 120_000 }, async () => {
    const { pty, sub, config, dir } = await setup("kill");
    // The board is on a cable of its own, joined to the gateway's by a relay that can lose the
    // gateway's answers: board ⇄ ttyBoard|ttyRelay ⇄ relay ⇄ pty.b|pty.a ⇄ agent.
    const boardSide = new PtyPair(dir);
    Object.assign(boardSide, { a: join(dir, "ttyRelay"), b: join(dir, "ttyBoard") });
    await boardSide.plug();
    cleanups.push(() => boardSide.unplug());
    const toGateway = new SerialLink({ path: pty.b, baudRate: 115_200 });
    const toBoard = new SerialLink({ path: boardSide.a, baudRate: 115_200 });
    await toGateway.open();
    await toBoard.open();
    cleanups.push(async () => {
      await toGateway.close();
      await toBoard.close();
    });
    let answersLost = false;
    toBoard.onData((c) => void toGateway.write(c));
    toGateway.onData((c) => {
      if (!answersLost) void toBoard.write(c);
    });

    let a = agent(config);
    await agentReady(a);
    const board = host(["--port", boardSide.b, "--id", "a1b2c3d4", "--interval-ms", "10", "--count", "1000", "--ring", "8192", "--seed", "11"]);
    await waitForOutput(board, /acked boot_id=\S+ upto=([1-9]\d{2,})/, "a few hundred readings acknowledged");
    // The worst moment: the gateway stores readings whose acknowledgements never reach the board,
    // and is killed. The board, which keeps measuring, must send them again to the next gateway.
    const storedNow = () => (JSON.parse(runCli(["status", "-c", config, "--json"]).stdout) as { stored: number }).stored;
    answersLost = true;
    const atCut = storedNow();
    // The board's window fills with frames nobody acknowledges; the gateway stores what they hold.
    let last = -1;
    await waitFor(
      "the gateway storing readings whose acks are lost",
      () => {
        const n = storedNow();
        const settled = n > atCut && n === last;
        last = n;
        return settled || undefined;
      },
      { everyMs: 300 },
    );
    a.kill("SIGKILL");
    await exited(a);
    answersLost = false;
    a = agent(config);
    await agentReady(a);
    await waitForOutput(board, /all acked count=1000/, "every reading acknowledged after the restart", { timeoutMs: 60_000 });
    // Everything the board made is committed; wait until the outbox has sent it all.
    await waitFor("the outbox empty", () => (JSON.parse(runCli(["status", "-c", config, "--json"]).stdout) as { outbox: { depth: number } }).outbox.depth === 0 || undefined, { timeoutMs: 30_000 });
    await waitFor("1000 board readings at the broker", () => boardReadings(sub).size >= 1000 || undefined, { timeoutMs: 30_000 });

    // Exactly once in the outbox: 1000 outbox numbers for the 1000 readings the board made, 200
    // per point (a reading stored twice would take a number more). The broker may see a number
    // twice after the kill — at-least-once — but never two readings under one number.
    const readings = boardReadings(sub);
    expect(readings.size).toBe(1000);
    expect(sub.reused).toBe(0);
    const perPoint = new Map<string, number>();
    for (const r of readings.values()) perPoint.set(String(r[0]), (perPoint.get(String(r[0])) ?? 0) + 1);
    expect([...perPoint.values()]).toEqual([200, 200, 200, 200, 200]);
    // And it did resend what the killed gateway had stored: recognised, not stored again.
    const status = JSON.parse(runCli(["bridge", "list", "-c", config, "--json"]).stdout) as Array<{ sessions: number; duplicates: number }>;
    expect(status[0]!.duplicates).toBeGreaterThan(0);
    a.kill("SIGTERM");
    expect(await exited(a)).toBe(0);
  });
});
