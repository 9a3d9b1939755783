import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Outbox } from "../../src/store/outbox.js";
import { startBroker } from "../helpers/broker.js";
import { agentReady, exited, runCli, startCli, statusLines } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";
import { waitForOutput } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const noStack = (text: string) => expect(text).not.toMatch(/\n\s+at .*:\d+:\d+/);

describe("edge-agent config check", () => {
  it("accepts the demo config", () => {
    const r = runCli(["config", "check", "configs/demo.yaml"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/configs\/demo\.yaml: ok \(5 sources, 3 Modbus devices, 1 bridge board, \d+ points\)/);
  });

  it("lists every error with its path and exits 2, without a stack trace", () => {
    const dir = tempDir();
    const file = join(dir, "bad.yaml");
    writeFileSync(
      file,
      "site: s\ngateway: g\nuplink: { url: mqtt://h, typo: 1 }\nsources:\n  - { type: simulated, name: a, interval: 1s, points: [{ name: p }] }\n  - { type: simulated, name: b, interval: 1s, points: [{ name: p }] }\n  - { type: simulated, name: c, interval: soon, points: [{ name: p }] }\n",
    );
    const r = runCli(["config", "check", file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("2 errors");
    expect(r.stderr).toContain("uplink.typo: unknown key");
    expect(r.stderr).toContain("sources[2].interval: expected a duration like 5s");
    noStack(r.stderr);
    const j = runCli(["config", "check", file, "--json"]);
    expect(j.code).toBe(2);
    expect(JSON.parse(j.stdout)).toEqual({ ok: false, errors: ["uplink.typo: unknown key", "sources[2].interval: expected a duration like 5s"] });
  });

  it("says in one line that a file is missing", () => {
    const r = runCli(["config", "check", "/nope/edge.yaml"]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual(["edge-agent: /nope/edge.yaml: 1 error", "  cannot read /nope/edge.yaml: no such file"]);
  });

  it("exits 2 on an unknown command or a missing option", () => {
    expect(runCli(["frobnicate"]).code).toBe(2);
    const r = runCli(["run"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--config/);
  });

  it("prints the JSON Schema that is committed in configs/", () => {
    const r = runCli(["config", "schema"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(JSON.parse(readFileSync("configs/edge-agent.schema.json", "utf8")));
  });
});

describe("edge-agent run", () => {
  it("refuses to start with an unwritable data directory, in one line, exit 2", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "blocker"), "a file where a directory should be");
    const file = join(dir, "a.yaml");
    writeFileSync(file, "site: s\ngateway: g\nuplink: { url: mqtt://127.0.0.1:1 }\nstore: { path: ./blocker/outbox.db }\n");
    const r = runCli(["run", "-c", file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^edge-agent: store\.path: cannot open .*blocker\/outbox\.db/m);
    noStack(r.stderr);
  });

  it("keeps reading and buffering while the broker is unreachable, and says why", async () => {
    const dir = tempDir();
    const file = join(dir, "a.yaml");
    writeFileSync(
      file,
      "site: s\ngateway: g\nuplink: { url: 'mqtt://127.0.0.1:1', reconnect: { min: 100ms, max: 200ms } }\nstore: { path: ./o.db }\nlog: { status_interval: 300ms }\nsources:\n  - { type: simulated, name: m, interval: 50ms, points: [{ name: p }] }\n",
    );
    const child = startCli(["run", "-c", file]);
    cleanups.push(async () => {
      child.kill("SIGKILL");
      await exited(child);
    });
    await agentReady(child);
    // Stopped once it has buffered a few readings; by then it has retried the broker a few times.
    await waitForOutput(child, (out) => statusLines(out).some((s) => s.stored > 10), "a status line with more than 10 readings stored");
    child.kill("SIGINT");
    expect(await exited(child)).toBe(0);
    const out = child.out();
    expect(out).toMatch(/connection refused \(is the broker running/);
    // One warning, not one per retry (the status line repeats the reason, by design).
    expect(out.match(/uplink: mqtt:\/\/127\.0\.0\.1:1: connection refused/g)!.length).toBe(1);
    expect(out).toMatch(/stored \d+ · sent 0 · pending \d+ · broker (offline|connecting)/);
    const s = runCli(["buffer", "stats", "-c", file, "--json"]);
    expect(s.code).toBe(0);
    const stats = JSON.parse(s.stdout);
    expect(stats.depth).toBeGreaterThan(10);
    expect(stats.depth).toBe(stats.lastSeq);
  });

  it("runs the demo with its embedded broker; tail --verify sees every reading; Ctrl-C stops it cleanly", async () => {
    const dir = tempDir();
    const demo = readFileSync("configs/demo.yaml", "utf8")
      .replace("path: ../data/demo-outbox.db", `path: ${join(dir, "demo.db")}`)
      .replace("port: 1883 ", "port: 0 ")
      .replace("status_interval: 5s", "status_interval: 1s");
    const file = join(dir, "demo.yaml");
    writeFileSync(file, demo);
    const agent = startCli(["run", "-c", file]);
    cleanups.push(async () => {
      agent.kill("SIGKILL");
      await exited(agent);
    });
    const [, url] = await waitForOutput(agent, /embedded MQTT broker on (mqtt:\/\/127\.0\.0\.1:\d+)/);
    await agentReady(agent);
    // tail verifies what it receives until the meter's voltage came by twice, then Ctrl-C.
    const tail = startCli(["tail", "--broker", url!, "--verify"]);
    cleanups.push(async () => {
      tail.kill("SIGKILL");
      await exited(tail);
    });
    await waitForOutput(tail, (out) => (out.match(/demo-site\/demo-gw #\d+ meter-1\/voltage_l1 = 2\d\d/g)?.length ?? 0) >= 2, "two voltage readings at tail");
    tail.kill("SIGINT");
    expect(await exited(tail)).toBe(0);
    expect(tail.out()).toMatch(/verify demo-site\/demo-gw: seq \d+\.\.\d+ · \d+ readings in \d+ messages · no gaps · 0 duplicates/);
    await waitForOutput(agent, (out) => statusLines(out).some((l) => l.broker === "online" && l.sent > 0), "a status line: sent, broker online");
    // The technician's commands reach the running agent through its control socket.
    const on = runCli(["light", "set", "street-1", "--on", "--for", "10m", "-c", file, "--json"]);
    expect(on.code).toBe(0);
    expect(JSON.parse(on.stdout)).toMatchObject({ target: "street-1", action: "set", status: "ok", state: { mode: "override", on: true } });
    const tooMuch = runCli(["charger", "start", "bike-1", "--max-kwh", "50", "-c", file]);
    expect(tooMuch.code).toBe(2);
    expect(tooMuch.stdout).toMatch(/bike-1 start: rejected — args\.max_kwh/);
    const status = runCli(["status", "-c", file, "--json"]);
    expect(status.code).toBe(0);
    const s = JSON.parse(status.stdout);
    expect(s.uplink.state).toBe("online");
    expect(s.actuators["street-1"]).toMatchObject({ mode: "override", on: true });
    expect(s.commands.map((c: { status: string }) => c.status)).toEqual(["ok", "rejected"]);
    expect(s.sources["main-meter"].health).toMatchObject({ online: true });
    const text = runCli(["status", "-c", file]);
    expect(text.stdout).toMatch(/^uplink\s+online/m);
    expect(text.stdout).toMatch(/main-meter\s+online · \d+ req\/poll/);
    agent.kill("SIGINT");
    expect(await exited(agent)).toBe(0);
    expect(agent.out()).toContain("agent stopped");
    const box = Outbox.inspect(join(dir, "demo.db"), { quota: 1e9, whenFull: "drop-oldest", maxAge: 1e12, sync: "full" });
    expect(box.depth).toBe(0);
    box.close();
  });
});

describe("edge-agent tail --verify", () => {
  it("reports gaps and duplicates per gateway and exits 1 on a gap", async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.close());
    const mqtt = (await import("mqtt")).default;
    const pub = await mqtt.connectAsync(broker.url);
    cleanups.push(() => pub.endAsync());
    const malformed = (out: string) => out.match(/tail: edge\/s1\/gw-b\/telemetry: malformed message/g)?.length ?? 0;
    // A malformed message is named even with --quiet: a retained one reaches tail as soon as its
    // subscription is in place, and a last one after the others says it has seen them all (one
    // publisher, each publish acknowledged before the next: the broker keeps their order).
    await pub.publishAsync("edge/s1/gw-b/telemetry", "garbage", { qos: 1, retain: true });
    const tail = startCli(["tail", "--broker", broker.url, "--verify", "--quiet", "--json"]);
    cleanups.push(async () => {
      tail.kill("SIGKILL");
      await exited(tail);
    });
    await waitForOutput(tail, (out) => malformed(out) === 1, "tail subscribed (the retained malformed message)");
    const msg = (gw: string, a: number, b: number) =>
      JSON.stringify({ v: 1, gw, seq: [a, b], r: Array.from({ length: b - a + 1 }, (_, i) => ["x/p", 1000 + i, i]) });
    await pub.publishAsync("edge/s1/gw-a/telemetry", msg("gw-a", 1, 10), { qos: 1 });
    await pub.publishAsync("edge/s1/gw-a/telemetry", msg("gw-a", 16, 20), { qos: 1 });
    await pub.publishAsync("edge/s1/gw-a/telemetry", msg("gw-a", 9, 12), { qos: 1 });
    await pub.publishAsync("edge/s1/gw-b/telemetry", msg("gw-b", 1, 5), { qos: 1 });
    await pub.publishAsync("edge/s1/gw-b/telemetry", "garbage", { qos: 1 });
    await waitForOutput(tail, (out) => malformed(out) === 2, "the last malformed message at tail");
    tail.kill("SIGINT");
    expect(await exited(tail)).toBe(1);
    expect(tail.out()).not.toMatch(/"seq"/); // --quiet: the report only
    const report = JSON.parse(tail.out().slice(tail.out().indexOf("{")));
    expect(report.gateways).toEqual([
      { gateway: "s1/gw-a", messages: 3, malformed: 0, first: 1, last: 20, received: 19, duplicates: 2, gaps: [[13, 15]], missing: 3 },
      { gateway: "s1/gw-b", messages: 1, malformed: 2, first: 1, last: 5, received: 5, duplicates: 0, gaps: [], missing: 0 },
    ]);
  });

  it("stops by itself after --for, with its report", async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.close());
    const tail = startCli(["tail", "--broker", broker.url, "--verify", "--json", "--for", "300ms"]);
    expect(await exited(tail)).toBe(0);
    expect(JSON.parse(tail.out())).toEqual({ gateways: [] });
  });

  it("refuses a bad broker URL or duration with exit 2", () => {
    expect(runCli(["tail", "--broker", "localhost"]).code).toBe(2);
    const r = runCli(["tail", "--broker", "mqtt://127.0.0.1:1", "--for", "soon"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--for: expected a duration like 30s, got 'soon'");
  });
});

describe("edge-agent i2c and gpio (simulated bus)", () => {
  it("scans like i2cdetect, reads a sensor with its CRC checked, and reads a pin by its BCM number", () => {
    const scan = runCli(["i2c", "scan", "--bus", "1", "--sim", "--json"]);
    expect(scan.code).toBe(0);
    expect(JSON.stringify(JSON.parse(scan.stdout))).toMatch(/"0x44"|68/);
    const read = runCli(["i2c", "read", "--bus", "1", "--driver", "sht4x", "--sim"]);
    expect(read.code).toBe(0);
    expect(read.stdout).toMatch(/temperature\s+-?\d+(\.\d+)? °C/);
    expect(read.stdout).toMatch(/CRC: every word checked, all match/);
    const pin = runCli(["gpio", "read", "17", "--sim"]);
    expect(pin.code).toBe(0);
    expect(pin.stdout).toMatch(/GPIO 17 \(BCM\) = sysfs 529/);
  });

  it.each([
    [["i2c", "read", "--bus", "7", "--driver", "sht4x"], /bus i2c-7 does not exist/],
    [["i2c", "read", "--bus", "1", "--driver", "sht4x", "--address", "0x50", "--sim"], /0x50 is not an address of sht4x \(allowed: 0x44, 0x45\)/],
    [["i2c", "read", "--bus", "1", "--driver", "sht99", "--sim"], /sht99/],
    [["opcua", "browse", "nonsense"], /expected an endpoint URL like opc\.tcp:\/\/plc-1:4840, got 'nonsense'/],
  ])("bad input %j: one clear line, exit 2", (args, message) => {
    const r = runCli(args as string[]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });
});
