/** What the config, the OPC UA server and client agree on: the policies spoken and the endpoint URL form. */

/** The security policies offered and used: the modern ones (no RSA PKCS#1 v1.5), and None. */
export const OPCUA_POLICIES = ["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] as const;
export type OpcuaPolicy = (typeof OPCUA_POLICIES)[number];

/** opc.tcp://host[:port][/path], host a name, an IPv4 address or an [IPv6] address. */
export const OPCUA_ENDPOINT = /^opc\.tcp:\/\/(\[[0-9A-Fa-f:.]+\]|[^\s/:[\]]+)(:\d{1,5})?(\/\S*)?$/;
