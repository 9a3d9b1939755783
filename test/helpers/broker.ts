/**
 * Brokers for tests. With EDGE_TEST_MOSQUITTO (the path of a mosquitto binary; CI sets it) each
 * test gets its own real Mosquitto on a free loopback port, which it can stop and restart; without
 * it, an in-process aedes broker stands in, so `npm test` passes on a fresh machine too.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { Aedes } from "aedes";

export interface TestBroker {
  readonly kind: "mosquitto" | "aedes";
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
  /** Starts again on the same port (after stop). */
  start(): Promise<void>;
  /** Stops for good and frees everything. */
  close(): Promise<void>;
}

export interface BrokerOptions {
  /** Require this user and password (anonymous access refused). */
  credentials?: { username: string; password: string };
  /** More lines for mosquitto.conf (e.g. `message_size_limit 1000`); Mosquitto only. */
  extra?: string[];
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const sock = tcpConnect(port, "127.0.0.1");
      sock.once("connect", () => {
        sock.destroy();
        resolve();
      });
      sock.once("error", () => {
        sock.destroy();
        if (Date.now() > deadline) reject(new Error(`broker did not listen on ${port}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

export const mosquittoBin = process.env.EDGE_TEST_MOSQUITTO || undefined;

class MosquittoBroker implements TestBroker {
  readonly kind = "mosquitto" as const;
  private proc: ChildProcess | null = null;
  private readonly conf: string;

  constructor(
    readonly port: number,
    opts: BrokerOptions,
  ) {
    const dir = mkdtempSync(join(tmpdir(), "edge-mosq-"));
    // Persistence keeps a subscriber's session (and its queued messages) across stop/start.
    const lines = [
      `listener ${port} 127.0.0.1`,
      // As root, mosquitto would switch to its own user, which cannot read this temp dir.
      `user ${userInfo().username}`,
      "persistence true",
      `persistence_location ${dir}/`,
      "max_queued_messages 0",
      "max_inflight_messages 0",
    ];
    if (opts.credentials) {
      const pw = join(dir, "passwd");
      writeFileSync(pw, "");
      const passwd = ["/usr/bin/mosquitto_passwd", join(dirname(mosquittoBin!), "mosquitto_passwd")].find((f) => existsSync(f)) ?? "mosquitto_passwd";
      execFileSync(passwd, ["-b", pw, opts.credentials.username, opts.credentials.password]);
      lines.push("allow_anonymous false", `password_file ${pw}`);
    } else {
      lines.push("allow_anonymous true");
    }
    lines.push(...(opts.extra ?? []));
    this.conf = join(dir, "mosquitto.conf");
    writeFileSync(this.conf, `${lines.join("\n")}\n`);
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.proc = spawn(mosquittoBin!, ["-c", this.conf], { stdio: "ignore" });
    await waitForPort(this.port);
  }

  close(): Promise<void> {
    return this.stop();
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (!proc || proc.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once("exit", () => resolve());
      proc.kill("SIGTERM");
    });
  }
}

class AedesBroker implements TestBroker {
  readonly kind = "aedes" as const;
  private broker: Aedes | null = null;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();

  constructor(
    readonly port: number,
    private readonly opts: BrokerOptions,
  ) {}

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** The broker instance lives on across stop/start, like a broker with persistent sessions. */
  async start(): Promise<void> {
    const creds = this.opts.credentials;
    this.broker ??= await Aedes.createBroker(
      creds
        ? {
            authenticate: (_client, username, password, done) => {
              const ok = username === creds.username && password?.toString() === creds.password;
              if (ok) done(null, true);
              else done(Object.assign(new Error("bad username or password"), { returnCode: 4 }) as never, false);
            },
          }
        : {},
    );
    const broker = this.broker;
    const server = createServer((socket) => {
      this.sockets.add(socket);
      socket.once("close", () => this.sockets.delete(socket));
      broker.handle(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  /** Ends the broker for good (stop only closes the listener). */
  async close(): Promise<void> {
    await this.stop();
    const broker = this.broker;
    this.broker = null;
    if (broker) await new Promise<void>((resolve) => broker.close(() => resolve()));
  }
}

export async function startBroker(opts: BrokerOptions = {}): Promise<TestBroker> {
  const port = await freePort();
  if (opts.extra && !mosquittoBin) throw new Error("this test configures Mosquitto: set EDGE_TEST_MOSQUITTO (CI does)");
  const broker = mosquittoBin ? new MosquittoBroker(port, opts) : new AedesBroker(port, opts);
  await broker.start();
  return broker;
}

/**
 * The running broker CI provides (EDGE_TEST_MQTT_URL), or one started for this test; `cleanups`
 * gets what stops it. For tests that need a broker but never stop or configure it.
 */
export async function sharedBrokerUrl(cleanups: Array<() => Promise<void>>): Promise<string> {
  const url = process.env.EDGE_TEST_MQTT_URL;
  if (url) return url;
  const broker = await startBroker();
  cleanups.push(() => broker.close());
  return broker.url;
}
