/** ed25519 public keys as the config gives them (for signed firmware manifests, src/update/). */
import { createPublicKey, type KeyObject } from "node:crypto";

/** A public key from text: base64 of the raw 32 bytes, base64 SPKI DER, or PEM. Throws on anything else. */
export function ed25519PublicKey(text: string): KeyObject {
  const t = text.trim();
  let key: KeyObject;
  try {
    if (t.startsWith("-----BEGIN")) key = createPublicKey(t);
    else {
      const der = Buffer.from(t, "base64");
      if (der.length === 32) key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: der.toString("base64url") }, format: "jwk" });
      else key = createPublicKey({ key: der, format: "der", type: "spki" });
    }
  } catch {
    throw new Error(t.startsWith("-----BEGIN") ? "the PEM text is not a public key" : `${Buffer.from(t, "base64").length} bytes after base64: neither a raw key (32) nor an SPKI key`);
  }
  if (key.asymmetricKeyType !== "ed25519") throw new Error(`an ${key.asymmetricKeyType} key, not ed25519`);
  return key;
}
