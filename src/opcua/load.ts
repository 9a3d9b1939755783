/**
 * node-opcua on demand. It costs ~0.7 s to load and ~90 MB of memory, so nothing imports it
 * statically: the OPC UA server part, the `opcua` source and `edge-agent opcua` load it here,
 * only when used. Its own console output is routed into our logger: its warnings (among them
 * NODE-OPCUA-W27 about RSA PKCS#1 v1.5 on Node 20, printed at every start) at debug, its
 * errors as warnings, never on stdout (where `--json` output goes).
 */
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { format } from "node:util";
import type { Logger } from "../model/logger.js";

export type Opcua = typeof import("node-opcua");

let loading: Promise<Opcua> | null = null;
/** Where node-opcua's messages go; null = nowhere (the CLI reports its own errors). */
let sink: Logger | null = null;

// chalk colours in node-opcua's messages.
const ANSI = /\u001b\[[0-9;]*m/g;

function text(args: unknown[]): string {
  const s = format(...args).replace(ANSI, "").trim();
  return s.length > 500 ? `${s.slice(0, 500)}…` : s;
}

/** Loads node-opcua once; `log` (when given) receives its messages from now on. */
export function loadOpcua(log: Logger | null): Promise<Opcua> {
  if (log) sink = log.child({ part: "node-opcua" });
  loading ??= import("node-opcua").then((ua) => {
    // Its first argument is its own call-site context, not part of the message.
    ua.setWarningLogger((_context, ...args) => sink?.debug(text(args)));
    ua.setErrorLogger((_context, ...args) => sink?.warn(text(args)));
    return ua;
  });
  return loading;
}

/**
 * The persistent PKI directory (own certificate and key, trusted/ and rejected/ peers): next to
 * the outbox, like the control socket; in the temp dir only for an in-memory outbox.
 */
export function defaultPkiDir(storePath: string, kind: "server" | "client"): string {
  const name = kind === "server" ? "opcua-pki" : "opcua-client-pki";
  return storePath === ":memory:" ? join(tmpdir(), `edge-agent-${name}`) : join(dirname(storePath), name);
}
