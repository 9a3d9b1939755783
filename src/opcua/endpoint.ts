/**
 * What the OPC UA client side (the `opcua` source and `edge-agent opcua browse`) and the config
 * schema agree on: the policies spoken, the endpoint URL form, and how a login is presented.
 */
import type { UserIdentityInfo } from "node-opcua";
import type { Opcua } from "./load.js";

/** The security policies offered and used: the modern ones (no RSA PKCS#1 v1.5), and None. */
export const OPCUA_POLICIES = ["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] as const;
export type OpcuaPolicy = (typeof OPCUA_POLICIES)[number];

/** opc.tcp://host[:port][/path], host a name, an IPv4 address or an [IPv6] address. */
export const OPCUA_ENDPOINT = /^opc\.tcp:\/\/(\[[0-9A-Fa-f:.]+\]|[^\s/:[\]]+)(:\d{1,5})?(\/\S*)?$/;

/** A user name and password when both are given, else anonymous. */
export function identityFor(ua: Opcua, username: string | undefined, password: string | undefined): UserIdentityInfo {
  return username !== undefined && password !== undefined
    ? { type: ua.UserTokenType.UserName, userName: username, password }
    : { type: ua.UserTokenType.Anonymous };
}
