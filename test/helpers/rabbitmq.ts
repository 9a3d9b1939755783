/**
 * RabbitMQ for tests and scripts: real nodes of the Debian `rabbitmq-server` (3.10 on Debian 12)
 * started on this machine, each with its own node name, temp dir and free loopback ports (AMQP,
 * MQTT, Erlang distribution), the MQTT plugin on and anonymous MQTT logged in as guest. Nodes 2..N
 * join node 1. No vitest in here, so a script can import it too.
 *
 * Each cluster runs its own epmd on a free port (ERL_EPMD_PORT), started and killed by us: the
 * shared one on 4369 may belong to someone else, and one a node started itself would outlive it.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { freePort } from "./broker.js";

export interface RabbitNode {
  /** Erlang node name (`rabbitmqctl -n`), e.g. `edge-test-4242-1-0@localhost`. */
  readonly name: string;
  /** `amqp://127.0.0.1:<port>` (guest/guest, amqplib's default). */
  readonly amqpUrl: string;
  /** `mqtt://127.0.0.1:<port>`, anonymous (MQTT 3.1.1 only in 3.10). */
  readonly mqttUrl: string;
  readonly amqpPort: number;
  readonly mqttPort: number;
  /** SIGKILLs the node's VM: a crash, no goodbye to peers or clients. */
  kill(): Promise<void>;
  /** Stops the node gracefully (SIGTERM: RabbitMQ stops its apps, then the VM halts). */
  stop(): Promise<void>;
  /** Starts it again with the same name, ports and data; resolves once AMQP and MQTT answer. */
  start(): Promise<void>;
}

export interface RabbitCluster {
  readonly nodes: RabbitNode[];
  /** Kills every node and the cluster's epmd and removes the temp dir; safe to call twice. */
  stop(): Promise<void>;
  /** Node i's log so far: RabbitMQ's log file, then what the VM printed itself. */
  log(i: number): string;
  /** Runs `rabbitmqctl -n <node i> ...args` with the cluster's cookie and epmd; resolves with its stdout. */
  ctl(i: number, ...args: string[]): Promise<string>;
}

export interface RabbitOptions {
  /** How many nodes (default 1). */
  nodes?: number;
  /** Prefix of the node names (default `edge-test`). */
  name?: string;
}

/** Where Debian puts the real scripts (/usr/sbin/rabbitmq-server is a wrapper that switches to the rabbitmq user). */
const BIN = process.env.EDGE_TEST_RABBITMQ_BIN || "/usr/lib/rabbitmq/bin";
/** A fresh node's first boot: ~3.5 s of work plus rabbitmq_mqtt 3.10's fixed 3.3–6 s wait (mqtt_node:start); a loaded CI runner needs more. */
const START_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 60_000;

let clusters = 0;
/** Every process we started and have not seen exit, killed if this process exits without stop(). */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function killGroup(proc: ChildProcess, signal: NodeJS.Signals): void {
  if (proc.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
  try {
    process.kill(-proc.pid, signal); // the group: the VM and its erl_child_setup
  } catch {
    try {
      proc.kill(signal);
    } catch {
      // already gone
    }
  }
}

function track(proc: ChildProcess): void {
  live.add(proc);
  proc.once("exit", () => live.delete(proc));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const p of live) killGroup(p, "SIGKILL");
    });
  }
}

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => proc.once("exit", () => resolve()));
}

/** `setpriv --pdeathsig KILL` (util-linux) kills the child even when this process dies by a signal, where no exit hook runs. */
const setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].find((f) => existsSync(f));

function spawnOwned(cmd: string, args: string[], opts: { env: NodeJS.ProcessEnv; cwd: string; output: string }): ChildProcess {
  const out = openSync(opts.output, "a");
  try {
    const [file, argv] = setpriv ? [setpriv, ["--pdeathsig", "KILL", "--", cmd, ...args]] : [cmd, args];
    // Its own process group: a Ctrl-C meant for the test runner does not reach it, and killGroup() reaches all of it.
    const proc = spawn(file, argv, { env: opts.env, cwd: opts.cwd, detached: true, stdio: ["ignore", out, out] });
    track(proc);
    return proc;
  } finally {
    closeSync(out);
  }
}

function tail(text: string, lines = 40): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/** What a failed start said: its first errors (the cause; the crash reports that follow are generic), then the end of its log. */
function failureReport(log: string): string {
  const errors = log.split("\n").filter((l) => /\[error\]|BOOT FAILED|Error during startup/.test(l));
  const first = errors.length > 0 ? `first errors:\n${errors.slice(0, 12).join("\n")}\n` : "";
  return `${first}log ends:\n${tail(log, 25)}`;
}

/**
 * Sends `hello` to a loopback port and reports whether the first reply satisfies `ok`: a real
 * protocol answer, so "listening" also means "accepting clients".
 */
function probe(port: number, hello: Buffer, enough: number, ok: (reply: Buffer) => boolean, bye?: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = tcpConnect(port, "127.0.0.1");
    let reply = Buffer.alloc(0);
    const done = (v: boolean) => {
      clearTimeout(timer);
      if (v && bye) sock.end(bye);
      else sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(false), 2000);
    sock.once("connect", () => sock.write(hello));
    sock.on("data", (d: Buffer) => {
      reply = Buffer.concat([reply, d]);
      if (reply.length >= enough) done(ok(reply));
    });
    sock.once("error", () => done(false));
    sock.once("close", () => done(false));
  });
}

/** AMQP 0-9-1 protocol header; the server answers with a Connection.Start method frame (class 10, method 10). */
function amqpAnswers(port: number): Promise<boolean> {
  return probe(port, Buffer.from("AMQP\x00\x00\x09\x01", "latin1"), 11, (r) => r[0] === 1 && r.readUInt16BE(7) === 10 && r.readUInt16BE(9) === 10);
}

/** MQTT 3.1.1 CONNECT (clean session, no credentials); CONNACK with return code 0 means anonymous login works. */
function mqttAnswers(port: number): Promise<boolean> {
  const id = Buffer.from(`edge-probe-${randomBytes(4).toString("hex")}`);
  const variable = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 30]);
  const body = Buffer.concat([variable, Buffer.from([0, id.length]), id]);
  const connect = Buffer.concat([Buffer.from([0x10, body.length]), body]);
  return probe(port, connect, 4, (r) => r[0] === 0x20 && r[3] === 0, Buffer.from([0xe0, 0]));
}

/** The environment of a node or of rabbitmqctl: ours, with nothing inherited that RabbitMQ or Erlang would read. */
function baseEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(RABBITMQ_|ERL_)/.test(k)) env[k] = v;
  return { ...env, ...extra };
}

class Node implements RabbitNode {
  private proc: ChildProcess | null = null;
  readonly amqpUrl: string;
  readonly mqttUrl: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly logFile: string;
  private readonly consoleFile: string;

  constructor(
    readonly name: string,
    private readonly dir: string,
    readonly amqpPort: number,
    readonly mqttPort: number,
    distPort: number,
    shared: { home: string; epmdPort: number; plugins: string; envFile: string },
    joinTo: string | null,
  ) {
    this.amqpUrl = `amqp://127.0.0.1:${amqpPort}`;
    this.mqttUrl = `mqtt://127.0.0.1:${mqttPort}`;
    const logs = join(dir, "log");
    mkdirSync(join(dir, "mnesia"), { recursive: true });
    mkdirSync(logs, { recursive: true });
    this.logFile = join(logs, `${name}.log`);
    this.consoleFile = join(logs, "console.log");
    const conf = [
      `listeners.tcp.1 = 127.0.0.1:${amqpPort}`,
      `mqtt.listeners.tcp.1 = 127.0.0.1:${mqttPort}`,
      "mqtt.allow_anonymous = true",
      "mqtt.default_user = guest",
      "mqtt.default_pass = guest",
      "mqtt.vhost = /",
      "mqtt.exchange = amq.topic",
      "default_user = guest",
      "default_pass = guest",
      // guest may log in from anywhere; every listener is on 127.0.0.1 anyway.
      "loopback_users = none",
    ];
    // Joining at first boot (peer discovery) instead of stop_app/join_cluster/start_app: no second
    // boot, and no standalone MQTT client-id Raft cluster of its own to throw away.
    if (joinTo) conf.push("cluster_formation.peer_discovery_backend = classic_config", `cluster_formation.classic_config.nodes.1 = ${joinTo}`);
    writeFileSync(join(dir, "rabbitmq.conf"), `${conf.join("\n")}\n`);
    writeFileSync(join(dir, "enabled_plugins"), "[rabbitmq_mqtt].\n");
    this.env = baseEnv({
      HOME: shared.home,
      ERL_EPMD_PORT: String(shared.epmdPort),
      ERL_CRASH_DUMP: join(logs, "erl_crash.dump"),
      RABBITMQ_NODENAME: name,
      RABBITMQ_USE_LONGNAME: "false",
      RABBITMQ_CONF_ENV_FILE: shared.envFile,
      RABBITMQ_CONFIG_FILE: join(dir, "rabbitmq.conf"),
      RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, "advanced.config"), // absent: not /etc/rabbitmq's
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, "enabled_plugins"),
      RABBITMQ_PLUGINS_DIR: shared.plugins,
      RABBITMQ_MNESIA_BASE: join(dir, "mnesia"),
      RABBITMQ_LOG_BASE: logs,
      RABBITMQ_PID_FILE: join(dir, "rabbitmq.pid"),
      RABBITMQ_DIST_PORT: String(distPort),
      // rabbitmqctl would otherwise listen on 35672-35682 (or DIST_PORT+10000): fixed ports.
      RABBITMQ_CTL_DIST_PORT_MIN: "0",
      RABBITMQ_CTL_DIST_PORT_MAX: "0",
      // The script then execs the VM (same pid, so kill() reaches the beam); -noinput keeps the shell off.
      RABBITMQ_ALLOW_INPUT: "1",
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: "-noinput -kernel inet_dist_use_interface {127,0,0,1}",
    });
  }

  get running(): boolean {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  log(): string {
    const read = (f: string) => (existsSync(f) ? readFileSync(f, "utf8") : "");
    // The console output carries ANSI colours in 3.10 even when it is not a terminal.
    const vm = read(this.consoleFile).replace(/\x1b\[[0-9;]*m/g, "");
    return `${read(this.logFile)}\n--- ${this.name}: VM output ---\n${vm}`;
  }

  async start(): Promise<void> {
    if (this.running) return;
    const proc = spawnOwned(join(BIN, "rabbitmq-server"), [], { env: this.env, cwd: this.dir, output: this.consoleFile });
    this.proc = proc;
    const deadline = Date.now() + START_TIMEOUT_MS;
    let amqp = false;
    let mqtt = false;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        this.proc = null;
        throw new Error(`RabbitMQ node ${this.name} exited while starting (${proc.exitCode ?? proc.signalCode}); ${failureReport(this.log())}`);
      }
      mqtt ||= await mqttAnswers(this.mqttPort);
      amqp ||= mqtt && (await amqpAnswers(this.amqpPort)); // the AMQP listener opens last
      if (amqp && mqtt) return;
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(`RabbitMQ node ${this.name} did not accept ${mqtt ? "AMQP" : "MQTT"} clients within ${START_TIMEOUT_MS / 1000} s; ${failureReport(this.log())}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc || !this.running) return;
    const gone = exited(proc);
    proc.kill("SIGTERM");
    const timer = setTimeout(() => killGroup(proc, "SIGKILL"), STOP_TIMEOUT_MS);
    await gone;
    clearTimeout(timer);
    killGroup(proc, "SIGKILL"); // anything of its group left behind
    this.proc = null;
  }

  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    const gone = exited(proc);
    killGroup(proc, "SIGKILL");
    await gone;
  }
}

/**
 * A plugins dir with only the apps rabbitmq_mqtt and the broker need (followed through their .app
 * files): at boot RabbitMQ reads the config schema of every plugin it finds, ~1 s for all of them.
 */
function pluginsDir(root: string): string {
  const home = dirname(dirname(realpathSync(join(BIN, "rabbitmq-server"))));
  const all = join(home, "plugins");
  const entries = new Map<string, string>(); // app name → its directory in the plugins dir
  for (const entry of readdirSync(all)) entries.set(entry.replace(/-[0-9][^-]*$/, ""), entry);
  const needed = new Set<string>();
  const visit = (app: string) => {
    const entry = entries.get(app);
    if (!entry || needed.has(app)) return; // not a plugin (kernel, ssl…), or seen
    needed.add(app);
    const appFile = join(all, entry, "ebin", `${app}.app`);
    const deps = existsSync(appFile) ? /\{applications,\s*\[([^\]]*)\]/.exec(readFileSync(appFile, "utf8")) : null;
    if (!deps) throw new Error(`cannot read the dependencies of ${app} in ${appFile}`);
    for (const dep of deps[1]!.split(",")) visit(dep.trim());
  };
  for (const app of ["rabbit", "rabbitmq_prelaunch", "rabbitmq_mqtt"]) visit(app);
  const dir = join(root, "plugins");
  mkdirSync(dir);
  for (const app of needed) symlinkSync(join(all, entries.get(app)!), join(dir, entries.get(app)!));
  return dir;
}

function findEpmd(): string {
  const found = ["/usr/bin/epmd", "/usr/lib/erlang/bin/epmd", "/usr/local/bin/epmd"].find((f) => existsSync(f));
  if (!found) throw new Error("epmd not found (it comes with erlang, a dependency of rabbitmq-server: apt-get install rabbitmq-server)");
  return found;
}

async function waitForEpmd(proc: ChildProcess, port: number, output: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  // epmd answers a NAMES_REQ (length 1, 'n') with its own port number first.
  while (!(await probe(port, Buffer.from([0, 1, 110]), 4, (r) => r.readUInt32BE(0) === port))) {
    if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > deadline) {
      throw new Error(`epmd did not start on port ${port}: ${tail(existsSync(output) ? readFileSync(output, "utf8") : "")}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Starts `opts.nodes` RabbitMQ nodes (default 1); nodes 2..N join node 1. Resolves once every node
 * accepts AMQP and MQTT clients (and, for a cluster, node 1 lists them all as running). On failure
 * everything started is stopped again and the error carries the failing node's log tail.
 */
export async function startRabbit(opts: RabbitOptions = {}): Promise<RabbitCluster> {
  const count = opts.nodes ?? 1;
  const prefix = opts.name ?? "edge-test";
  if (!Number.isInteger(count) || count < 1) throw new Error(`startRabbit: nodes must be a whole number ≥ 1, not ${count}`);
  if (!/^[A-Za-z0-9_-]+$/.test(prefix)) throw new Error(`startRabbit: name may hold letters, digits, _ and - only, not ${JSON.stringify(prefix)}`);
  if (!existsSync(join(BIN, "rabbitmq-server")) || !existsSync(join(BIN, "rabbitmqctl"))) {
    throw new Error(`RabbitMQ is not installed: ${join(BIN, "rabbitmq-server")} is missing. Install the Debian package: apt-get install rabbitmq-server (then: service rabbitmq-server stop)`);
  }
  const epmdBin = findEpmd();
  const n = ++clusters;
  const root = mkdtempSync(join(tmpdir(), "edge-rabbit-"));
  const home = join(root, "home");
  mkdirSync(home);
  // One cookie per cluster: its nodes and rabbitmqctl read it from this HOME.
  writeFileSync(join(home, ".erlang.cookie"), randomBytes(20).toString("hex").toUpperCase(), { mode: 0o400 });
  const envFile = join(root, "rabbitmq-env.conf");
  writeFileSync(envFile, ""); // instead of /etc/rabbitmq/rabbitmq-env.conf
  const nodes: Node[] = [];
  let epmd: ChildProcess | null = null;
  let epmdPort = 0;
  let stopped = false;

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await Promise.all(nodes.map((node) => node.kill()));
    if (epmd) {
      const gone = exited(epmd);
      killGroup(epmd, "SIGKILL");
      await gone;
    }
    rmSync(root, { recursive: true, force: true });
  };

  try {
    const plugins = pluginsDir(root);
    epmdPort = await freePort();
    const epmdLog = join(root, "epmd.log");
    epmd = spawnOwned(epmdBin, ["-port", String(epmdPort), "-address", "127.0.0.1"], { env: baseEnv({}), cwd: root, output: epmdLog });
    await waitForEpmd(epmd, epmdPort, epmdLog);
    const shared = { home, epmdPort, plugins, envFile };
    for (let i = 0; i < count; i++) {
      const name = `${prefix}-${process.pid}-${n}-${i}@localhost`;
      const [amqp, mqtt, dist] = [await freePort(), await freePort(), await freePort()];
      nodes.push(new Node(name, join(root, `n${i}`), amqp, mqtt, dist, shared, i === 0 ? null : nodes[0]!.name));
    }
    await nodes[0]!.start();
    // The others only once node 1 is fully up: a joiner's MQTT plugin asks node 1's client-id
    // Raft member to add it, and that member exists only at the end of node 1's boot.
    const results = await Promise.allSettled(nodes.slice(1).map((node) => node.start()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    if (count > 1) {
      const status = JSON.parse(await ctl(0, "cluster_status", "--formatter", "json")) as { running_nodes?: string[] };
      const missing = nodes.filter((node) => !status.running_nodes?.includes(node.name));
      if (missing.length > 0) {
        throw new Error(`RabbitMQ nodes did not join ${nodes[0]!.name}: ${missing.map((m) => m.name).join(", ")}; the first one's ${failureReport(missing[0]!.log())}`);
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }

  function ctl(i: number, ...args: string[]): Promise<string> {
    const node = nodes[i];
    if (!node) return Promise.reject(new Error(`no node ${i} (the cluster has ${nodes.length})`));
    const env = baseEnv({
      HOME: home,
      ERL_EPMD_PORT: String(epmdPort),
      RABBITMQ_CONF_ENV_FILE: envFile,
      RABBITMQ_CTL_DIST_PORT_MIN: "0",
      RABBITMQ_CTL_DIST_PORT_MAX: "0",
    });
    return new Promise((resolve, reject) => {
      execFile(join(BIN, "rabbitmqctl"), ["-n", node.name, ...args], { env, timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`rabbitmqctl -n ${node.name} ${args.join(" ")} failed: ${err.message}\n${tail(String(stderr || stdout))}`));
        else resolve(String(stdout));
      });
    });
  }

  return {
    nodes,
    stop,
    ctl,
    log: (i: number) => {
      const node = nodes[i];
      if (!node) throw new Error(`no node ${i} (the cluster has ${nodes.length})`);
      return node.log();
    },
  };
}
