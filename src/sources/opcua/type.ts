/** `type: opcua`: nodes of a PLC or BMS, read over OPC UA subscriptions. */
import { z } from "zod";
import { name } from "../../config/fields.js";
import { DAY, duration, HOUR } from "../../config/units.js";
import { OPCUA_ENDPOINT, OPCUA_POLICIES } from "../../opcua/endpoint.js";
import { TRUST_MODES } from "../../opcua/trust.js";
import type { SourceType } from "../type.js";
import { uniqueNames } from "../unique.js";

const NODE_ERROR = "expected a node id like ns=2;s=FlowTemp or ns=3;i=1001";
const opcuaNodeId = z.string({ error: NODE_ERROR }).regex(/^(ns=\d+;)?(i=\d+|s=.+|g=[0-9A-Fa-f-]{36}|b=[A-Za-z0-9+/=]+)$/, { error: NODE_ERROR });

const schema = z
  .strictObject({
    type: z.literal("opcua"),
    name: name("source name"),
    endpoint: z
      .string({ error: "expected an endpoint like opc.tcp://plc-1:4840" })
      .regex(OPCUA_ENDPOINT, { error: "expected an endpoint like opc.tcp://plc-1:4840" }),
    security: z
      .strictObject({
        mode: z.enum(["None", "Sign", "SignAndEncrypt"]).default("SignAndEncrypt"),
        policy: z.enum(OPCUA_POLICIES).default("Basic256Sha256"),
      })
      .optional()
      .meta({
        description:
          "Secure channel; default none (then nothing proves the PLC's identity: its certificate only tells a swapped PLC apart). The PLC's certificate is checked as `trust` says; ours must be trusted by the PLC.",
      }),
    trust: z
      .enum(TRUST_MODES)
      .default("first-use")
      .meta({
        description:
          "first-use: the PLC's certificate is pinned to this endpoint on first contact (logged with its thumbprints), and a different one later is refused until `edge-agent opcua trust` pins it. explicit: an unknown certificate is refused and kept in the PKI's rejected/ until moved to trusted/certs/.",
      }),
    username: z.string().min(1).optional(),
    password: z.string().min(1).optional(),
    nodes: z
      .array(
        z.strictObject({
          name: name("point name"),
          node: opcuaNodeId,
          unit: z.string().optional(),
        }),
      )
      .min(1, { error: "needs at least one node" }),
    interval: duration({ min: 100, max: DAY, description: "Sampling and publishing interval; the points are also reported this often." }).default(5000),
    reconnect: z
      .strictObject({
        min: duration({ min: 100, max: HOUR }).default(1000),
        max: duration({ min: 100, max: HOUR }).default(30_000),
      })
      .prefault({}),
    pki_dir: z.string().min(1).optional().meta({ description: "The client's certificates; default opcua-client-pki next to the outbox." }),
  })
  .meta({ description: "Nodes of a PLC or BMS read over OPC UA (subscriptions): points <name>/<node name>, quality from the status code." });

export type OpcuaSourceConfig = z.output<typeof schema>;

export const opcua: SourceType<OpcuaSourceConfig> = {
  type: "opcua",
  schema,
  check(src, at, ctx) {
    ctx.claimName(src.name, [...at, "name"]);
    uniqueNames(src.nodes, src.name, [...at, "nodes"], ctx.report);
    // Credentials come in pairs; a security mode and its policy agree; backoff bounds are ordered.
    if ((src.username === undefined) !== (src.password === undefined)) {
      ctx.report([...at, src.username === undefined ? "username" : "password"], "username and password go together");
    }
    const sec = src.security;
    if (sec && (sec.mode === "None") !== (sec.policy === "None")) {
      ctx.report([...at, "security", "policy"], sec.mode === "None" ? "mode None needs policy None" : `mode ${sec.mode} needs a policy other than None`);
    }
    if (src.reconnect.max < src.reconnect.min) ctx.report([...at, "reconnect", "max"], "must not be below reconnect.min");
  },
  facts: (src, at) => ({
    prefixes: [{ name: src.name, path: [...at, "name"] }],
    points: src.nodes.map((n) => ({ id: `${src.name}/${n.name}`, ...(n.unit ? { unit: n.unit } : {}) })),
    claims: [],
    devices: [],
  }),
  resolvePaths(src, at) {
    if (src.pki_dir) src.pki_dir = at(src.pki_dir);
  },
  summary: (src) => ({ points: src.nodes.length }),
};
