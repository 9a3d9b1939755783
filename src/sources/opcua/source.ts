/**
 * A `type: opcua` source: nodes of a PLC or BMS, subscribed as monitored items (sampled and
 * published at the source's interval). Every change becomes a reading with the server's
 * timestamp and a quality from its status code; each poll hands over the changes since the
 * previous one and, for a node that did not change, its latest value at the poll's time.
 *
 * node-opcua keeps the connection: it retries the first connect with backoff, and after a loss
 * it reconnects and restores the session and subscription by itself (measured against a server
 * that stops and comes back). Meanwhile, and when the subscription falls silent for three
 * keep-alive periods, every point is quality bad. A node the server does not know is reported
 * once, with its name and node id, and stays quality bad; the others keep coming.
 *
 * The server's certificate is pinned to the endpoint on first contact (or, with `trust:
 * explicit`, must be in the PKI's trusted/certs/ first; see opcua/trust.ts). It is checked when
 * node-opcua asks (Sign and SignAndEncrypt: at connect, and when a reconnection meets a new
 * certificate) and on every session (with None too, where it only tells a swapped PLC apart: no
 * channel proves it). A refused certificate stops the client: node-opcua would ask again at once,
 * in a tight loop; the source starts over at its own backoff, and the reason stays in health
 * until `edge-agent opcua trust` pins the new certificate, which the next attempt reads.
 */
import { hostname } from "node:os";
import type { ClientSession, ClientSubscription, DataValue, OPCUAClient } from "node-opcua";
import type { OpcuaSourceConfig } from "./type.js";
import type { Quality, Reading, Value } from "../../model/reading.js";
import type { Logger } from "../../model/logger.js";
import { identityFor } from "../../opcua/endpoint.js";
import { defaultPkiDir, loadOpcua, type Opcua } from "../../opcua/load.js";
import { checkedBy, clientCertificateManager, leafCertificate, ServerTrust } from "../../opcua/trust.js";
import { qualityOf, valueOf } from "../../opcua/values.js";
import type { Source, SourceDetail } from "../source.js";
import type { SourceDeps } from "../type.js";

/** Changes kept per point between two polls; a chattering node cannot fill the memory. */
const MAX_PENDING = 100;
/** How long closing a session may take before the client is dropped anyway. */
const CLOSE_TIMEOUT_MS = 2000;

interface PointState {
  readonly id: string;
  readonly node: string;
  latest: { value: Value; quality: Quality } | null;
  pending: Reading[];
  /** Why the server gives no value for this node (unknown node id, no access…). */
  error: string | null;
}

export interface OpcuaSourceHealth {
  online: boolean;
  endpoint: string;
  lastError: string | null;
  reconnects: number;
  /** SHA-1 of the server certificate accepted last (as a PLC's display shows it). */
  certificate: string | null;
  /** `<point> (<node id>): <status>` for every node the server refused. */
  badNodes: string[];
}

export interface OpcuaSourceDeps {
  log: Logger;
  /** Where the outbox lives: the client PKI defaults to opcua-client-pki next to it. */
  storePath: string;
}

/** One line out of node-opcua's multi-line errors: the cause it puts in `Err = (…)`. */
export function describeOpcuaError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const cause = /Err = \(([\s\S]*)\)/.exec(message)?.[1];
  return (cause ?? message).replace(/\s+/g, " ").trim();
}

export class OpcuaSource implements Source {
  readonly name: string;
  readonly interval: number;
  private readonly points: PointState[];
  private ua: Opcua | null = null;
  private client: OPCUAClient | null = null;
  private session: ClientSession | null = null;
  private connected = false;
  private lastHeard = 0;
  private staleAfterMs: number;
  private stopped = false;
  private running: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private lastError: string | null = null;
  private reconnects = 0;
  private readonly reported = new Set<string>();
  private readonly pkiDir: string;
  private readonly trust: ServerTrust;
  /** connect() went through: node-opcua keeps the connection from here on. */
  private established = false;
  /** Dropping a client whose server was refused, to start over at the backoff. */
  private restarting = false;
  /** The session certificate (node-opcua's buffer) checked last, and its verdict. */
  private checkedSession: { certificate: Buffer; trusted: boolean } | null = null;
  /** The certificate refused last, and why: the connect attempt that failed reports this. */
  private refusal: { leaf: Buffer; reason: string } | null = null;
  private certificate: string | null = null;
  private warnedNoCertificate = false;

  constructor(
    private readonly cfg: OpcuaSourceConfig,
    private readonly deps: OpcuaSourceDeps,
  ) {
    this.name = cfg.name;
    this.interval = cfg.interval;
    this.points = cfg.nodes.map((n) => ({ id: `${cfg.name}/${n.name}`, node: n.node, latest: null, pending: [], error: null }));
    this.staleAfterMs = 3 * this.keepAliveMs();
    this.pkiDir = cfg.pki_dir ?? defaultPkiDir(deps.storePath, "client");
    this.trust = new ServerTrust(this.pkiDir);
  }

  /** Loads node-opcua and starts connecting; resolves at once, the connection comes when it can. */
  async start(): Promise<void> {
    this.stopped = false;
    this.ua = await loadOpcua(this.deps.log);
    this.running = this.run();
  }

  async poll(tickTs: number): Promise<Reading[]> {
    const online = this.online();
    const out: Reading[] = [];
    for (const p of this.points) {
      const changed = p.pending.length > 0;
      out.push(...p.pending);
      p.pending = [];
      if (!online || p.error !== null) out.push({ point: p.id, ts: tickTs, value: null, quality: "bad" });
      else if (!changed && p.latest) out.push({ point: p.id, ts: tickTs, value: p.latest.value, quality: p.latest.quality });
    }
    return out;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.teardown();
    await this.running;
    this.running = null;
  }

  health(): OpcuaSourceHealth {
    return {
      online: this.online(),
      endpoint: this.cfg.endpoint,
      lastError: this.lastError,
      reconnects: this.reconnects,
      certificate: this.certificate,
      badNodes: this.points.filter((p) => p.error !== null).map((p) => `${p.id} (${p.node}): ${p.error}`),
    };
  }

  /** The PLC as a device (no bus of ours: OPC UA runs over its own connection). */
  status(): SourceDetail {
    return { devices: [{ name: this.name, online: this.online(), lastError: this.lastError, lastOkTs: null, errors: {}, ...(this.points.some((p) => p.error) ? { excluded: this.health().badNodes } : {}) }], buses: [] };
  }

  /** Connected, and the subscription spoke (a change or a keep-alive) recently enough. */
  private online(): boolean {
    return this.connected && Date.now() - this.lastHeard <= this.staleAfterMs;
  }

  /** The subscription says something at least this often, even when nothing changes. */
  private keepAliveMs(): number {
    return this.cfg.interval * this.keepAliveCount();
  }

  private keepAliveCount(): number {
    return Math.max(1, Math.ceil(10_000 / this.cfg.interval));
  }

  /** Connects until it works (or the source stops); node-opcua keeps the connection afterwards. */
  private async run(): Promise<void> {
    let delay = this.cfg.reconnect.min;
    while (!this.stopped) {
      try {
        await this.connect();
        return;
      } catch (err) {
        await this.teardown();
        if (this.stopped) return;
        // node-opcua says only "verification failed": the refusal says which certificate and what to do.
        this.note(this.refusal?.reason ?? `${this.cfg.endpoint}: ${describeOpcuaError(err)}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = null;
        delay = Math.min(delay * 2, this.cfg.reconnect.max);
      }
    }
  }

  private async connect(): Promise<void> {
    this.refusal = null;
    const ua = this.ua!;
    const cfg = this.cfg;
    const security = cfg.security ?? { mode: "None" as const, policy: "None" as const };
    const client = ua.OPCUAClient.create({
      applicationName: "edge-agent",
      applicationUri: `urn:${hostname()}:edge-agent:client`,
      endpointMustExist: false,
      securityMode: ua.MessageSecurityMode[security.mode],
      securityPolicy: ua.SecurityPolicy[security.policy],
      clientCertificateManager: checkedBy(ua, clientCertificateManager(ua, this.pkiDir), (certificate) => this.verify(certificate)),
      // Retries forever, first connect included: a PLC that is not up yet is not an error.
      connectionStrategy: { maxRetry: -1, initialDelay: cfg.reconnect.min, maxDelay: cfg.reconnect.max },
      keepSessionAlive: true,
    });
    this.client = client;
    client.on("connection_lost", () => this.lost());
    client.on("connection_reestablished", () => this.restored());
    // node-opcua retries without saying why; status shows this meanwhile.
    client.on("backoff", () => {
      if (this.lastError === null) this.note(`${cfg.endpoint}: no connection yet, retrying`);
    });
    await client.connect(cfg.endpoint);
    if (this.stopped) return;
    const session = await client.createSession(identityFor(ua, cfg.username, cfg.password));
    this.session = session;
    if (!this.sessionTrusted()) throw new Error("server certificate refused");
    const subscription = await session.createSubscription2({
      requestedPublishingInterval: cfg.interval,
      requestedMaxKeepAliveCount: this.keepAliveCount(),
      requestedLifetimeCount: this.keepAliveCount() * 10,
      maxNotificationsPerPublish: 0,
      publishingEnabled: true,
      priority: 0,
    });
    // The server may revise the intervals: silence is judged by what it granted.
    this.staleAfterMs = 3 * Math.max(this.keepAliveMs(), subscription.publishingInterval * subscription.maxKeepAliveCount);
    subscription.on("keepalive", () => (this.lastHeard = Date.now()));
    for (const p of this.points) this.monitor(ua, subscription, p);
    this.connected = true;
    this.established = true;
    this.lastHeard = Date.now();
    this.lastError = null;
    this.deps.log.info({ source: this.name }, `${this.name}: connected to ${cfg.endpoint}, ${this.points.length} nodes subscribed`);
  }

  private monitor(ua: Opcua, subscription: ClientSubscription, p: PointState): void {
    try {
      const item = ua.ClientMonitoredItem.create(
        subscription,
        { nodeId: p.node, attributeId: ua.AttributeIds.Value },
        { samplingInterval: this.cfg.interval, queueSize: 10, discardOldest: true },
        ua.TimestampsToReturn.Both,
      );
      item.on("changed", (dv: DataValue) => this.changed(p, dv));
      item.on("err", (message: string) => this.refused(p, message));
    } catch (err) {
      this.refused(p, describeOpcuaError(err));
    }
  }

  private changed(p: PointState, dv: DataValue): void {
    // After a reconnection, a server with another certificate may publish before it is refused.
    if (!this.sessionTrusted()) return;
    const ua = this.ua!;
    this.lastHeard = Date.now();
    const quality = qualityOf(dv.statusCode);
    const value = valueOf(ua, dv.value);
    const ts = dv.sourceTimestamp?.getTime() ?? dv.serverTimestamp?.getTime() ?? Date.now();
    if (p.error !== null && quality !== "bad") {
      this.deps.log.info({ source: this.name, point: p.id }, `${p.id}: node ${p.node} answers again`);
      this.reported.delete(p.id);
      p.error = null;
    }
    p.latest = { value, quality };
    if (p.pending.length >= MAX_PENDING) p.pending.shift();
    p.pending.push({ point: p.id, ts, value, quality });
  }

  /** The server refused the node (unknown id, no access…): reported once, quality bad until it answers. */
  private refused(p: PointState, message: string): void {
    p.error = message;
    p.latest = null;
    if (this.reported.has(p.id)) return;
    this.reported.add(p.id);
    this.note(`${p.id}: node ${p.node} on ${this.cfg.endpoint}: ${message}`, p.id);
  }

  private lost(): void {
    if (!this.connected) return;
    this.connected = false;
    // Values from before the loss are not current: bad until fresh ones arrive.
    for (const p of this.points) p.latest = null;
    this.note(`${this.name}: connection to ${this.cfg.endpoint} lost; reconnecting`);
  }

  private restored(): void {
    if (!this.sessionTrusted()) return;
    this.connected = true;
    this.lastHeard = Date.now();
    this.reconnects++;
    this.lastError = null;
    this.deps.log.info({ source: this.name }, `${this.name}: reconnected to ${this.cfg.endpoint}`);
  }

  /**
   * May the endpoint present this certificate? Asked by node-opcua (through the certificate
   * manager) and for every session. A refusal on a live client starts over at the backoff.
   */
  private verify(certificate: Buffer): boolean {
    let leaf: Buffer;
    try {
      leaf = leafCertificate(certificate);
    } catch {
      leaf = certificate;
    }
    // node-opcua's reconnection asks again in a tight loop until the client is dropped.
    if (this.restarting && this.refusal?.leaf.equals(leaf)) return false;
    const verdict = this.trust.check(this.cfg.endpoint, certificate, this.cfg.trust);
    if (verdict.trusted) {
      const c = verdict.certificate;
      this.certificate = c.sha1;
      if (verdict.how === "first-use") {
        this.deps.log.info(
          { source: this.name, sha1: c.sha1, sha256: c.sha256, subject: c.subject },
          `${this.name}: first contact with ${this.cfg.endpoint}: its certificate is now pinned (SHA-1 ${c.sha1}, SHA-256 ${c.sha256}, ${c.subject}); compare the SHA-1 with the PLC's display. Kept in ${verdict.file}`,
        );
      } else if (verdict.how === "trusted-folder") {
        this.deps.log.info({ source: this.name, sha1: c.sha1, subject: c.subject }, `${this.name}: ${this.cfg.endpoint}: certificate SHA-1 ${c.sha1} (${c.subject}) found in trusted/certs/, now pinned`);
      }
      return true;
    }
    this.refusal = { leaf, reason: verdict.reason };
    this.note(verdict.reason);
    if (this.established) this.startOver();
    return false;
  }

  /** The session's server certificate passes (checked once per certificate node-opcua hands over). */
  private sessionTrusted(): boolean {
    const certificate = this.session?.serverCertificate;
    if (!this.session) return false;
    if (!certificate || certificate.length === 0) {
      // Over None a server may send none: nothing to pin (Sign and SignAndEncrypt always have one).
      if (!this.warnedNoCertificate) this.deps.log.warn({ source: this.name }, `${this.name}: ${this.cfg.endpoint} sends no certificate: a swapped PLC cannot be told apart`);
      this.warnedNoCertificate = true;
      return true;
    }
    if (this.checkedSession?.certificate !== certificate) this.checkedSession = { certificate, trusted: this.verify(certificate) };
    return this.checkedSession.trusted;
  }

  /** Drops a client whose server was refused (node-opcua would retry at once, forever) and connects again at the backoff. */
  private startOver(): void {
    if (this.restarting || this.stopped) return;
    this.restarting = true;
    this.connected = false;
    for (const p of this.points) p.latest = null;
    this.running = (async () => {
      await this.teardown();
      this.restarting = false;
      await this.run();
    })();
  }

  private note(message: string, point?: string): void {
    if (message !== this.lastError || point) this.deps.log.warn({ source: this.name, ...(point ? { point } : {}) }, message);
    this.lastError = message;
  }

  private async teardown(): Promise<void> {
    const { session, client } = this;
    this.session = null;
    this.client = null;
    this.connected = false;
    this.established = false;
    this.checkedSession = null;
    const within = (p: Promise<unknown>) =>
      Promise.race([p.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, CLOSE_TIMEOUT_MS).unref())]);
    if (session) await within(session.close());
    if (client) await within(client.disconnect());
  }
}

/** The agent's factory for `type: opcua` (SourceModule). */
export function create(src: OpcuaSourceConfig, deps: SourceDeps): Source[] {
  return [new OpcuaSource(src, { log: deps.log, storePath: deps.storePath })];
}
