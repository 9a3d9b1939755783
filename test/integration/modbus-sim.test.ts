import { spawn, execFile, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import ModbusSerial from "modbus-serial";
import { afterEach, describe, expect, it } from "vitest";
import { decodePoint } from "../../drivers/modbus/codec.js";
import { registerCount, type ModbusPoint } from "../../drivers/modbus/types.js";
import { fromHex, mbapFrame, rtuFrame, toHex } from "../../src/buses/modbus/frames.js";
import { SimDevice, type PointValue } from "../../src/simulators/modbus/device.js";
import { ModbusSimulator, type SimListener } from "../../src/simulators/modbus/server.js";
import { registerSimulate, type RunningSimulation } from "../../src/cli/simulate.js";
import { UserError } from "../../src/model/errors.js";
import { pointAt, profile } from "../helpers/modbus.js";
import { until, waitFor } from "../helpers/wait.js";

// CommonJS that sets `module.exports.default = module.exports`: under NodeNext the client class
// is the namespace's `default`.
const ModbusRTU = ModbusSerial.default;
type ModbusRTU = InstanceType<typeof ModbusRTU>;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const HOST = "127.0.0.1";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));



/** A simulator whose devices move only when the test ticks them. */
function simulator(units: Record<number, string>, opts: { freeze?: boolean } = {}): ModbusSimulator {
  const sim = new ModbusSimulator({ turnaroundMs: 1, tickMs: 3_600_000 });
  for (const [id, p] of Object.entries(units)) sim.addUnit(Number(id), new SimDevice(profile(p), { freeze: opts.freeze ?? false, seed: Number(id) }));
  cleanups.push(() => sim.close());
  return sim;
}

function tcpPort(l: SimListener): number {
  if (l.transport === "rtu") throw new Error("not a TCP listener");
  return l.port;
}

function closeClient(c: ModbusRTU): Promise<void> {
  // close() never calls back on a socket that is already gone: do not wait for ever.
  return Promise.race([new Promise<void>((r) => c.close(() => r())), sleep(300).then(() => undefined)]);
}

async function tcpClient(port: number, timeoutMs = 250): Promise<ModbusRTU> {
  const c = new ModbusRTU();
  await c.connectTCP(HOST, { port });
  c.setTimeout(timeoutMs);
  cleanups.push(() => closeClient(c));
  return c;
}

async function read(c: ModbusRTU, unit: number, p: ModbusPoint): Promise<PointValue> {
  c.setID(unit);
  const n = registerCount(p);
  switch (p.table) {
    case "input":
      return decodePoint(p, (await c.readInputRegisters(p.address, n)).data);
    case "holding":
      return decodePoint(p, (await c.readHoldingRegisters(p.address, n)).data);
    case "coil":
      return decodePoint(p, [(await c.readCoils(p.address, 1)).data[0] ? 1 : 0]);
    case "discrete":
      return decodePoint(p, [(await c.readDiscreteInputs(p.address, 1)).data[0] ? 1 : 0]);
  }
}

/** The error a promise rejects with (fails the test if it resolves). */
async function failure(p: Promise<unknown>): Promise<Error & { modbusCode?: number; errno?: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { modbusCode?: number; errno?: string };
  }
  throw new Error("expected the request to fail");
}

function mbpoll(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  // Asynchronous on purpose: the simulator answering it runs in this process.
  return new Promise((resolve) => {
    execFile("mbpoll", args, { timeout: 5_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** `[12548]: \t1329` lines → Map(address → value). */
function mbpollValues(stdout: string): Map<number, number> {
  const values = new Map<number, number>();
  for (const m of stdout.matchAll(/^\[(\d+)\]:\s+(\S+)\s*$/gm)) values.set(Number(m[1]), Number(m[2]));
  return values;
}

/** What mbpoll prints for a float32: printf %g, six significant digits. */
/** mbpoll prints 6 significant digits of the float32; we decode 7: equal to within the last printed digit. */
const closeToPrinted = (printed: number | undefined, v: number) => Math.abs((printed ?? Number.NaN) - v) <= Math.abs(v) * 1e-5;

async function ptyPair(): Promise<{ a: string; b: string }> {
  const dir = mkdtempSync(join(tmpdir(), "edge-pty-"));
  const a = join(dir, "a");
  const b = join(dir, "b");
  const socat: ChildProcess = spawn("socat", ["-d", "-d", `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  socat.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  cleanups.push(async () => {
    if (socat.exitCode === null && socat.signalCode === null) {
      const gone = new Promise((r) => socat.once("exit", r));
      socat.kill();
      await gone;
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const deadline = Date.now() + 3_000;
  while (!(existsSync(a) && existsSync(b))) {
    if (socat.exitCode !== null || Date.now() > deadline) throw new Error(`socat did not make a pty pair: ${log}`);
    await sleep(10);
  }
  return { a, b };
}

/**
 * What a raw socket receives, taken in order: `next(n)` waits for the next n bytes. That nothing
 * was answered to a frame is shown by order: the next bytes are the answer to the next request.
 */
const bytes = (hex: string) => hex.split(" ").length;

function received(socket: Socket) {
  let buf = Buffer.alloc(0);
  socket.on("data", (d: Buffer) => (buf = Buffer.concat([buf, d])));
  return {
    async next(n: number, what: string): Promise<string> {
      await waitFor(what, () => buf.length >= n, { detail: () => `received: ${toHex(buf)}` });
      const out = buf.subarray(0, n);
      buf = buf.subarray(n);
      return toHex(out);
    },
    /** Bytes received and not taken yet. */
    get rest(): string {
      return toHex(buf);
    },
  };
}

async function rawSocket(port: number): Promise<Socket> {
  const s = connect({ host: HOST, port });
  await new Promise<void>((resolve, reject) => {
    s.once("connect", resolve);
    s.once("error", reject);
  });
  cleanups.push(() => {
    s.destroy();
  });
  return s;
}

describe("Modbus TCP simulator read by modbus-serial", () => {
  it("serves every point of sdm630, epever and sdm120 as SimDevice.get reports it, and the values move", async () => {
    const units = { 1: "sdm630", 2: "epever", 3: "sdm120" };
    const sim = simulator(units);
    const l = await sim.listenTcp({ host: HOST, port: 0 });
    expect(tcpPort(l)).toBeGreaterThan(0);
    const c = await tcpClient(tcpPort(l));
    const check = async () => {
      for (const id of sim.unitIds()) {
        const device = sim.device(id)!;
        for (const name of device.pointNames()) {
          const p = profile(units[id as keyof typeof units]).points.find((x) => x.name === name);
          if (!p) continue; // identify-only registers
          expect(await read(c, id, p), `unit ${id} ${name}`).toEqual(device.get(name));
        }
      }
    };
    await check();
    const voltage = pointAt(profile("sdm630"), "input", 0);
    const before = await read(c, 1, voltage);
    sim.tick(Date.now() + 7_000);
    expect(await read(c, 1, voltage)).not.toEqual(before);
    await check();
  });

  it("answers block reads as the real devices do (devices.md), exception 1 for an unknown function, and nothing for a unit it does not have", async () => {
    const sim = simulator({ 1: "sdm630", 2: "epever" });
    const c = await tcpClient(tcpPort(await sim.listenTcp({ host: HOST, port: 0 })));
    c.setID(1);
    // Eastron: unused registers inside the map read as zero, 80 registers per read at most.
    expect((await c.readInputRegisters(0x0040, 2)).data).toEqual([0, 0]);
    expect((await c.readInputRegisters(0x0000, 80)).data).toHaveLength(80);
    expect((await failure(c.readInputRegisters(0x0000, 81))).modbusCode).toBe(3);
    expect((await failure(c.readInputRegisters(0x0000, 126))).modbusCode).toBe(3);
    expect((await failure(c.readInputRegisters(0x0200, 2))).modbusCode).toBe(2);
    expect((await failure(c.readCoils(0, 1))).modbusCode).toBe(2);
    // EPEVER: reserved registers inside 0x3100–0x3111 read; a read past that block is refused.
    c.setID(2);
    expect((await c.readInputRegisters(0x3100, 18)).data).toHaveLength(18);
    expect((await failure(c.readInputRegisters(0x3100, 19))).modbusCode).toBe(2);
    expect((await failure(c.readInputRegisters(0x311a, 4))).modbusCode).toBe(2);
    c.setID(9);
    expect((await failure(c.readInputRegisters(0, 2))).errno).toBe("ETIMEDOUT");
    expect(sim.counters.otherUnits).toBe(1);
  });

  it("injects each fault into one unit while the others keep answering", async () => {
    const sim = simulator({ 1: "sdm630", 2: "epever" }, { freeze: true });
    const port = tcpPort(await sim.listenTcp({ host: HOST, port: 0 }));
    const c = await tcpClient(port);
    const voltage = pointAt(profile("sdm630"), "input", 0);
    const battery = pointAt(profile("epever"), "input", 0x3104);
    const expected = sim.device(2)!.get(battery.name);
    /** Unit 1 fails as expected, and unit 2 answers on the same connection meanwhile. */
    const faulty = async () => {
      const u1 = failure(read(c, 1, voltage));
      const u2 = read(c, 2, battery);
      expect(await u2).toBe(expected);
      return u1;
    };

    sim.setFault(1, { kind: "no-answer" });
    expect((await faulty()).errno).toBe("ETIMEDOUT");

    sim.setFault(1, { kind: "exception", code: 4 });
    expect((await faulty()).modbusCode).toBe(4);

    sim.setFault(1, { kind: "wrong-unit" });
    expect((await faulty()).message).toMatch(/expected address 1 got 2/);

    sim.setFault(1, { kind: "slow", ms: 400 });
    c.setTimeout(2_000);
    const t0 = performance.now();
    let slowDone = 0;
    const slow = read(c, 1, voltage).then((v) => ((slowDone = performance.now() - t0), v));
    expect(await read(c, 2, battery)).toBe(expected);
    expect(slowDone).toBe(0);
    expect(await slow).toBe(sim.device(1)!.get(voltage.name));
    expect(slowDone).toBeGreaterThanOrEqual(395);

    sim.setFault(1, { kind: "none" });
    expect(await read(c, 1, voltage)).toBe(sim.device(1)!.get(voltage.name));

    // No CRC in MBAP: both become a frame shorter than its header says. modbus-serial waits for
    // the rest, times out, and that connection stays out of step: each check uses its own.
    for (const kind of ["bad-crc", "truncated"] as const) {
      sim.setFault(1, { kind });
      const own = await tcpClient(port);
      expect((await failure(read(own, 1, voltage))).errno).toBe("ETIMEDOUT");
    }
    sim.setFault(1, { kind: "none" });
    expect(await read(await tcpClient(port), 1, voltage)).toBe(sim.device(1)!.get(voltage.name));
    expect(sim.counters.faults).toEqual({ "no-answer": 1, exception: 1, "wrong-unit": 1, slow: 1, "bad-crc": 1, truncated: 1 });
  });

  it("executes broadcast writes without answering, and drops a connection that does not speak Modbus TCP", async () => {
    const sim = simulator({ 1: "epever", 2: "epever" }, { freeze: true });
    const port = tcpPort(await sim.listenTcp({ host: HOST, port: 0 }));
    const s = await rawSocket(port);
    const rx = received(s);
    const load = pointAt(profile("epever"), "coil", 0x0002);
    s.write(mbapFrame(7, 0, fromHex("05 00 02 FF 00")));
    await waitFor("the broadcast executed by both units", () => sim.device(1)!.get(load.name) === true && sim.device(2)!.get(load.name) === true);
    // Unanswered: the next bytes on the socket are the reply to the next request.
    s.write(mbapFrame(8, 1, fromHex("01 00 02 00 01")));
    expect(await rx.next(10, "the reply to the read")).toBe("00 08 00 00 00 04 01 01 01 01");
    const closed = new Promise((r) => s.once("close", r));
    s.write(fromHex("00 09 00 07 00 06 01 04 00 00 00 02"));
    await closed;
    expect(sim.counters.invalidMbap).toBe(1);
  });
});

describe("RTU over TCP", () => {
  it("serves modbus-serial's connectTelnet, and resynchronises after garbage, bad CRCs and unknown functions", async () => {
    const sim = simulator({ 1: "sdm630" }, { freeze: true });
    // The silence that ends a frame: long enough that a busy machine does not put one inside a
    // frame written in two parts (the simulator and this test share one event loop).
    const silenceMs = 300;
    const port = tcpPort(await sim.listenRtuOverTcp({ host: HOST, port: 0, silenceMs }));
    // modbus-serial's RTU-over-TCP client is connectTelnet; connectTcpRTUBuffered sends MBAP.
    const c = new ModbusRTU();
    await c.connectTelnet(HOST, { port });
    c.setTimeout(250);
    cleanups.push(() => closeClient(c));
    const voltage = pointAt(profile("sdm630"), "input", 0);
    expect(await read(c, 1, voltage)).toBe(sim.device(1)!.get(voltage.name));
    const mbap = new ModbusRTU();
    await mbap.connectTcpRTUBuffered(HOST, { port: tcpPort(await sim.listenTcp({ host: HOST, port: 0 })) });
    mbap.setTimeout(250);
    cleanups.push(() => closeClient(mbap));
    expect(await read(mbap, 1, voltage)).toBe(sim.device(1)!.get(voltage.name));

    const s = await rawSocket(port);
    s.setNoDelay(true); // else Nagle holds the second half of a split frame past the silence
    const rx = received(s);
    const request = rtuFrame(1, fromHex("04 00 00 00 02"));
    const reply = toHex(rtuFrame(1, sim.device(1)!.handlePdu(fromHex("04 00 00 00 02"))));
    s.write(Buffer.concat([fromHex("FF FF"), request]));
    expect(await rx.next(bytes(reply), "the reply after the garbage")).toBe(reply);
    expect(sim.counters.garbageBytes).toBe(2);
    // A bad CRC: dropped as garbage once the line is quiet, and not answered (the next bytes on
    // the socket are the next request's answer).
    const bad = Buffer.from(request);
    bad[7]! ^= 0xff;
    s.write(bad);
    await waitFor("the bad frame dropped as garbage", () => sim.counters.garbageBytes >= 2 + bad.length);
    // Report Server ID (FC17) is not served: its length is found by silence, then exception 1.
    s.write(rtuFrame(1, fromHex("11")));
    expect(await rx.next(5, "exception 1 to FC17")).toBe(toHex(rtuFrame(1, fromHex("91 01"))));
    // Split across writes with a pause shorter than the silence: still one request.
    s.write(request.subarray(0, 3));
    await sleep(5);
    s.write(request.subarray(3));
    expect(await rx.next(bytes(reply), "the reply to the split request")).toBe(reply);
    expect(sim.counters.garbageBytes).toBe(2 + 8);
    expect(rx.rest).toBe("");
  });
});

describe("RTU on a socat pty pair", () => {
  it("modbus-serial and mbpoll read the same values; bad CRC and wrong unit are refused; the client recovers", async () => {
    const { a, b } = await ptyPair();
    const sim = simulator({ 1: "sdm630", 2: "epever" }, { freeze: true });
    await sim.openSerial({ path: a, baudRate: 9600 });
    const sdm = profile("sdm630");
    const volts = [0, 2, 4].map((addr) => sim.device(1)!.get(pointAt(sdm, "input", addr).name) as number);

    const poll = await mbpoll(["-m", "rtu", "-b", "9600", "-P", "none", "-a", "1", "-0", "-r", "0", "-c", "3", "-t", "3:float", "-B", "-1", "-o", "1", b]);
    expect(poll.code, poll.stderr).toBe(0);
    const seen = mbpollValues(poll.stdout);
    expect([0, 2, 4].map((addr, i) => closeToPrinted(seen.get(addr), volts[i] as number))).toEqual([true, true, true]);

    const c = new ModbusRTU();
    await c.connectRTUBuffered(b, { baudRate: 9600 });
    c.setTimeout(5_000);
    cleanups.push(() => closeClient(c));
    for (const [i, addr] of [0, 2, 4].entries()) expect(await read(c, 1, pointAt(sdm, "input", addr))).toBe(volts[i]);
    const battery = pointAt(profile("epever"), "input", 0x3104);
    expect(await read(c, 2, battery)).toBe(sim.device(2)!.get(battery.name));

    const voltage = pointAt(sdm, "input", 0);
    sim.setFault(1, { kind: "bad-crc" });
    expect((await failure(read(c, 1, voltage))).message).toBe("CRC error");
    sim.setFault(1, { kind: "wrong-unit" });
    // The buffered RTU port skips frames from other units: the request just times out.
    const replies = sim.counters.replies;
    c.setTimeout(250);
    expect((await failure(read(c, 1, voltage))).errno).toBe("ETIMEDOUT");
    c.setTimeout(5_000);
    // On a loaded machine that (ignored) reply may still be on its way when the client gives up;
    // a device answers one request at a time, so the next one waits until it has left.
    await until(() => sim.counters.replies > replies, "the wrong unit's reply sent");
    // …and out of the simulator's port (its write drains through socat, slow on a loaded machine).
    await sleep(1000);
    sim.setFault(1, { kind: "exception", code: 2 });
    expect((await failure(read(c, 1, voltage))).modbusCode).toBe(2);
    sim.setFault(1, { kind: "none" });
    expect(await read(c, 1, voltage)).toBe(volts[0]);
    expect(sim.counters.faults).toMatchObject({ "bad-crc": 1, "wrong-unit": 1, exception: 1 });
    expect(sim.counters.busyDropped).toBe(0);
  });

  it("answers one request at a time: a request sent while a slow reply is pending is not answered", async () => {
    const { a, b } = await ptyPair();
    const sim = simulator({ 1: "sdm630" }, { freeze: true });
    await sim.openSerial({ path: a, baudRate: 19200 });
    const c = new ModbusRTU();
    await c.connectRTUBuffered(b, { baudRate: 19200 });
    cleanups.push(() => closeClient(c));
    const sdm = profile("sdm630");
    const l1 = pointAt(sdm, "input", 0);
    const l2 = pointAt(sdm, "input", 2);
    // L1's reply comes a second after the client gave up on it: time enough, even on a busy
    // machine, to ask for L2 while that reply is still due.
    sim.setFault(1, { kind: "slow", ms: 1_200 });
    c.setTimeout(200);
    expect((await failure(read(c, 1, l1))).errno).toBe("ETIMEDOUT");
    sim.setFault(1, { kind: "none" });
    // Asked for L2 while L1's late reply is still due: the simulator drops the new request, and
    // modbus-serial (same unit, function and length) takes L1's late reply for L2's answer.
    c.setTimeout(5_000);
    const got = await read(c, 1, l2);
    expect(sim.counters.busyDropped).toBe(1);
    expect(got).toBe(sim.device(1)!.get(l1.name));
    await sleep(50);
    expect(await read(c, 1, l2)).toBe(sim.device(1)!.get(l2.name));
    expect(sim.counters.replies).toBe(2);
  });
});

describe("edge-agent simulate modbus", () => {
  /** Runs the command in-process until the test releases it. */
  async function simulate(args: string[]) {
    const lines: string[] = [];
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let started!: (run: RunningSimulation) => void;
    const ready = new Promise<RunningSimulation>((r) => (started = r));
    const program = new Command("edge-agent").exitOverride();
    registerSimulate(program, {
      write: (line) => lines.push(line),
      stop: (run) => {
        started(run);
        return released;
      },
    });
    for (const cmd of program.commands) {
      cmd.exitOverride();
      for (const sub of cmd.commands) sub.exitOverride();
    }
    const done = program.parseAsync(["simulate", "modbus", ...args], { from: "user" });
    cleanups.push(async () => {
      release();
      await done.catch(() => undefined);
    });
    const run = await Promise.race([ready, done.then(() => Promise.reject(new Error("the command ended before it listened")))]);
    return { run, lines, stop: async () => (release(), await done) };
  }

  async function userError(args: string[]): Promise<string> {
    const err = await failure(simulate(args));
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).not.toContain("\n");
    return err.message;
  }

  it("with --freeze --json prints one JSON line, and mbpoll reads what the devices hold", async () => {
    const { run, lines, stop } = await simulate(["--tcp", `${HOST}:0`, "--unit", "1=sdm630", "--unit", "2=epever", "--freeze", "--json"]);
    expect(lines).toHaveLength(1);
    const out = JSON.parse(lines[0]!) as { units: unknown; listeners: Array<{ transport: string; host: string; port: number }> };
    expect(out.units).toEqual([
      { unit: 1, profile: "sdm630" },
      { unit: 2, profile: "epever" },
    ]);
    expect(out.listeners).toHaveLength(1);
    const port = out.listeners[0]!.port;
    expect(out.listeners[0]).toEqual({ transport: "tcp", host: HOST, port });
    expect(port).toBeGreaterThan(0);

    const sdm = profile("sdm630");
    const meter = run.simulator.device(1)!;
    const floats = await mbpoll(["-m", "tcp", "-p", String(port), "-a", "1", "-0", "-r", "0", "-c", "6", "-t", "3:float", "-B", "-1", HOST]);
    expect(floats.code, floats.stderr).toBe(0);
    const f = mbpollValues(floats.stdout);
    expect(f.size).toBe(6);
    for (const [addr, v] of f) expect(closeToPrinted(v, meter.get(pointAt(sdm, "input", addr).name) as number), `0x${addr.toString(16)}: ${v}`).toBe(true);

    const ep = profile("epever");
    const controller = run.simulator.device(2)!;
    const raw = await mbpoll(["-m", "tcp", "-p", String(port), "-a", "2", "-0", "-r", "0x3104", "-c", "2", "-t", "3", "-1", HOST]);
    expect(raw.code, raw.stderr).toBe(0);
    const r = mbpollValues(raw.stdout);
    for (const addr of [0x3104, 0x3105]) {
      const p = pointAt(ep, "input", addr);
      expect(r.get(addr)! * p.scale!, p.name).toBeCloseTo(controller.get(p.name) as number, 9);
    }

    // Eastron's unused registers read as zero; past the map, and past EPEVER's block, refused.
    const hole = await mbpoll(["-m", "tcp", "-p", String(port), "-a", "1", "-0", "-r", "0x40", "-c", "1", "-t", "3:float", "-B", "-1", HOST]);
    expect(hole.code, hole.stderr).toBe(0);
    expect([...mbpollValues(hole.stdout)]).toEqual([[0x40, 0]]);
    const past = await mbpoll(["-m", "tcp", "-p", String(port), "-a", "1", "-0", "-r", "0x200", "-c", "1", "-t", "3:float", "-B", "-1", HOST]);
    expect(past.stderr).toMatch(/Illegal data address/);
    const block = await mbpoll(["-m", "tcp", "-p", String(port), "-a", "2", "-0", "-r", "0x3100", "-c", "19", "-t", "3", "-1", HOST]);
    expect(block.stderr).toMatch(/Illegal data address/);

    await stop();
    expect(lines).toHaveLength(1);
    const refused = new ModbusRTU();
    await expect(refused.connectTCP(HOST, { port })).rejects.toThrow(/ECONNREFUSED/);
  });

  it("prints one line per listener, with the units and the faults", async () => {
    const { lines, run } = await simulate(["--tcp", `${HOST}:0`, "--rtu-over-tcp", `${HOST}:0`, "--unit", "2=epever", "--unit", "1=sdm630", "--fault", "2=slow:800"]);
    const [tcp, rot] = run.simulator.openListeners().map(tcpPort);
    expect(lines).toEqual([
      `modbus simulator: unit 1 sdm630, unit 2 epever on tcp ${HOST}:${tcp} (faults: unit 2 slow:800)`,
      `modbus simulator: unit 1 sdm630, unit 2 epever on rtu-over-tcp ${HOST}:${rot} (faults: unit 2 slow:800)`,
    ]);
    expect(run.simulator.fault(2)).toEqual({ kind: "slow", ms: 800 });
  });

  it("refuses what a user can get wrong with one line naming the flag", async () => {
    expect(await userError(["--tcp", `${HOST}:0`, "--unit", "1=nosuch"])).toMatch(/--unit 1=nosuch: unknown profile 'nosuch' \(known: epever, sdm120, sdm630\)/);
    expect(await userError(["--tcp", `${HOST}:0`, "--unit", "300=sdm630"])).toMatch(/--unit 300=sdm630: unit id must be 1–247/);
    expect(await userError(["--tcp", `${HOST}:0`, "--unit", "0=sdm630"])).toMatch(/1–247/);
    expect(await userError(["--tcp", "localhost", "--unit", "1=sdm630"])).toMatch(/--tcp: expected HOST:PORT/);
    expect(await userError(["--tcp", `${HOST}:70000`, "--unit", "1=sdm630"])).toMatch(/--tcp: expected HOST:PORT/);
    expect(await userError(["--unit", "1=sdm630"])).toMatch(/at least one of --tcp/);
    expect(await userError(["--tcp", `${HOST}:0`])).toMatch(/--unit ID=PROFILE/);
    expect(await userError(["--tcp", `${HOST}:0`, "--unit", "1=sdm630", "--fault", "1=melt"])).toMatch(/--fault 1=melt: unknown fault 'melt'/);
    expect(await userError(["--tcp", `${HOST}:0`, "--unit", "1=sdm630", "--fault", "2=no-answer"])).toMatch(/unit 2 is not simulated/);
    expect(await userError(["--tcp", `${HOST}:0`, "--unit", "1=sdm630", "--baud", "9600"])).toMatch(/--baud applies to --rtu only/);
    expect(await userError(["--rtu", "/nonexistent/ttyUSB9", "--unit", "1=sdm630", "--parity", "mark"])).toMatch(/--parity: expected one of none, even, odd/);
    expect(await userError(["--rtu", "/nonexistent/ttyUSB9", "--unit", "1=sdm630"])).toMatch(/^--rtu \/nonexistent\/ttyUSB9: cannot open the serial device/);

    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, HOST, r));
    cleanups.push(() => new Promise<void>((r) => busy.close(() => r())));
    const port = (busy.address() as AddressInfo).port;
    // --tcp opens first and is closed again when --rtu-over-tcp fails.
    expect(await userError(["--tcp", `${HOST}:0`, "--rtu-over-tcp", `${HOST}:${port}`, "--unit", "1=sdm630"])).toBe(
      `--rtu-over-tcp ${HOST}:${port}: the port is already in use`,
    );
  });
});
