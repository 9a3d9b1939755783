/**
 * Which OPC UA servers the client side (the `opcua` source and `edge-agent opcua browse`) believes,
 * the way SSH's known_hosts does it: the certificate a server presents is pinned to its endpoint
 * on first contact, and a different certificate at the same endpoint later is refused until the
 * technician says the change is expected (`edge-agent opcua trust URL`). Pinning per endpoint, not
 * one trust list for all: two PLCs each with their own self-signed certificate are both trusted,
 * and yet a PLC that answers at another PLC's address is refused (its readings would carry the
 * other one's names).
 *
 * The pins live in `<pki>/pinned-servers.json` (endpoint → SHA-256, with the SHA-1 and subject a
 * PLC's display shows), written atomically; the certificates themselves in `<pki>/trusted/certs/`
 * (accepted) and `<pki>/rejected/` (refused), named as node-opcua names them. With `trust:
 * explicit` nothing is pinned on first contact: an unknown certificate is refused until it is
 * moved from rejected/ to trusted/certs/ (or `opcua trust` pins it).
 *
 * Everything here is synchronous and reads the files again on every check: a check happens once
 * per connection attempt, and a pin written by `opcua trust` (another process) counts at the next
 * attempt, without restarting the agent. Only node.js's own X.509 parser is used, so nothing here
 * loads node-opcua.
 */
import { X509Certificate } from "node:crypto";
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { OPCUACertificateManager } from "node-opcua";
import type { Opcua } from "./load.js";

export const TRUST_MODES = ["first-use", "explicit"] as const;
export type TrustMode = (typeof TRUST_MODES)[number];

/** The pins, next to trusted/ and rejected/ in the PKI directory. */
export const PIN_FILE = "pinned-servers.json";

/** What a technician compares with the PLC's display (colon-separated hex, as openssl prints it). */
export interface CertificateInfo {
  sha1: string;
  sha256: string;
  /** `C=DE, O=ACME, CN=plc-1` */
  subject: string;
  validFrom: string;
  validTo: string;
}

export interface Pin {
  sha1: string;
  sha256: string;
  subject: string;
  /** ISO time of the pinning. */
  pinnedAt: string;
}

export type Verdict =
  | {
      trusted: true;
      certificate: CertificateInfo;
      /** `already`: as pinned; `first-use`: pinned now; `trusted-folder`: pinned now, the operator had put it in trusted/certs/. */
      how: "already" | "first-use" | "trusted-folder";
      /** Where the accepted certificate is kept. */
      file: string;
    }
  | { trusted: false; certificate: CertificateInfo | null; reason: string };

/** The first certificate of a DER chain (node-opcua hands over chains as one buffer). */
export function leafCertificate(der: Buffer): Buffer {
  if (der.length < 2 || der[0] !== 0x30) throw new Error("not a DER certificate");
  const first = der[1]!;
  let length = first;
  let header = 2;
  if (first & 0x80) {
    const bytes = first & 0x7f;
    if (bytes < 1 || bytes > 4 || der.length < 2 + bytes) throw new Error("not a DER certificate");
    length = der.readUIntBE(2, bytes);
    header = 2 + bytes;
  }
  if (header + length > der.length) throw new Error("truncated DER certificate");
  return der.subarray(0, header + length);
}

export function describeCertificate(certificate: Buffer | X509Certificate): CertificateInfo {
  const x = certificate instanceof X509Certificate ? certificate : new X509Certificate(leafCertificate(certificate));
  return {
    sha1: x.fingerprint,
    sha256: x.fingerprint256,
    subject: x.subject.split("\n").join(", "),
    validFrom: isoTime(x.validFrom),
    validTo: isoTime(x.validTo),
  };
}

/** `Nov 30 21:13:18 2026 GMT` (node's form) as ISO; as it came if it is not a date. */
function isoTime(text: string): string {
  const t = Date.parse(text);
  return Number.isNaN(t) ? text : new Date(t).toISOString();
}

/** The key of an endpoint in the pins: host in lower case, the default port 4840 written out, no trailing slash. */
export function endpointKey(url: string): string {
  const m = /^opc\.tcp:\/\/(\[[^\]]+\]|[^/:]+)(?::(\d+))?(\/.*)?$/i.exec(url.trim());
  if (!m) return url.trim();
  const path = m[3] === "/" ? "" : (m[3] ?? "");
  return `opc.tcp://${m[1]!.toLowerCase()}:${Number(m[2] ?? 4840)}${path}`;
}

/** A fingerprint as typed by a technician (any case, with or without colons or spaces) in our form. */
export function normalizeThumbprint(text: string): string {
  const hex = text.replace(/[\s:]/g, "").toUpperCase();
  return /^[0-9A-F]+$/.test(hex) ? (hex.match(/../g) ?? []).join(":") : text;
}

/** The command that pins a server's current certificate, as the operator can paste it. */
export function trustCommand(url: string, pkiDir: string): string {
  return `edge-agent opcua trust ${url} --pki ${shellWord(pkiDir)}`;
}

function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

const FINGERPRINT = (bytes: number) => new RegExp(`^[0-9A-F]{2}(:[0-9A-F]{2}){${bytes - 1}}$`);
const SHA1 = FINGERPRINT(20);
const SHA256 = FINGERPRINT(32);

/** node-opcua's file name for a certificate in trusted/ or rejected/: `<CN>[<sha1 hex>].pem`. */
function fileName(x: X509Certificate): string {
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(x.subject)?.[1] ?? "";
  return `${cn.replace(/[\x00-\x1F<>:"/\\|?*]/g, "_")}[${x.fingerprint.replace(/:/g, "").toLowerCase()}].pem`;
}

/** The pins and certificate folders of one client PKI directory. */
export class ServerTrust {
  readonly file: string;
  readonly trustedFolder: string;
  readonly rejectedFolder: string;

  constructor(readonly pkiDir: string) {
    this.file = join(pkiDir, PIN_FILE);
    this.trustedFolder = join(pkiDir, "trusted", "certs");
    this.rejectedFolder = join(pkiDir, "rejected");
  }

  /**
   * May `url` present `certificate` (DER, possibly a chain)? Pins it when the mode allows; a
   * refused certificate is kept in rejected/. The reason of a refusal is one line naming the
   * endpoint and what to do.
   */
  check(url: string, certificate: Buffer, mode: TrustMode): Verdict {
    let x: X509Certificate;
    try {
      x = new X509Certificate(leafCertificate(certificate));
    } catch {
      return { trusted: false, certificate: null, reason: `${url}: the server sent no readable certificate; refused` };
    }
    const info = describeCertificate(x);
    // Whatever fails here (a full disk, the PKI's permissions) refuses, with the reason: fail closed.
    try {
      return this.decide(url, x, info, mode);
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code ? `cannot record the server's certificate in ${this.pkiDir}: ${(err as Error).message}; refused` : (err as Error).message;
      return { trusted: false, certificate: info, reason: `${url}: ${why}` };
    }
  }

  private decide(url: string, x: X509Certificate, info: CertificateInfo, mode: TrustMode): Verdict {
    const pins = this.read();
    const key = endpointKey(url);
    const pin = pins.get(key);
    if (pin && pin.sha256 === info.sha256) return { trusted: true, certificate: info, how: "already", file: this.keep(x, "trusted", false) };
    if (pin) {
      this.keep(x, "rejected");
      return {
        trusted: false,
        certificate: info,
        reason:
          `${url}: the server's certificate has changed: pinned SHA-1 ${pin.sha1}, presented SHA-1 ${info.sha1} (${info.subject}); refused. ` +
          `If the PLC was replaced or its certificate renewed, compare the new SHA-1 with the PLC's display, then run: ${trustCommand(url, this.pkiDir)}`,
      };
    }
    const inFolder = this.inTrustedFolder(info.sha256);
    if (mode === "explicit" && !inFolder) {
      const rejected = this.keep(x, "rejected");
      mkdirSync(this.trustedFolder, { recursive: true }); // where the message says to move it
      return {
        trusted: false,
        certificate: info,
        reason:
          `${url}: unknown server certificate SHA-1 ${info.sha1} (${info.subject}); refused (trust: explicit). ` +
          `Compare it with the PLC's display, then move ${rejected} to ${this.trustedFolder}/ (or run: ${trustCommand(url, this.pkiDir)})`,
      };
    }
    const file = this.keep(x, "trusted");
    this.write(pins.set(key, pinOf(info)));
    return { trusted: true, certificate: info, how: inFolder ? "trusted-folder" : "first-use", file };
  }


  /** Pins `certificate` for `url`, whatever was pinned before (`edge-agent opcua trust`); `changed` false if it was pinned already. */
  pin(url: string, certificate: Buffer): { certificate: CertificateInfo; previous: Pin | null; file: string; changed: boolean } {
    const x = new X509Certificate(leafCertificate(certificate));
    const info = describeCertificate(x);
    const pins = this.read();
    const key = endpointKey(url);
    const previous = pins.get(key) ?? null;
    const file = this.keep(x, "trusted");
    const changed = previous?.sha256 !== info.sha256;
    if (changed) this.write(pins.set(key, pinOf(info)));
    return { certificate: info, previous, file, changed };
  }

  /** What is pinned for `url`, if anything. */
  pinned(url: string): Pin | null {
    return this.read().get(endpointKey(url)) ?? null;
  }

  /** The pins; a file that is not ours is an error (every server is refused until it is fixed: fail closed). */
  read(): Map<string, Pin> {
    const pins = new Map<string, Pin>();
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return pins;
      throw new Error(`cannot read the pinned server certificates ${this.file}: ${(err as Error).message}`);
    }
    const broken = (why: string) =>
      new Error(`the pinned server certificates ${this.file} are unreadable (${why}); every server is refused until it is repaired or removed (then each is pinned again at its next contact)`);
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      throw broken("not JSON");
    }
    const { format, servers } = (typeof data === "object" && data !== null ? data : {}) as { format?: unknown; servers?: unknown };
    if (format !== 1 || typeof servers !== "object" || servers === null || Array.isArray(servers)) throw broken("expected { format: 1, servers: {…} }");
    for (const [url, raw] of Object.entries(servers)) {
      const p = raw as Partial<Record<"sha1" | "sha256" | "subject" | "pinned_at", unknown>> | null;
      if (typeof p?.sha1 !== "string" || !SHA1.test(p.sha1) || typeof p.sha256 !== "string" || !SHA256.test(p.sha256)) throw broken(`bad entry for ${url}`);
      pins.set(url, { sha1: p.sha1, sha256: p.sha256, subject: typeof p.subject === "string" ? p.subject : "", pinnedAt: typeof p.pinned_at === "string" ? p.pinned_at : "" });
    }
    return pins;
  }

  /**
   * Temp file, fsync, rename: a power cut leaves the old pins or the new ones, never half a file.
   * Two processes pinning at the same moment (the agent on first contact, `opcua trust`) may lose
   * one pin; the next contact of that endpoint pins it again.
   */
  private write(pins: Map<string, Pin>): void {
    const servers: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    for (const [url, p] of pins) servers[url] = { sha1: p.sha1, sha256: p.sha256, subject: p.subject, pinned_at: p.pinnedAt };
    mkdirSync(this.pkiDir, { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    const fd = openSync(tmp, "w", 0o644);
    try {
      writeSync(fd, `${JSON.stringify({ format: 1, servers }, null, 2)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.file);
  }

  /** Is a certificate with this SHA-256 in trusted/certs/ (put there by anyone, under any name)? */
  private inTrustedFolder(sha256: string): boolean {
    let names: string[];
    try {
      names = readdirSync(this.trustedFolder);
    } catch {
      return false;
    }
    return names.some((name) => {
      if (!/\.(pem|der|crt|cer)$/i.test(name)) return false;
      try {
        const data = readFileSync(join(this.trustedFolder, name));
        const x = new X509Certificate(data.subarray(0, 11).toString("latin1") === "-----BEGIN " ? data : leafCertificate(data));
        return x.fingerprint256 === sha256;
      } catch {
        return false;
      }
    });
  }

  /** Writes the certificate into trusted/ or rejected/ (unless it is there); trusting takes it out of rejected/. */
  private keep(x: X509Certificate, where: "trusted" | "rejected", write = true): string {
    const name = fileName(x);
    const folder = where === "trusted" ? this.trustedFolder : this.rejectedFolder;
    const path = join(folder, name);
    if (write && !existsSync(path)) {
      mkdirSync(folder, { recursive: true });
      const tmp = `${path}.${process.pid}.tmp`;
      const fd = openSync(tmp, "w", 0o644);
      try {
        writeSync(fd, x.toString());
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, path);
    }
    if (where === "trusted" && write) rmSync(join(this.rejectedFolder, name), { force: true });
    return path;
  }
}

function pinOf(info: CertificateInfo): Pin {
  return { sha1: info.sha1, sha256: info.sha256, subject: info.subject, pinnedAt: new Date().toISOString() };
}

/** One node-opcua certificate manager per PKI directory, shared by the clients that use it. */
const certificateManagers = new Map<string, OPCUACertificateManager>();

/**
 * The client's own certificate and key live in `dir`. node-opcua's own verdict on servers is
 * never used (it trusts a certificate for every endpoint once it is in trusted/, and its
 * automatic acceptance took any): each client checks through {@link checkedBy}.
 */
export function clientCertificateManager(ua: Opcua, dir: string): OPCUACertificateManager {
  let cm = certificateManagers.get(dir);
  if (!cm) {
    cm = new ua.OPCUACertificateManager({ rootFolder: dir, automaticallyAcceptUnknownCertificate: false });
    certificateManagers.set(dir, cm);
  }
  return cm;
}

/**
 * The shared certificate manager as one client sees it: node-opcua asks `checkCertificate` about
 * the server's certificate when it connects with Sign or SignAndEncrypt, and again when it
 * reconnects to a server whose certificate changed; `verify` answers for this client's endpoint.
 * Everything else goes to the shared manager, called on itself (its private fields do not
 * resolve on a wrapper, hence a Proxy rather than a subclass or Object.create).
 */
export function checkedBy(ua: Opcua, cm: OPCUACertificateManager, verify: (certificate: Buffer) => boolean): OPCUACertificateManager {
  const check = (chain: Buffer | Buffer[], callback?: (err: Error | null, status?: unknown) => void) => {
    const status = verify(Array.isArray(chain) ? Buffer.concat(chain) : chain) ? ua.StatusCodes.Good : ua.StatusCodes.BadCertificateUntrusted;
    if (typeof callback === "function") {
      callback(null, status);
      return undefined;
    }
    return Promise.resolve(status);
  };
  return new Proxy(cm, {
    get(target, prop) {
      if (prop === "checkCertificate") return check;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
