/**
 * What the OPC UA client side (the `opcua` source and `edge-agent opcua browse`) and the config
 * schema agree on: the policies spoken, the endpoint URL form, and how a login is presented.
 */
import type { UserIdentityInfo } from "node-opcua";
import type { Opcua } from "./load.js";

export { OPCUA_ENDPOINT, OPCUA_POLICIES, type OpcuaPolicy } from "../model/opcua.js";

/** A user name and password when both are given, else anonymous. */
export function identityFor(ua: Opcua, username: string | undefined, password: string | undefined): UserIdentityInfo {
  return username !== undefined && password !== undefined
    ? { type: ua.UserTokenType.UserName, userName: username, password }
    : { type: ua.UserTokenType.Anonymous };
}
