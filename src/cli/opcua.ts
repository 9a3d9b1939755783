/**
 * `edge-agent opcua browse URL`: what an OPC UA server (a PLC, a BMS, or the gateway's own)
 * shows, as a tree of node ids, browse names and node classes, with the value and data type of
 * each variable. Exit codes: 2 for a bad URL or flag, 1 when the server cannot be reached,
 * refuses the session, does not know the node, or presents a certificate that is refused.
 *
 * `edge-agent opcua trust URL`: fetches the server's certificate, shows its thumbprints and pins
 * it for that URL (after a question, `--yes`, or a matching `--thumbprint`): how a changed
 * certificate is accepted on purpose, in this tool's PKI or the agent's (`--pki`).
 */
import { homedir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline/promises";
import type { Command } from "commander";
import type { ClientSession, NodeId, OPCUAClient, ReferenceDescription } from "node-opcua";
import { UserError } from "../model/errors.js";
import { identityFor, OPCUA_ENDPOINT, OPCUA_POLICIES, type OpcuaPolicy } from "../opcua/endpoint.js";
import { loadOpcua, type Opcua } from "../opcua/load.js";
import {
  type CertificateInfo,
  checkedBy,
  clientCertificateManager,
  describeCertificate,
  leafCertificate,
  normalizeThumbprint,
  type Pin,
  ServerTrust,
  TRUST_MODES,
  type TrustMode,
  type Verdict,
} from "../opcua/trust.js";
import { plainValue } from "../opcua/values.js";
import { describeOpcuaError } from "../sources/opcua/source.js";
import { printJson, table } from "./output.js";
import { parseDurationFlag } from "./tail.js";

/** A browse stops here, so a large server cannot flood the terminal. */
const MAX_NODES = 2000;

export interface BrowseFlags {
  node?: string;
  depth?: string;
  username?: string;
  password?: string;
  security?: string;
  pki?: string;
  trust?: string;
  timeout?: string;
  json?: boolean;
}

export interface BrowsedNode {
  nodeId: string;
  browseName: string;
  displayName: string;
  nodeClass: string;
  /** Variables only. */
  dataType?: string;
  value?: unknown;
  /** Variables only, when the value is not Good. */
  status?: string;
  children?: BrowsedNode[];
  /** Children left out: the depth or the node budget was reached. */
  more?: boolean;
}

export interface BrowseOutput {
  url: string;
  security: string;
  /** The server's certificate, and whether this browse pinned it (first contact) or found it pinned. */
  certificate: (CertificateInfo & { pinned: "already" | "first-use" | "trusted-folder"; file: string }) | null;
  root: BrowsedNode;
  nodes: number;
  truncated: boolean;
}

/** Where the CLI keeps its client certificate (a server trusts it once). */
export function defaultCliPki(): string {
  return join(process.env.XDG_CONFIG_HOME ?? join(homedir(), ".config"), "edge-agent", "opcua-pki");
}

function parseUrl(url: string): string {
  if (!OPCUA_ENDPOINT.test(url)) {
    throw new UserError(`expected an endpoint URL like opc.tcp://plc-1:4840, got '${url}'`);
  }
  return url;
}

function parseOptions(url: string, flags: BrowseFlags) {
  const depth = flags.depth === undefined ? 2 : /^\d+$/.test(flags.depth) ? Number(flags.depth) : Number.NaN;
  if (!Number.isInteger(depth) || depth > 10) throw new UserError(`--depth: expected 0–10, got '${flags.depth}'`);
  const security = flags.security ?? "auto";
  if (security !== "auto" && !(OPCUA_POLICIES as readonly string[]).includes(security)) {
    throw new UserError(`--security: expected auto, ${OPCUA_POLICIES.join(", ")}; got '${security}'`);
  }
  if ((flags.username === undefined) !== (flags.password === undefined)) throw new UserError("--username and --password go together");
  const timeout = flags.timeout === undefined ? 10_000 : parseDurationFlag("--timeout", flags.timeout);
  return { url: parseUrl(url), depth, security: security as OpcuaPolicy | "auto", timeout, pki: flags.pki ?? defaultCliPki(), trust: parseTrust(flags.trust) };
}

function parseTrust(text: string | undefined): TrustMode {
  if (text === undefined) return "first-use";
  if (!(TRUST_MODES as readonly string[]).includes(text)) throw new UserError(`--trust: expected ${TRUST_MODES.join(" or ")}, got '${text}'`);
  return text as TrustMode;
}

/**
 * The browse's side of opcua/trust.ts: node-opcua asks it about the server's certificate at a
 * secure connect, the session's certificate is checked before anything is browsed (None too).
 */
class ServerCheck {
  /** Why the certificate was refused, for the error. */
  refusal: string | null = null;
  accepted: Extract<Verdict, { trusted: true }> | null = null;
  private readonly trust: ServerTrust;

  constructor(
    private readonly url: string,
    pki: string,
    private readonly mode: TrustMode,
  ) {
    this.trust = new ServerTrust(pki);
  }

  verify(certificate: Buffer): boolean {
    const verdict = this.trust.check(this.url, certificate, this.mode);
    if (!verdict.trusted) {
      this.refusal = verdict.reason;
      return false;
    }
    // The first verdict tells whether this browse pinned it; the later ones say "already".
    this.accepted ??= verdict;
    return true;
  }
}

function resolveNode(ua: Opcua, text: string | undefined): NodeId {
  if (text === undefined) return ua.resolveNodeId("ObjectsFolder");
  try {
    return ua.resolveNodeId(text);
  } catch {
    throw new UserError(`--node: expected a node id like ns=2;s=FlowTemp or i=85, got '${text}'`);
  }
}

/** Connects with the given security, or (auto) without if the server allows it, else with its best policy. */
async function connect(
  ua: Opcua,
  opts: ReturnType<typeof parseOptions>,
  check: ServerCheck,
  track: (c: OPCUAClient) => void,
): Promise<{ client: OPCUAClient; security: string }> {
  const cm = clientCertificateManager(ua, opts.pki);
  const open = async (policy: OpcuaPolicy) => {
    const client = ua.OPCUAClient.create({
      applicationName: "edge-agent-cli",
      endpointMustExist: false,
      securityMode: policy === "None" ? ua.MessageSecurityMode.None : ua.MessageSecurityMode.SignAndEncrypt,
      securityPolicy: ua.SecurityPolicy[policy],
      clientCertificateManager: checkedBy(ua, cm, (certificate) => check.verify(certificate)),
      connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 100 },
    });
    track(client);
    try {
      await client.connect(opts.url);
    } catch (err) {
      if (check.refusal) throw new UserError(check.refusal, 1);
      const why = describeOpcuaError(err);
      if (/BadSecurityChecksFailed|BadCertificate/.test(why)) {
        throw new UserError(
          `${opts.url}: the server does not trust this client's certificate (${join(cm.rootDir, "own/certs/client_certificate.pem")}) [${why}]; on an edge-agent gateway, move it from <pki>/rejected/ to <pki>/trusted/certs/`,
          1,
        );
      }
      throw new UserError(`cannot reach ${opts.url}: ${why}`, 1);
    }
    return client;
  };
  if (opts.security !== "auto") return { client: await open(opts.security), security: opts.security };
  const client = await open("None");
  const endpoints = await client.getEndpoints();
  if (endpoints.some((e) => e.securityMode === ua.MessageSecurityMode.None)) return { client, security: "None" };
  const best = endpoints
    .filter((e) => e.securityMode === ua.MessageSecurityMode.SignAndEncrypt)
    .map((e) => ({ e, policy: OPCUA_POLICIES.find((p) => ua.SecurityPolicy[p] === e.securityPolicyUri) }))
    .filter((x) => x.policy !== undefined)
    .sort((a, b) => b.e.securityLevel - a.e.securityLevel)[0];
  await client.disconnect();
  if (!best) throw new UserError(`${opts.url}: the server offers no security policy edge-agent speaks (${OPCUA_POLICIES.join(", ")})`, 1);
  return { client: await open(best.policy!), security: best.policy! };
}

async function createSession(ua: Opcua, client: OPCUAClient, url: string, flags: BrowseFlags, check: ServerCheck): Promise<ClientSession> {
  const identity = identityFor(ua, flags.username, flags.password);
  let session: ClientSession;
  try {
    session = await client.createSession(identity);
  } catch (err) {
    const why = describeOpcuaError(err);
    const hint = flags.username === undefined ? " (try --username and --password)" : "";
    throw new UserError(`${url}: the server refused the session${flags.username !== undefined ? ` for user '${flags.username}'` : ""}: ${why}${hint}`, 1);
  }
  // Over None nothing checked the server yet: its certificate comes with the session.
  const certificate = session.serverCertificate;
  if (certificate && certificate.length > 0 && !check.verify(certificate)) {
    await session.close().catch(() => undefined);
    throw new UserError(check.refusal!, 1);
  }
  return session;
}

class Browser {
  count = 0;
  truncated = false;
  private readonly typeNames = new Map<string, string>();

  constructor(
    private readonly ua: Opcua,
    private readonly session: ClientSession,
  ) {}

  async root(nodeId: NodeId, depth: number): Promise<BrowsedNode> {
    const ua = this.ua;
    const [cls, bn, dn] = await this.session.read([
      { nodeId, attributeId: ua.AttributeIds.NodeClass },
      { nodeId, attributeId: ua.AttributeIds.BrowseName },
      { nodeId, attributeId: ua.AttributeIds.DisplayName },
    ]);
    if (!cls!.statusCode.isGood()) throw new UserError(`no node ${nodeId.toString()} on the server: ${cls!.statusCode.name}`, 1);
    const node: BrowsedNode = {
      nodeId: nodeId.toString(),
      browseName: String(bn!.value.value),
      displayName: (dn!.value.value as { text?: string } | null)?.text ?? "",
      nodeClass: ua.NodeClass[cls!.value.value as number] ?? String(cls!.value.value),
    };
    this.count = 1;
    if (node.nodeClass === "Variable") await this.describeVariables([node]);
    await this.expand(node, depth);
    return node;
  }

  private async expand(node: BrowsedNode, depth: number): Promise<void> {
    if (depth <= 0) {
      node.more = (await this.references(node.nodeId)).length > 0 || undefined;
      if (!node.more) delete node.more;
      return;
    }
    const refs = await this.references(node.nodeId);
    const children: BrowsedNode[] = [];
    for (const r of refs) {
      if (this.count >= MAX_NODES) {
        this.truncated = true;
        node.more = true;
        break;
      }
      this.count++;
      children.push({
        nodeId: r.nodeId.toString(),
        browseName: r.browseName.toString(),
        displayName: r.displayName.text ?? "",
        nodeClass: this.ua.NodeClass[r.nodeClass] ?? String(r.nodeClass),
      });
    }
    await this.describeVariables(children.filter((c) => c.nodeClass === "Variable"));
    node.children = children;
    for (const c of children) await this.expand(c, depth - 1);
  }

  /** Forward hierarchical references (Organizes, HasComponent, HasProperty…), all pages. */
  private async references(nodeId: string): Promise<ReferenceDescription[]> {
    const ua = this.ua;
    let result = await this.session.browse({
      nodeId,
      referenceTypeId: "HierarchicalReferences",
      includeSubtypes: true,
      browseDirection: ua.BrowseDirection.Forward,
      nodeClassMask: 0,
      resultMask: 0x3f,
    });
    const refs = [...(result.references ?? [])];
    while (result.continuationPoint && result.continuationPoint.length > 0 && refs.length < MAX_NODES) {
      result = await this.session.browseNext(result.continuationPoint, false);
      refs.push(...(result.references ?? []));
    }
    return refs;
  }

  private async describeVariables(vars: BrowsedNode[]): Promise<void> {
    if (vars.length === 0) return;
    const ua = this.ua;
    const values = await this.session.read(vars.flatMap((v) => [
      { nodeId: v.nodeId, attributeId: ua.AttributeIds.Value },
      { nodeId: v.nodeId, attributeId: ua.AttributeIds.DataType },
    ]));
    for (const [i, v] of vars.entries()) {
      const value = values[2 * i]!;
      const type = values[2 * i + 1]!;
      v.value = plainValue(ua, value.value);
      if (!value.statusCode.isGood()) v.status = value.statusCode.name;
      const typeId = type.value.value as NodeId | null;
      const array = value.value.arrayType !== ua.VariantArrayType.Scalar ? "[]" : "";
      if (typeId) v.dataType = `${await this.typeName(typeId)}${array}`;
    }
  }

  private async typeName(id: NodeId): Promise<string> {
    const key = id.toString();
    let name = this.typeNames.get(key);
    if (name === undefined) {
      const dv = await this.session.read({ nodeId: id, attributeId: this.ua.AttributeIds.BrowseName });
      name = dv.statusCode.isGood() ? String((dv.value.value as { name?: string }).name ?? key) : key;
      this.typeNames.set(key, name);
    }
    return name;
  }
}

export async function opcuaBrowse(url: string, flags: BrowseFlags): Promise<BrowseOutput> {
  const opts = parseOptions(url, flags);
  const ua = await loadOpcua(null);
  const nodeId = resolveNode(ua, flags.node);
  const clients: OPCUAClient[] = [];
  let timer: NodeJS.Timeout | undefined;
  const check = new ServerCheck(opts.url, opts.pki, opts.trust);
  const work = (async () => {
    const { client, security } = await connect(ua, opts, check, (c) => clients.push(c));
    const session = await createSession(ua, client, opts.url, flags, check);
    try {
      const browser = new Browser(ua, session);
      const root = await browser.root(nodeId, opts.depth);
      const a = check.accepted;
      const certificate = a ? { ...a.certificate, pinned: a.how, file: a.file } : null;
      return { url: opts.url, security, certificate, root, nodes: browser.count, truncated: browser.truncated };
    } finally {
      await session.close().catch(() => undefined);
    }
  })();
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new UserError(`${opts.url}: no answer within ${opts.timeout / 1000} s`, 1)), opts.timeout);
  });
  try {
    return await Promise.race([work, timeout]);
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`${opts.url}: ${describeOpcuaError(err)}`, 1);
  } finally {
    clearTimeout(timer);
    work.catch(() => undefined);
    for (const c of clients) await c.disconnect().catch(() => undefined);
  }
}

export interface TrustFlags {
  pki?: string;
  thumbprint?: string;
  yes?: boolean;
  timeout?: string;
  json?: boolean;
}

/** The server's certificate, and what is pinned for its URL now. */
export interface TrustFound {
  url: string;
  pki: string;
  certificate: CertificateInfo;
  previous: Pin | null;
}

export interface TrustOutput extends TrustFound {
  /** `pinned`: pinned now (replacing `previous`, if any); `unchanged`: this certificate was pinned already. */
  result: "pinned" | "unchanged";
  /** Who said yes: the question, --yes, or a matching --thumbprint. */
  confirmedBy: "question" | "yes" | "thumbprint" | null;
  /** Where the certificate is kept (the PKI's trusted/certs/). */
  file: string;
}

const THUMBPRINT = /^[0-9A-F]{2}(:[0-9A-F]{2}){19}$|^[0-9A-F]{2}(:[0-9A-F]{2}){31}$/;

/** The certificate the server shows at `url`: GetEndpoints over an unsecured channel, no session (the one of its best policy, should they differ). */
async function fetchCertificate(ua: Opcua, url: string, pki: string, timeoutMs: number): Promise<Buffer> {
  const client = ua.OPCUAClient.create({
    applicationName: "edge-agent-cli",
    endpointMustExist: false,
    securityMode: ua.MessageSecurityMode.None,
    securityPolicy: ua.SecurityPolicy.None,
    clientCertificateManager: clientCertificateManager(ua, pki),
    connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 100 },
  });
  let timer: NodeJS.Timeout | undefined;
  const work = (async () => {
    try {
      await client.connect(url);
    } catch (err) {
      throw new UserError(`cannot reach ${url}: ${describeOpcuaError(err)}`, 1);
    }
    const endpoints = await client.getEndpoints();
    const best = endpoints.filter((e) => e.serverCertificate && e.serverCertificate.length > 0).sort((a, b) => b.securityLevel - a.securityLevel)[0];
    if (!best) throw new UserError(`${url}: the server shows no certificate`, 1);
    return leafCertificate(best.serverCertificate);
  })();
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new UserError(`${url}: no answer within ${timeoutMs / 1000} s`, 1)), timeoutMs);
  });
  try {
    return await Promise.race([work, timeout]);
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`${url}: ${describeOpcuaError(err)}`, 1);
  } finally {
    clearTimeout(timer);
    work.catch(() => undefined);
    await client.disconnect().catch(() => undefined);
  }
}

/**
 * Pins the certificate the server at `url` shows now, for that URL, in the PKI `flags.pki`: after
 * `confirm` said yes, or with --yes, or when it matches --thumbprint. Nothing is asked when that
 * certificate is pinned already.
 */
export async function opcuaTrust(url: string, flags: TrustFlags, confirm: (found: TrustFound) => Promise<boolean>): Promise<TrustOutput> {
  const target = parseUrl(url);
  const pki = flags.pki ?? defaultCliPki();
  const timeout = flags.timeout === undefined ? 10_000 : parseDurationFlag("--timeout", flags.timeout);
  const expected = flags.thumbprint === undefined ? undefined : normalizeThumbprint(flags.thumbprint);
  if (expected !== undefined && !THUMBPRINT.test(expected)) {
    throw new UserError(`--thumbprint: expected the SHA-1 (40 hex digits) or SHA-256 (64) the server's display shows, got '${flags.thumbprint}'`);
  }
  const trust = new ServerTrust(pki);
  let previous: Pin | null;
  try {
    previous = trust.pinned(target);
  } catch (err) {
    throw new UserError((err as Error).message, 1);
  }
  const ua = await loadOpcua(null);
  const der = await fetchCertificate(ua, target, pki, timeout);
  const found: TrustFound = { url: target, pki, certificate: describeCertificate(der), previous };
  const { sha1, sha256 } = found.certificate;
  let confirmedBy: TrustOutput["confirmedBy"] = null;
  if (previous?.sha256 !== sha256) {
    if (expected !== undefined) {
      if (expected !== sha1 && expected !== sha256) throw new UserError(`${target} shows SHA-1 ${sha1} (SHA-256 ${sha256}), not ${expected}: nothing pinned`, 1);
      confirmedBy = "thumbprint";
    } else if (flags.yes) {
      confirmedBy = "yes";
    } else if (await confirm(found)) {
      confirmedBy = "question";
    } else {
      throw new UserError("nothing pinned", 1);
    }
  }
  const pinned = trust.pin(target, der);
  return { ...found, result: pinned.changed ? "pinned" : "unchanged", confirmedBy, file: pinned.file };
}

export function formatCertificate(found: TrustFound): string {
  const c = found.certificate;
  const now = Date.now();
  const validity = now > Date.parse(c.validTo) ? "  (EXPIRED)" : now < Date.parse(c.validFrom) ? "  (not valid yet)" : "";
  const before = found.previous
    ? found.previous.sha256 === c.sha256
      ? "this certificate"
      : `another certificate: SHA-1 ${found.previous.sha1}${found.previous.subject ? ` (${found.previous.subject})` : ""}`
    : "nothing yet";
  return [
    `${found.url} shows this certificate:`,
    table([
      ["  subject", c.subject],
      ["  SHA-1", c.sha1],
      ["  SHA-256", c.sha256],
      ["  valid", `${c.validFrom.slice(0, 10)} to ${c.validTo.slice(0, 10)}${validity}`],
      ["  pinned", before],
    ]),
  ].join("\n");
}

export function formatTrust(out: TrustOutput): string {
  const done =
    out.result === "unchanged"
      ? `already pinned for ${out.url} in ${out.pki}: nothing changed`
      : `pinned for ${out.url} in ${out.pki} (${out.file}); an agent using this PKI takes it at its next connection attempt`;
  return out.confirmedBy === "question" ? done : `${formatCertificate(out)}\n${done}`;
}

/** Shows the certificate (stderr: stdout may carry --json) and asks; without a terminal, says how to confirm. */
async function askToPin(found: TrustFound): Promise<boolean> {
  process.stderr.write(`${formatCertificate(found)}\n`);
  if (!process.stdin.isTTY) {
    throw new UserError("nothing pinned: compare the SHA-1 with the server's display, then run again with --yes or --thumbprint <SHA-1> (no terminal to ask on)");
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(`Compare the SHA-1 with the server's display. Pin it for ${found.url}? [y/N] `)).trim());
  } finally {
    rl.close();
  }
}

/** Values in the tree stay on one line. */
const MAX_SHOWN = 120;

function shown(value: unknown): string {
  if (value === null || value === undefined) return "(null)";
  const text = JSON.stringify(value);
  return text.length > MAX_SHOWN ? `${text.slice(0, MAX_SHOWN)}…` : text;
}

function line(n: BrowsedNode): string {
  const variable = n.nodeClass === "Variable" ? `  ${n.dataType ?? "?"} = ${shown(n.value)}` : "";
  return `${n.browseName}  ${n.nodeClass}  ${n.nodeId}${variable}${n.status ? `  [${n.status}]` : ""}${n.more ? "  …" : ""}`;
}

export function formatTree(out: BrowseOutput): string {
  const lines = [`${out.url} (security ${out.security})`, line(out.root)];
  const walk = (n: BrowsedNode, indent: string) => {
    const children = n.children ?? [];
    children.forEach((c, i) => {
      const last = i === children.length - 1;
      lines.push(`${indent}${last ? "└─ " : "├─ "}${line(c)}`);
      walk(c, `${indent}${last ? "   " : "│  "}`);
    });
  };
  walk(out.root, "");
  if (out.truncated) lines.push(`(stopped after ${out.nodes} nodes: browse a deeper node with --node)`);
  return lines.join("\n");
}

export function registerOpcua(program: Command): void {
  const opcua = program
    .command("opcua")
    .description("check an OPC UA server (a PLC, a BMS, or this gateway's own) and pin its certificate")
    .addHelpText(
      "after",
      `
Examples:
  edge-agent opcua browse opc.tcp://192.168.1.50:4840              the Objects folder, two levels
  edge-agent opcua browse opc.tcp://plc-1:4840 --node "ns=2;s=Line1" --depth 1
  edge-agent opcua browse opc.tcp://127.0.0.1:4840 --username ops --password '…'
  edge-agent opcua trust opc.tcp://192.168.1.50:4840               show the PLC's certificate, pin it

The server's certificate: the first contact pins it to that URL in the PKI (like SSH's
known_hosts), and a different certificate at the same URL later is refused. When the change is
expected (PLC replaced, certificate renewed), compare the new SHA-1 with the PLC's display and
pin it with 'opcua trust'; for the agent's opcua sources, in the agent's PKI, as its user:
  sudo -u edge-agent edge-agent opcua trust opc.tcp://192.168.1.50:4840 --pki /var/lib/edge-agent/opcua-client-pki

A server that refuses this tool's certificate keeps it in its rejected certificates; on an
edge-agent gateway, move it from <pki>/rejected/ to <pki>/trusted/certs/.`,
    );

  opcua
    .command("browse")
    .description("print the node tree under a node, with values and data types of the variables")
    .argument("<url>", "endpoint, e.g. opc.tcp://192.168.1.50:4840")
    .option("--node <id>", "where to start (default: the Objects folder, i=85)")
    .option("--depth <n>", "levels below the start node, 0–10", "2")
    .option("--username <name>", "log in as this user (default: anonymous)")
    .option("--password <password>", "the user's password")
    .option("--security <policy>", `auto (None if offered, else the best policy), ${OPCUA_POLICIES.join(", ")}`, "auto")
    .option("--pki <dir>", "this tool's certificate and the servers' pinned certificates", defaultCliPki())
    .option("--trust <mode>", "first-use: pin an unknown server's certificate; explicit: refuse it unless in <pki>/trusted/certs/", "first-use")
    .option("--timeout <duration>", "give up after this long", "10s")
    .option("--json", "print as JSON")
    .action(async (url: string, flags: BrowseFlags) => {
      const out = await opcuaBrowse(url, flags);
      const c = out.certificate;
      if (c && c.pinned !== "already") {
        process.stderr.write(`first contact with ${out.url}: its certificate is now pinned (SHA-1 ${c.sha1}, SHA-256 ${c.sha256}, ${c.subject}); compare the SHA-1 with the server's display\n`);
      }
      if (flags.json) printJson(out);
      else process.stdout.write(`${formatTree(out)}\n`);
    });

  opcua
    .command("trust")
    .description("fetch a server's certificate, show its thumbprints and pin it for that URL (a changed certificate, on purpose)")
    .argument("<url>", "endpoint, e.g. opc.tcp://192.168.1.50:4840")
    .option("--pki <dir>", "where to pin: this tool's PKI, or the agent's (/var/lib/edge-agent/opcua-client-pki)", defaultCliPki())
    .option("--thumbprint <sha1>", "pin only if the server shows this SHA-1 (or SHA-256), as read on its display; no question")
    .option("-y, --yes", "pin without asking")
    .option("--timeout <duration>", "give up after this long", "10s")
    .option("--json", "print as JSON")
    .action(async (url: string, flags: TrustFlags) => {
      const out = await opcuaTrust(url, flags, askToPin);
      if (flags.json) printJson(out);
      else process.stdout.write(`${formatTrust(out)}\n`);
    });
}
