/**
 * The server's certificate manager, with one node-opcua race closed: when an installer moves a
 * client's certificate from `rejected/` to `trusted/certs/`, the PKI's file watcher sees the
 * new trusted file before the removal from rejected/. A client connecting in that moment is
 * refused, and the refusal's bookkeeping then moves the certificate — already trusted — back to
 * rejected/, for good. Here a certificate that is in trusted/ is never moved out by a refusal.
 */
import { X509Certificate } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { OPCUACertificateManager } from "node-opcua";
import type { Opcua } from "./load.js";

type Certificate = Buffer;

/** The DER of every certificate in a folder of .pem / .der files (unreadable files are skipped). */
export function certificatesIn(folder: string): Buffer[] {
  let names: string[];
  try {
    names = readdirSync(folder);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    try {
      const bytes = readFileSync(join(folder, name));
      return [Buffer.from(new X509Certificate(bytes).raw)];
    } catch {
      return [];
    }
  });
}

export function serverCertificateManager(ua: Opcua, rootFolder: string): OPCUACertificateManager {
  class KeepTrusted extends ua.OPCUACertificateManager {
    override rejectCertificate(certificate: Certificate): Promise<void>;
    override rejectCertificate(certificate: Certificate, callback: (err?: Error | null) => void): void;
    override rejectCertificate(certificate: Certificate, callback?: (err?: Error | null) => void): Promise<void> | void {
      const trusted = certificatesIn(this.trustedFolder).some((der) => der.equals(certificate));
      const done = trusted ? Promise.resolve() : super.rejectCertificate(certificate);
      if (!callback) return done;
      done.then(() => callback(), (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))));
    }
  }
  return new KeepTrusted({ rootFolder, automaticallyAcceptUnknownCertificate: false });
}
