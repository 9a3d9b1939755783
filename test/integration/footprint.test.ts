/**
 * What the daemon carries: `edge-agent run` on a field config loads the agent and nothing of the
 * technicians' tools (other commands, progress bars, simulators, OPC UA, the embedded broker),
 * nor the config schema (zod) and the YAML parser, which check the file in a child process, nor
 * the code of source kinds and actuators the config does not use. Every module costs resident
 * memory for years on a gateway (issues #6 and #12, footprint).
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { askAgent } from "../../src/ops/control-socket.js";
import { silentLogger } from "../../src/ops/logger.js";
import { Outbox } from "../../src/store/outbox.js";
import { Uplink } from "../../src/uplink/uplink.js";
import { startBroker } from "../helpers/broker.js";
import { agentReady, CLI, exited } from "../helpers/cli.js";
import { testConfig } from "../helpers/config.js";
import { tempDir } from "../helpers/tmp.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A preload that appends every module file the process loads (ESM and CommonJS) to $PROBE_OUT. */
function writeProbe(dir: string): string {
  const hooks = join(dir, "hooks.mjs");
  writeFileSync(
    hooks,
    `import { appendFileSync } from "node:fs";
export async function load(url, context, next) {
  if (url.startsWith("file:")) appendFileSync(process.env.PROBE_OUT, new URL(url).pathname + "\\n");
  return next(url, context);
}
`,
  );
  const probe = join(dir, "probe.mjs");
  writeFileSync(
    probe,
    `import Module, { register } from "node:module";
import { appendFileSync } from "node:fs";
register(${JSON.stringify(pathToFileURL(hooks).href)});
const js = Module._extensions[".js"];
Module._extensions[".js"] = function (m, filename) {
  appendFileSync(process.env.PROBE_OUT, filename + "\\n");
  return js.call(this, m, filename);
};
`,
  );
  return probe;
}

describe("the daemon's footprint", () => {
  it("`run` loads the agent and none of the CLI tools, simulators, OPC UA or broker", { timeout: 30_000 }, async () => {
    const dir = tempDir();
    const out = join(dir, "loaded.txt");
    writeFileSync(out, "");
    const file = join(dir, "edge-agent.yaml");
    writeFileSync(
      file,
      `site: s
gateway: g
uplink: { url: "mqtt://127.0.0.1:1" }
store: { path: ./outbox.db }
log: { status_interval: 200ms }
sources:
  - type: modbus
    name: meters
    tcp: { host: 127.0.0.1, port: 1 }
    devices: [{ name: m1, unit: 1, profile: sdm120, interval: 1s }]
  - { type: simulated, name: sim, interval: 1s, points: [{ name: a }] }
`,
    );
    // With the node flags the systemd unit gives it, as on a gateway.
    const exec = /^ExecStart=(.*)$/m.exec(readFileSync("systemd/edge-agent.service", "utf8"))![1]!.split(" ");
    const flags = exec.slice(1, exec.findIndex((w) => w.endsWith("/main.js")));
    expect(flags).toContain("--no-opt");
    const agent = spawn(process.execPath, [...flags, "--import", writeProbe(dir), CLI, "run", "-c", file], {
      env: { ...process.env, PROBE_OUT: out },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    let stdout = "";
    agent.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
    agent.stdout!.on("data", (b: Buffer) => (stdout += b.toString()));
    try {
      const socket = join(dir, "edge-agent.sock");
      const deadline = Date.now() + 20_000;
      while (!(existsSync(socket) && (await askAgent(socket, { op: "status" }, 2000).then(() => true, () => false)))) {
        if (agent.exitCode !== null || Date.now() > deadline) throw new Error(`the agent did not come up: ${stderr}`);
        await sleep(50);
      }
      // The control socket answers before the agent's start is over: SIGTERM only once it is handled.
      await agentReady(Object.assign(agent, { out: () => stdout + stderr }));
    } finally {
      agent.kill("SIGTERM");
      expect(await exited(agent)).toBe(0);
    }
    const loaded = readFileSync(out, "utf8").split("\n").filter(Boolean);
    const names = [...new Set(loaded.map((p) => relative(process.cwd(), p)))];
    // The probe works: it saw the agent, the Modbus poller and the SQLite binding.
    expect(names).toContain("dist/src/agent/agent.js");
    expect(names).toContain("dist/src/sources/modbus/device.js");
    expect(names.some((n) => n.startsWith("node_modules/better-sqlite3"))).toBe(true);
    // …and nothing the daemon does not use.
    const cli = names.filter((n) => n.startsWith("dist/src/cli/") && n !== "dist/src/cli/main.js" && n !== "dist/src/cli/run.js");
    expect(cli).toEqual([]);
    // ws and socks: MQTT.js's WebSocket and SOCKS builders, loaded by its connect() (src/uplink/connect.ts).
    // zod and yaml: the config is checked in a child process (src/agent/config-apart.ts).
    // serialport and its native binding: this config has Modbus TCP only; modbus-serial's own
    // serial classes would load them, and are kept from doing so (src/buses/modbus/modbus-serial.ts).
    const unwanted = names.filter((n) => /^dist\/src\/buses\/modbus\/sim\/|^node_modules\/(cli-progress|node-opcua[^/]*|aedes|prom-client|pino-pretty|ws|socks|zod|yaml|serialport|@serialport\/[^/]+)\//.test(n));
    expect(unwanted).toEqual([]);
    // Of the source kinds, only those in the config (modbus, simulated); no config pieces, no actuators.
    const ours = names.filter((n) => /^dist\/src\/(sources\/[^/]+\/type|sources\/(i2c|gpio|opcua)\/|config\/|control\/(charger|streetlight|command-check)|simulators\/)/.test(n));
    expect(ours).toEqual([]);
  });

  it("the uplink does not build MQTT.js's cache of 65,536 number buffers (~7 MB kept for good)", { timeout: 30_000 }, async () => {
    // Only the uplink's client writes MQTT in this file (a subscriber from MQTT.js would build it).
    const broker = await startBroker();
    const dir = tempDir();
    const cfg = testConfig({ uplink: { url: broker.url }, store: { path: join(dir, "o.db"), sync: "normal" } });
    const outbox = Outbox.open({ path: cfg.store.path, quota: cfg.store.quota, whenFull: "drop-oldest", maxAge: cfg.store.max_age, sync: "normal" });
    const up = new Uplink({ config: cfg.uplink, site: cfg.site, gateway: cfg.gateway, version: "test", outbox, log: silentLogger() });
    try {
      outbox.append(Array.from({ length: 10 }, (_, i) => ({ point: "m/p", ts: Date.now() + i, value: i, quality: "good" as const })));
      up.start();
      up.notify();
      const deadline = Date.now() + 15_000;
      while (outbox.depth > 0 && Date.now() < deadline) await sleep(20);
      expect(up.stats().readingsAcked).toBe(10);
    } finally {
      await up.stop(500);
      outbox.close();
      await broker.close();
    }
    // The copy of mqtt-packet that MQTT.js itself uses.
    const fromMqtt = createRequire(createRequire(import.meta.url).resolve("mqtt"));
    const numbers = fromMqtt("mqtt-packet/numbers.js") as { cache: Record<number, Buffer> };
    expect(Object.keys(numbers.cache)).toHaveLength(0);
  });
});
