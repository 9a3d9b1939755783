/**
 * The agent with its OPC UA server on: a client reads what the agent stored and commands the
 * streetlight through the same checks as MQTT. And the agent without it never loads node-opcua.
 */
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync } from "node:fs";
import { DataType, MessageSecurityMode, OPCUACertificateManager, OPCUAClient, SecurityPolicy, UserTokenType, Variant } from "node-opcua";
import { afterEach, describe, expect, it } from "vitest";
import { Agent } from "../../src/agent/agent.js";
import { silentLogger } from "../../src/ops/logger.js";
import { Outbox } from "../../src/store/outbox.js";
import { testConfig } from "../helpers/config.js";
import { runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("the agent's OPC UA server", () => {
  it("mirrors stored readings and takes commands through the command path", { timeout: 30_000 }, async () => {
    const dir = tempDir();
    const cfg = testConfig({
      uplink: { url: "mqtt://127.0.0.1:1", health_interval: "0s" },
      store: { path: join(dir, "o.db") },
      opcua: { server: { port: 0, users: [{ username: "bms", password: "s3cret" }] } },
      sources: [{ type: "simulated", name: "meter-1", interval: "100ms", points: [{ name: "power", wave: "constant", min: 1234.5, unit: "W" }] }],
      streetlights: [{ name: "street-1", relay: { simulated: true }, latitude: 45.46, longitude: 9.19 }],
    });
    // The BMS's certificate is trusted before the agent starts, as an installer provisioning it
    // would: placed in the PKI's trusted/certs/. (Trusting a refused certificate on a running
    // server, moved from rejected/, is tested in opcua.test.ts.)
    const clientPki = join(dir, "bms-pki");
    const clientCm = new OPCUACertificateManager({ rootFolder: clientPki, automaticallyAcceptUnknownCertificate: true });
    await clientCm.initialize();
    await OPCUAClient.create({ clientCertificateManager: clientCm }).createDefaultCertificate();
    const trusted = join(dir, "opcua-pki", "trusted", "certs");
    mkdirSync(trusted, { recursive: true });
    copyFileSync(join(clientPki, "own", "certs", "client_certificate.pem"), join(trusted, "bms.pem"));

    const agent = new Agent(cfg, { log: silentLogger() });
    await agent.start();
    cleanups.push(() => agent.stop());
    expect(agent.opcuaUrl).toMatch(/^opc\.tcp:\/\//);

    // A BMS connects over a signed and encrypted channel.
    const client = OPCUAClient.create({
      endpointMustExist: false,
      securityMode: MessageSecurityMode.SignAndEncrypt,
      securityPolicy: SecurityPolicy.Basic256Sha256,
      connectionStrategy: { maxRetry: 0 },
      clientCertificateManager: clientCm,
    });
    await client.connect(agent.opcuaUrl!);
    cleanups.push(() => client.disconnect());
    const session = await client.createSession({ type: UserTokenType.UserName, userName: "bms", password: "s3cret" });
    cleanups.push(async () => {
      await session.close().catch(() => undefined);
    });

    // The meter's reading is mirrored once one is stored after the server started.
    const dv = await waitFor("meter-1/power readable over OPC UA", async () => {
      const v = await session.read({ nodeId: "ns=1;s=meter-1/power", attributeId: 13 });
      return v.statusCode.name === "Good" ? v : undefined;
    });
    expect(dv.value.value).toBe(1234.5);
    const box = Outbox.inspect(cfg.store.path, { quota: 1e9, whenFull: "drop-oldest", maxAge: 1e12, sync: "full" });
    const stored = box.readAfter(0, 1_000_000).filter((r) => r.point === "meter-1/power");
    box.close();
    expect(stored.some((r) => r.value === dv.value.value && r.ts === dv.sourceTimestamp!.getTime())).toBe(true);

    const call = (args: string) =>
      session.call({ objectId: "ns=1;s=actuator:street-1", methodId: "ns=1;s=actuator:street-1:set", inputArguments: [new Variant({ dataType: DataType.String, value: args })] });
    const ok = await call('{"on": true, "duration_s": 600}');
    expect(ok.statusCode.name).toBe("Good");
    expect(JSON.parse(ok.outputArguments![0]!.value as string)).toMatchObject({ status: "ok", target: "street-1" });
    expect(agent.status().actuators["street-1"]).toMatchObject({ mode: "override", on: true });
    const refused = await call('{"on": true, "duration_s": 9999999}');
    expect(refused.statusCode.name).toBe("BadInvalidArgument");
    expect(agent.status().commands.map((c) => c.status)).toEqual(["ok", "rejected"]);

    const auto = await session.call({ objectId: "ns=1;s=actuator:street-1", methodId: "ns=1;s=actuator:street-1:auto", inputArguments: [new Variant({ dataType: DataType.String, value: "{}" })] });
    expect(auto.statusCode.name).toBe("Good");
    expect(agent.status().actuators["street-1"]).toMatchObject({ mode: "auto" });
    // Refused without credentials: anonymous access is off unless configured.
    const anon = OPCUAClient.create({ endpointMustExist: false, connectionStrategy: { maxRetry: 0 } });
    await anon.connect(agent.opcuaUrl!);
    await expect(anon.createSession()).rejects.toThrow();
    await anon.disconnect();
  });

  it("is not loaded at all when the config does not ask for it", () => {
    const r = runCli(["config", "check", "configs/demo.yaml"]);
    expect(r.code).toBe(0);
    const probe = `
      const { createRequire } = await import("node:module");
      await import("./dist/src/agent/agent.js");
      const require = createRequire(import.meta.url);
      const loaded = Object.keys(require.cache).filter((k) => k.includes("node-opcua"));
      console.log(JSON.stringify(loaded.length));`;
    const out = spawnSync(process.execPath, ["--input-type=module", "-e", probe], { encoding: "utf8" });
    expect(out.stdout.trim()).toBe("0");
  });
});
