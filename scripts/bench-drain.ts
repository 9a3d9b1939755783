/**
 * Draining a backlog to a local Mosquitto at QoS 1.
 * Usage: npm run bench:drain [-- --readings 1000000 --batch 1000 --replay-window 6h]
 * With --replay-window, acknowledged rows are kept for replay (moved, not deleted): its cost.
 * Needs the mosquitto binary (EDGE_TEST_MOSQUITTO, /usr/sbin/mosquitto or on PATH); starts its
 * own instance on a free loopback port.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { validateConfig } from "../src/agent/config.js";
import { silentLogger } from "../src/ops/logger.js";
import { Outbox } from "../src/store/outbox.js";
import { Uplink } from "../src/uplink/uplink.js";
import { fmt, meterReadings } from "./bench-util.js";

const { values } = parseArgs({
  options: {
    readings: { type: "string", default: "1000000" },
    batch: { type: "string", default: "1000" },
    inflight: { type: "string", default: "16" },
    "replay-window": { type: "string", default: "0s" },
  },
});
const total = Number(values.readings);

const bin = [process.env.EDGE_TEST_MOSQUITTO, "/usr/sbin/mosquitto", "/usr/bin/mosquitto"].find((p) => p && existsSync(p));
if (!bin) {
  console.error("bench-drain: mosquitto not found (apt-get install mosquitto, or set EDGE_TEST_MOSQUITTO)");
  process.exit(2);
}

const port = await new Promise<number>((resolve) => {
  const s = createServer().listen(0, "127.0.0.1", () => {
    const a = s.address();
    s.close(() => resolve(typeof a === "object" && a ? a.port : 0));
  });
});
const dir = mkdtempSync(join(tmpdir(), "edge-drain-"));
writeFileSync(join(dir, "m.conf"), `listener ${port} 127.0.0.1\nallow_anonymous true\nuser ${userInfo().username}\nmax_inflight_messages 0\n`);
const broker = spawn(bin, ["-c", join(dir, "m.conf")], { stdio: "ignore" });
await new Promise((r) => setTimeout(r, 500));

try {
  const cfg = validateConfig({
    site: "bench",
    gateway: "gw-bench",
    uplink: { url: `mqtt://127.0.0.1:${port}`, max_inflight: Number(values.inflight), batch: { max_readings: Number(values.batch), max_bytes: "1MB" }, backlog: { max_inflight: Number(values.inflight) } },
    store: { path: join(dir, "outbox.db"), quota: "4GB", replay_window: values["replay-window"] },
  });
  if (!cfg.ok) throw new Error(cfg.errors.join("\n"));
  const c = cfg.config;
  const outbox = Outbox.open({ path: c.store.path, quota: c.store.quota, whenFull: "drop-oldest", maxAge: c.store.max_age, sync: "full", replayWindow: c.store.replay_window });
  const t0 = Date.now();
  for (let n = 0; n < total; n += 10_000) outbox.append(meterReadings(Math.min(10_000, total - n), t0));
  console.log(`backlog: ${fmt(outbox.depth)} readings stored in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const uplink = new Uplink({ config: c.uplink, site: c.site, gateway: c.gateway, version: "bench", outbox, log: silentLogger() });
  const start = process.hrtime.bigint();
  uplink.start();
  while (outbox.depth > 0) await new Promise((r) => setTimeout(r, 10));
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  const s = uplink.stats();
  await uplink.stop();
  const kept = c.store.replay_window > 0 ? ` (store.replay_window ${values["replay-window"]}: ${fmt(outbox.stats().kept)} kept for replay, data ${(outbox.usedBytes() / 1e6).toFixed(1)} MB)` : "";
  outbox.close();
  // On the wire each PUBLISH adds a fixed header (~4 bytes), the topic with its length, a packet id.
  const topic = Buffer.byteLength(uplink.topicNames.telemetry);
  const wire = s.payloadBytes + s.messagesAcked * (4 + 2 + topic + 2);
  console.log(`drained ${fmt(s.readingsAcked)} readings in ${fmt(s.messagesAcked)} messages to Mosquitto (QoS 1) in ${secs.toFixed(2)} s = ${fmt(s.readingsAcked / secs)} readings/s${kept}`);
  console.log(`bytes per reading: payload ${(s.payloadBytes / s.readingsAcked).toFixed(1)}, on the wire with MQTT headers ${(wire / s.readingsAcked).toFixed(1)} (PUBACKs add 4 bytes per message upstream)`);
} finally {
  broker.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
}
