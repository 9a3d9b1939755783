/**
 * `edge-agent simulate board` as a technician runs it: the built CLI on one end of a socat pty
 * pair, a minimal gateway (the Link in the gateway role) on the other, through the real
 * serialport path. It must say Hello, send readings, keep what was not acknowledged and resend it
 * after a new session, print what happens, and stop cleanly on SIGTERM.
 */
import { afterEach, describe, expect, it } from "vitest";
import { SerialLink } from "../../src/buses/serial/serial-link.js";
import { SCHEMA_HASH } from "../../src/bridge/schema.js";
import { exited, runCli, startCli } from "../helpers/cli.js";
import { GatewayPeer } from "../helpers/bridge-gateway.js";
import { PtyPair } from "../helpers/socat.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor, waitForOutput } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function pair(): Promise<PtyPair> {
  const pty = await PtyPair.open(tempDir());
  cleanups.push(() => pty.unplug());
  return pty;
}

describe("edge-agent simulate board", () => {
  it("sends readings over a pty, resends the unacknowledged ones after a new session, and stops on SIGTERM", async () => {
    const pty = await pair();
    const gateway = new GatewayPeer(new SerialLink({ path: pty.a, baudRate: 115200 }), { autoAck: false, heartbeatMs: 500 });
    await gateway.start();
    cleanups.push(() => gateway.stop());
    const cli = startCli(["simulate", "board", "--port", pty.b, "--id", "240ac45f9e10", "--interval", "200ms", "--seed", "5"]);
    cleanups.push(() => {
      if (cli.exitCode === null && cli.signalCode === null) cli.kill("SIGKILL");
    });

    await waitForOutput(cli, /session up: max frame 256 B, window 8, heartbeat 500 ms/);
    expect(cli.out()).toMatch(/board simulator: room-node 240ac45f9e10 on .*ttyB at 115200 baud/);
    expect(gateway.hellos[0]).toMatchObject({ schemaHash: SCHEMA_HASH, protocol: 1 });
    const boot = gateway.hellos[0]!.bootId;
    await waitFor("20 readings", () => gateway.seqs(boot).length >= 20 || undefined);
    const first = gateway.seqs(boot);
    expect(first).toEqual(Array.from({ length: first.length }, (_, i) => i + 1));

    // The store committed the first 10: the board may forget those, and only those.
    gateway.ack(boot, 10);
    await waitForOutput(cli, /acked up to 10 \(boot 0x[0-9a-f]{8}\), \d+ waiting in the ring/);

    // The gateway restarts (its link forgets everything) and asks for a Hello.
    const before = gateway.seqs(boot).length;
    gateway.arrivals = [];
    gateway.restart();
    await waitFor("a second Hello", () => gateway.hellos.length >= 2 || undefined);
    expect(gateway.hellos[1]!.bootId).toBe(boot);
    await waitFor("the unacknowledged readings again", () => gateway.arrivals.filter((r) => r.seq <= before).length >= before - 10 || undefined);
    const again = gateway.arrivals.filter((r) => r.seq <= before).map((r) => r.seq);
    expect(again.slice(0, before - 10)).toEqual(Array.from({ length: before - 10 }, (_, i) => i + 11));
    expect(again).not.toContain(10);
    expect(gateway.repeats).toBeGreaterThanOrEqual(before - 10);

    gateway.autoAck = true;
    gateway.ack(boot, gateway.seqs(boot).at(-1)!);
    cli.kill("SIGTERM");
    expect(await exited(cli)).toBe(0);
    expect(cli.out()).toMatch(/stopped: \d+ readings made, \d+ acked, \d+ resent, 0 dropped \(ring full\)/);
    const resent = Number(/(\d+) resent/.exec(cli.out())![1]);
    expect(resent).toBeGreaterThanOrEqual(before - 10);
  });

  it("announces another schema when asked, and the gateway's refusal is printed", async () => {
    const pty = await pair();
    const gateway = new GatewayPeer(new SerialLink({ path: pty.a, baudRate: 115200 }));
    await gateway.start();
    cleanups.push(() => gateway.stop());
    const cli = startCli(["simulate", "board", "--port", pty.b, "--schema-hash", "0badf00d", "--json"]);
    cleanups.push(() => {
      if (cli.exitCode === null && cli.signalCode === null) cli.kill("SIGKILL");
    });
    const m = await waitForOutput(cli, /\{"event":"refused","reason":"schema 0x0badf00d differs[^"]*"\}/);
    expect(m[0]).toContain("0x0badf00d");
    cli.kill("SIGINT");
    expect(await exited(cli)).toBe(0);
    const stopped = cli.out().trim().split("\n").map((l) => JSON.parse(l) as { event: string; refusals?: number }).at(-1)!;
    expect(stopped).toMatchObject({ event: "stopped", refusals: 1 });
  });

  it("names a bad flag instead of starting", () => {
    const r = runCli(["simulate", "board", "--port", "/dev/null", "--faults", "drop=2"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--faults drop=2: expected a probability from 0 to 1/);
    const u = runCli(["simulate", "board", "--port", "/dev/null", "--faults", "meteor"]);
    expect(u.stderr).toMatch(/unknown fault 'meteor' \(known: bitflip=P/);
    const id = runCli(["simulate", "board", "--port", "/dev/null", "--id", "xyz"]);
    expect(id.stderr).toMatch(/--id: expected the board id as 4 to 16 bytes in hex/);
    for (const bad of ["100", "1024.5"]) {
      const mf = runCli(["simulate", "board", "--port", "/dev/null", "--max-frame", bad]);
      expect(mf.code).toBe(2);
      expect(mf.stderr).toMatch(/--max-frame: expected the largest frame in bytes, from 256 to 65535/);
    }
    for (const bad of ["17", "many"]) {
      const w = runCli(["simulate", "board", "--port", "/dev/null", "--window", bad]);
      expect(w.code).toBe(2);
      expect(w.stderr).toMatch(/--window: expected the frames in flight, a whole number from 1 to 16/);
    }
    const help = runCli(["simulate", "board", "--help"]);
    expect(help.stdout).toMatch(/--max-frame <bytes>/);
    expect(help.stdout).toMatch(/--window <n>/);
    expect(help.stdout).toMatch(/as many as fit the session's max frame/);
  });

  it("offers --max-frame and --window in its Hello; the session takes the smaller of both sides", async () => {
    const pty = await pair();
    const gateway = new GatewayPeer(new SerialLink({ path: pty.a, baudRate: 115200 }), { maxFrame: 1024, window: 8 });
    await gateway.start();
    cleanups.push(() => gateway.stop());
    const cli = startCli(["simulate", "board", "--port", pty.b, "--max-frame", "2048", "--window", "12", "--interval", "100ms"]);
    cleanups.push(() => {
      if (cli.exitCode === null && cli.signalCode === null) cli.kill("SIGKILL");
    });
    await waitForOutput(cli, /session up: max frame 1024 B, window 8/);
    expect(gateway.hellos[0]).toMatchObject({ maxFrame: 2048, window: 12 });
    await waitFor("ten readings at the gateway", () => gateway.readings.length >= 10);
    cli.kill("SIGTERM");
    expect(await exited(cli)).toBe(0);
  });
});
