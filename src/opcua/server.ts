/**
 * The OPC UA server part: the gateway as a BMS or SCADA sees it.
 *
 *   Objects/Devices/<device>/<point>      one variable per point, node id ns=1;s=<point id>
 *   Objects/Actuators/<actuator>/<action> one method per action (absent when read_only)
 *
 * Variables appear as readings arrive (`update`), typed by their first value (Double, Boolean,
 * String), with the reading's quality as status code and its timestamp as source timestamp,
 * and with engineering units (AnalogUnitType) when the point's unit is known. They are never
 * writable: they mirror measurements.
 *
 * A method takes one String argument `args` (a JSON object, empty = {}) and returns the command
 * result as JSON. It goes through the agent's CommandRouter, so validation, limits, one command
 * at a time per actuator and the results stream are those of MQTT commands. Status codes:
 * ok → Good; rejected (bad arguments, a limit) → BadInvalidArgument; error (the actuator
 * failed) → BadDeviceFailure; always with the result JSON, whose `reason` says why. A
 * SCADA that only looks at the status code therefore never takes a refused command for done.
 * Methods need an identified user: an anonymous session gets BadUserAccessDenied.
 *
 * Security: the policies of the config (modern ones by default, None only when listed), each
 * with Sign and SignAndEncrypt; users by name and password, anonymous only when allowed. The
 * server's certificate is created in the PKI directory on the first start and kept. A client
 * certificate the server does not know is refused and stored in <pki>/rejected/; moving that
 * file to <pki>/trusted/certs/ lets the client in (no restart needed).
 *
 * node-opcua is loaded in start(), never before: an agent without `opcua.server` pays nothing.
 */
import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import { hostname } from "node:os";
import type { CallMethodResultOptions, ISessionContext, Namespace, OPCUAServer, UAObject, UAVariable, Variant } from "node-opcua";
import { z } from "zod";
import type { OpcuaServerConfig } from "../config/schema.js";
import type { Actuator, CommandResult } from "../control/commands.js";
import type { Reading } from "../model/reading.js";
import type { Logger } from "../model/logger.js";
import { defaultPkiDir, loadOpcua, type Opcua } from "./load.js";
import { serverCertificateManager } from "./server-trust.js";
import { euInformation } from "./units.js";

/** The command path: exactly the one MQTT commands take. */
export interface CommandPath {
  handle(target: string, payload: string, origin: "local"): Promise<CommandResult>;
}

export interface OpcuaServerDeps {
  config: OpcuaServerConfig;
  /** Where the outbox lives: the PKI directory defaults to opcua-pki next to it. */
  storePath: string;
  router: CommandPath;
  actuators: readonly Actuator[];
  /** The engineering unit of a point (`V`, `kWh`, `°C`…), when known. */
  unitOf?: (point: string) => string | undefined;
  log: Logger;
  /** Names the application (and its URI, which the certificate carries): keep it stable. */
  gateway?: string;
  version?: string;
}

export interface OpcuaServerAddress {
  host: string;
  port: number;
  /** `opc.tcp://<host>:<port>` as clients reach it (the bound port, also when configured as 0). */
  url: string;
  pkiDir: string;
}

type Kind = "number" | "boolean" | "string" | "any";

interface PointNode {
  node: UAVariable;
  kind: Kind;
}

function kindOf(value: Reading["value"]): Kind {
  if (typeof value === "number") return "number";
  if (typeof value === "boolean") return "boolean";
  if (typeof value === "string") return "string";
  return "any";
}

/** What the `args` argument takes, for the method's description. */
function describeArgs(schema: z.ZodType): string {
  try {
    const { $schema: _ignored, ...json } = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
    return `Arguments as a JSON object matching ${JSON.stringify(json)}`;
  } catch {
    return "Arguments as a JSON object";
  }
}

export class OpcuaServerPart {
  private ua: Opcua | null = null;
  private server: OPCUAServer | null = null;
  private namespace: Namespace | null = null;
  private devices: UAObject | null = null;
  private readonly folders = new Map<string, UAObject>();
  private readonly variables = new Map<string, PointNode>();
  /** Points whose variable could not be made: warned about once. */
  private readonly failed = new Set<string>();
  private readonly log: Logger;
  /** Where clients reach the server, once started. */
  address: OpcuaServerAddress | null = null;

  constructor(private readonly deps: OpcuaServerDeps) {
    this.log = deps.log.child({ part: "opcua" });
  }

  async start(): Promise<OpcuaServerAddress> {
    const cfg = this.deps.config;
    const ua = await loadOpcua(this.deps.log);
    this.ua = ua;
    const pkiDir = cfg.pki_dir ?? defaultPkiDir(this.deps.storePath, "server");
    const policies = cfg.security.map((p) => ua.SecurityPolicy[p]);
    const secure = cfg.security.some((p) => p !== "None");
    const modes = [
      ...(cfg.security.includes("None") ? [ua.MessageSecurityMode.None] : []),
      ...(secure ? [ua.MessageSecurityMode.Sign, ua.MessageSecurityMode.SignAndEncrypt] : []),
    ];
    // Compared as digests in constant time: the answer's timing tells nothing about a password.
    const digest = (text: string) => createHash("sha256").update(text).digest();
    const users = new Map(cfg.users.map((u) => [u.username, digest(u.password)]));
    const wildcard = cfg.host === "0.0.0.0" || cfg.host === "::";
    const server = new ua.OPCUAServer({
      host: cfg.host,
      port: cfg.port,
      // The name put in endpoint URLs: the bound address, or the machine's name on all interfaces.
      ...(wildcard ? {} : { hostname: cfg.host }),
      serverCertificateManager: serverCertificateManager(ua, pkiDir),
      securityPolicies: policies,
      securityModes: modes,
      allowAnonymous: cfg.allow_anonymous,
      userManager: {
        isValidUser: (username: string, password: string) => {
          const want = users.get(username);
          return want !== undefined && timingSafeEqual(want, digest(password));
        },
      },
      serverInfo: {
        // Stable across host renames: the certificate in the PKI dir carries this URI.
        applicationUri: `urn:edge-agent:${this.deps.gateway ?? hostname()}`,
        productUri: "urn:edge-agent",
        applicationName: { text: `edge-agent${this.deps.gateway ? ` ${this.deps.gateway}` : ""}` },
      },
      buildInfo: { productName: "edge-agent", manufacturerName: "edge-agent", softwareVersion: this.deps.version ?? "0" },
      isAuditing: false,
    });
    await server.initialize();
    const addressSpace = server.engine.addressSpace!;
    const ns = addressSpace.getOwnNamespace();
    this.namespace = ns;
    // Structural node ids contain ':', which no device or point name may: they cannot collide.
    this.devices = ns.addFolder(addressSpace.rootFolder.objects, { browseName: "Devices", nodeId: "s=edge-agent:Devices" });
    if (!cfg.read_only) this.addActuators(ua, ns, addressSpace.rootFolder.objects);
    try {
      await server.start();
    } catch (err) {
      await server.shutdown(0).catch(() => undefined);
      throw new Error(`OPC UA server on ${cfg.host}:${cfg.port}: ${(err as Error).message}`);
    }
    this.server = server;
    const port = server.endpoints[0]?.port ?? cfg.port;
    const shown = wildcard ? hostname() : cfg.host.includes(":") ? `[${cfg.host}]` : cfg.host;
    this.address = { host: cfg.host, port, url: `opc.tcp://${shown}:${port}`, pkiDir };
    this.log.info(
      { url: this.address.url, pki: pkiDir, security: cfg.security, anonymous: cfg.allow_anonymous, users: cfg.users.length, readOnly: cfg.read_only },
      `OPC UA server on ${this.address.url}`,
    );
    return this.address;
  }

  /** Mirrors readings into their variables (created on first sight). Never throws. */
  update(readings: readonly Reading[]): void {
    if (!this.server || !this.ua) return;
    for (const r of readings) {
      try {
        this.set(this.ua, r);
      } catch (err) {
        if (!this.failed.has(r.point)) this.log.warn({ point: r.point, err: (err as Error).message }, "could not update an OPC UA variable");
        this.failed.add(r.point);
      }
    }
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.folders.clear();
    this.variables.clear();
    if (server) await server.shutdown(0);
  }

  private set(ua: Opcua, r: Reading): void {
    const entry = this.variables.get(r.point) ?? this.addVariable(ua, r);
    const status = r.quality === "good" ? ua.StatusCodes.Good : r.quality === "uncertain" ? ua.StatusCodes.Uncertain : ua.StatusCodes.Bad;
    const kind = kindOf(r.value);
    let variant: Variant;
    if (r.value === null) variant = new ua.Variant({ dataType: ua.DataType.Null });
    else if (entry.kind !== "any" && kind !== entry.kind) {
      // A point that changed its type keeps its variable's: the value is withheld, and said so.
      entry.node.setValueFromSource(new ua.Variant({ dataType: ua.DataType.Null }), ua.StatusCodes.BadTypeMismatch, new Date(r.ts));
      return;
    } else if (kind === "number") variant = new ua.Variant({ dataType: ua.DataType.Double, value: r.value });
    else if (kind === "boolean") variant = new ua.Variant({ dataType: ua.DataType.Boolean, value: r.value });
    else variant = new ua.Variant({ dataType: ua.DataType.String, value: r.value });
    entry.node.setValueFromSource(variant, status, new Date(r.ts));
  }

  private addVariable(ua: Opcua, r: Reading): PointNode {
    const ns = this.namespace!;
    // `<device>/<point>`; a point id without a device (none today) sits in Devices itself.
    const slash = r.point.indexOf("/");
    const device = slash > 0 ? r.point.slice(0, slash) : null;
    const name = slash > 0 ? r.point.slice(slash + 1) : r.point;
    let folder = device === null ? this.devices! : this.folders.get(device);
    if (!folder) {
      folder = ns.addFolder(this.devices!, { browseName: device!, nodeId: `s=${device}` });
      this.folders.set(device!, folder);
    }
    // A point first seen without a value gets the type of whatever comes (BaseDataType).
    const kind = kindOf(r.value);
    const dataType = { number: "Double", boolean: "Boolean", string: "String", any: "BaseDataType" }[kind];
    const unit = kind === "number" ? this.deps.unitOf?.(r.point) : undefined;
    let node: UAVariable;
    if (unit) {
      node = ns.addressSpace.findVariableType("AnalogUnitType")!.instantiate({ browseName: name, nodeId: `s=${r.point}`, organizedBy: folder, dataType });
      node.getPropertyByName("EngineeringUnits")?.setValueFromSource({ dataType: ua.DataType.ExtensionObject, value: euInformation(ua, unit) });
    } else {
      node = ns.addVariable({ browseName: name, nodeId: `s=${r.point}`, organizedBy: folder, dataType });
    }
    // Measurements: readable, never writable (the type's default would allow writes).
    node.accessLevel = ua.AccessLevelFlag.CurrentRead;
    node.userAccessLevel = ua.AccessLevelFlag.CurrentRead;
    const entry = { node, kind };
    this.variables.set(r.point, entry);
    return entry;
  }

  private addActuators(ua: Opcua, ns: Namespace, objects: UAObject): void {
    const folder = ns.addFolder(objects, { browseName: "Actuators", nodeId: "s=edge-agent:Actuators" });
    for (const actuator of this.deps.actuators) {
      const object = ns.addObject({ browseName: actuator.name, nodeId: `s=actuator:${actuator.name}`, organizedBy: folder, description: `${actuator.kind} ${actuator.name}` });
      for (const [action, schema] of actuator.actions) {
        const method = ns.addMethod(object, {
          browseName: action,
          nodeId: `s=actuator:${actuator.name}:${action}`,
          inputArguments: [{ name: "args", dataType: ua.DataType.String, description: { text: describeArgs(schema) } }],
          outputArguments: [{ name: "result", dataType: ua.DataType.String, description: { text: "The command result as JSON: status ok, rejected or error, reason, state" } }],
        });
        method.bindMethod((inputs: Variant[], context: ISessionContext) => this.call(ua, actuator, action, inputs, context));
      }
    }
  }

  private async call(ua: Opcua, actuator: Actuator, action: string, inputs: Variant[], context: ISessionContext): Promise<CallMethodResultOptions> {
    const token = context.session?.userIdentityToken;
    const user = token instanceof ua.UserNameIdentityToken ? token.userName : null;
    const reply = (status: CommandResult["status"], json: unknown) => ({
      statusCode: status === "ok" ? ua.StatusCodes.Good : status === "rejected" ? ua.StatusCodes.BadInvalidArgument : ua.StatusCodes.BadDeviceFailure,
      ...(status === "rejected" ? { inputArgumentResults: [ua.StatusCodes.BadInvalidArgument] } : {}),
      outputArguments: [new ua.Variant({ dataType: ua.DataType.String, value: JSON.stringify(json) })],
    });
    if (!user && !(token instanceof ua.X509IdentityToken)) {
      this.log.warn({ actuator: actuator.name, action }, "OPC UA method call refused: anonymous session");
      return { statusCode: ua.StatusCodes.BadUserAccessDenied };
    }
    const text = typeof inputs[0]?.value === "string" ? (inputs[0].value as string).trim() : "";
    let args: unknown = {};
    if (text !== "") {
      try {
        args = JSON.parse(text);
      } catch {
        // Never reached the command path: nothing to record, the caller gets the reason.
        return reply("rejected", { id: null, target: actuator.name, action, status: "rejected", reason: "args: malformed JSON", ts: Date.now() });
      }
    }
    const id = `opcua-${randomUUID()}`;
    this.log.info({ id, user, actuator: actuator.name, action }, "OPC UA method call");
    const result = await this.deps.router.handle(actuator.name, JSON.stringify({ id, action, args }), "local");
    return reply(result.status, result);
  }
}
