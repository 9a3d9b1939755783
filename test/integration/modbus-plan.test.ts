/**
 * How the agent reads the demo's devices: `modbus read --plan` shows the requests and their
 * estimated wire time without touching the line, and the agent polling the simulated SDM630,
 * EPEVER and SDM120 is right from its first poll (no refused read, nothing to learn).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { getProfile } from "../../drivers/modbus/registry.js";
import { SimDevice } from "../../src/simulators/modbus/device.js";
import { ModbusSimulator } from "../../src/simulators/modbus/server.js";
import { freePort } from "../helpers/broker.js";
import { exited, runCli, startCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Plan {
  wire: string;
  requests: Array<{ table: string; address: number; count: number; points: string[]; ms: number }>;
  requestsPerCycle: number;
  wireMsPerPoll: number;
  naiveRequests: number;
  naiveWireMsPerPoll: number;
}

function plan(args: string[]): Plan {
  const r = runCli(["modbus", "read", "--unit", "1", ...args, "--plan", "--json"]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as Plan;
}

describe("edge-agent modbus read --plan", () => {
  it("prints the requests per cycle and the estimated wire time without reading (nothing listens there)", () => {
    // Port 1 on loopback: nothing answers, and --plan does not try.
    const tcp = plan(["--tcp", "127.0.0.1:1", "--profile", "sdm630"]);
    expect(tcp.wire).toBe("tcp");
    expect(tcp.requests.map((r) => [r.table, r.address, r.count])).toEqual([
      ["input", 0x0000, 80],
      ["input", 0x0156, 2],
      ["holding", 0x0014, 2],
    ]);
    expect(tcp.requestsPerCycle).toBe(3);
    expect(tcp.naiveRequests).toBe(24);
    expect(tcp.wireMsPerPoll).toBeCloseTo(tcp.requests.reduce((ms, r) => ms + r.ms, 0), 0);
    expect(tcp.wireMsPerPoll).toBeLessThan(tcp.naiveWireMsPerPoll);

    const text = runCli(["modbus", "read", "--unit", "1", "--tcp", "127.0.0.1:1", "--profile", "sdm120", "--plan"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^ {2}input 0x0000 +80 registers +11 points +voltage … export_reactive_energy +\d+(\.\d)? ms$/m);
    expect(text.stdout).toMatch(/^unit 1 on tcp 127\.0\.0\.1:1: 4 requests per cycle, estimated wire time per poll \d+(\.\d)? ms \(one request per value: 14, \d+(\.\d)? ms\)/m);
  });

  it("plans by the line's speed: an SDM120 at its 2400 baud reads the 38 registers before frequency apart", () => {
    const only = "voltage,current,active_power,apparent_power,reactive_power,power_factor,frequency,import_active_energy,export_active_energy,import_reactive_energy,export_reactive_energy";
    const slow = plan(["--rtu", "/dev/ttyNOPE0", "--baud", "2400", "--profile", "sdm120", "--only", only]);
    expect(slow.wire).toBe("2400 8N1");
    expect(slow.requests.map((r) => [r.address, r.count])).toEqual([
      [0x0000, 0x20],
      [0x0046, 10],
    ]);
    const fast = plan(["--rtu", "/dev/ttyNOPE0", "--baud", "115200", "--profile", "sdm120", "--only", only]);
    expect(fast.requests.map((r) => [r.address, r.count])).toEqual([[0x0000, 80]]);
    // Even parity: 11 bits a character instead of 10.
    const even = plan(["--rtu", "/dev/ttyNOPE0", "--baud", "2400", "--parity", "even", "--profile", "sdm120", "--only", only]);
    expect(even.wire).toBe("2400 8E1");
    expect(even.wireMsPerPoll).toBeGreaterThan(slow.wireMsPerPoll);
  });
});

describe("the agent polling the demo's devices", () => {
  it("reads them right from its first poll: no read refused, the same requests every cycle", { timeout: 60_000 }, async () => {
    const sim = new ModbusSimulator();
    sim.addUnit(1, new SimDevice(getProfile("sdm630")!)).addUnit(2, new SimDevice(getProfile("epever")!)).addUnit(3, new SimDevice(getProfile("sdm120")!));
    // What a bus analyser would show: every request, by unit.
    const seen = new Map<number, string[]>();
    const original = sim.plan.bind(sim);
    sim.plan = (unit, pdu) => {
      seen.set(unit, [...(seen.get(unit) ?? []), pdu.subarray(0, 5).toString("hex")]);
      return original(unit, pdu);
    };
    const listener = await sim.listenTcp({ host: "127.0.0.1", port: 0 });
    cleanups.push(() => sim.close());
    if (listener.transport === "rtu") throw new Error("unexpected listener");

    const dir = tempDir();
    const file = join(dir, "edge-agent.yaml");
    const config = {
      site: "s",
      gateway: "g",
      // Nobody listens there: readings stay in the outbox.
      uplink: { url: `mqtt://127.0.0.1:${await freePort()}` },
      store: { path: join(dir, "outbox.db") },
      log: { level: "info" },
      sources: [
        {
          type: "modbus",
          name: "meter-room",
          tcp: { host: listener.host, port: listener.port },
          timeout: "500ms",
          interval: "200ms",
          devices: [
            { name: "main-meter", unit: 1, profile: "sdm630" },
            { name: "solar-1", unit: 2, profile: "epever" },
            { name: "bike-meter", unit: 3, profile: "sdm120" },
          ],
        },
      ],
    };
    writeFileSync(file, JSON.stringify(config)); // JSON is YAML
    const agent = startCli(["run", "--config", file]);
    cleanups.push(async () => {
      agent.kill("SIGTERM");
      await exited(agent);
    });

    /** The requests of each complete cycle of a unit: from one first request of its plan to the next. */
    const cycles = (unit: number): string[][] => {
      const reqs = seen.get(unit) ?? [];
      const starts = reqs.flatMap((r, i) => (r === reqs[0] ? [i] : []));
      return starts.slice(1).map((end, k) => reqs.slice(starts[k], end));
    };
    const deadline = Date.now() + 30_000;
    while ([1, 2, 3].some((u) => cycles(u).length < 3)) {
      if (agent.exitCode !== null) throw new Error(`the agent exited: ${agent.out()}`);
      if (Date.now() > deadline) throw new Error(`not 3 cycles of each unit within 30 s: ${JSON.stringify(Object.fromEntries(seen))}\n${agent.out()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(sim.counters.exceptions).toBe(0);
    expect(agent.out()).not.toMatch(/refused a read|not readable/);
    for (const unit of [1, 2, 3]) {
      const [first, ...rest] = cycles(unit);
      for (const c of rest) expect(c, `unit ${unit}`).toEqual(first);
    }
    // EPEVER: each block of its table apart (coils 0x0000–0x0002 and 0x0006, two discretes, five input blocks).
    expect(cycles(2)[0]).toHaveLength(9);
    // The Eastron meters read over their unused input registers, 80 at most.
    expect(cycles(1)[0]!.filter((r) => r.startsWith("04")).every((r) => Number.parseInt(r.slice(6, 10), 16) <= 80)).toBe(true);
  });
});
