/**
 * The agent's local control socket: a unix socket readable by the agent's user and group only,
 * through which `edge-agent status` asks how things are and `edge-agent light …` /
 * `edge-agent charger …` send commands down the same path as the platform's. One JSON request
 * per line, one JSON answer per line.
 */
import { chmodSync, mkdirSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server } from "node:net";
import { dirname, join } from "node:path";
import type { StoreConfig } from "../config/schema.js";
import { UserError } from "../model/errors.js";

/** Give dead letters back to their streams, or delete them (optionally one stream, one seq range). */
export interface DeadLetterRequest {
  op: "dead-letters";
  action: "resend" | "purge";
  stream?: "telemetry" | "events" | "results";
  seq?: [number, number];
}

/** Firmware updates (src/agent/parts/updates.ts): a piece of an image to stage; the jobs, or a board's slots. */
export type UpdatesRequest =
  | { op: "image"; sha256: string; size: number; offset: number; data: string }
  | { op: "updates"; board?: string; job?: string; slots?: boolean };

export type ControlRequest = { op: "status" } | { op: "command"; target: string; payload: string } | DeadLetterRequest | UpdatesRequest;

/** Bytes of image data in one `image` request (its line stays well under MAX_LINE). */
export const IMAGE_PIECE = 32 * 1024;
const IMAGE_MAX_BYTES = 16 * 1024 * 1024;
const HEX64 = /^[0-9a-f]{64}$/;

export type ControlHandler = (req: ControlRequest) => Promise<unknown>;

const MAX_LINE = 64 * 1024;

/** Where the control socket lives: next to the outbox, unless the outbox is in memory. */
export function controlSocketPath(config: { store: Pick<StoreConfig, "path"> }): string | null {
  return config.store.path === ":memory:" ? null : join(dirname(config.store.path), "edge-agent.sock");
}

export class ControlSocket {
  private server: Server | null = null;

  constructor(
    readonly path: string,
    private readonly handler: ControlHandler,
  ) {}

  async start(): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true });
    // A socket file left by a killed agent would make listen fail with EADDRINUSE.
    rmSync(this.path, { force: true });
    const server = createServer((sock) => {
      let buf = "";
      sock.setEncoding("utf8");
      sock.on("error", () => sock.destroy());
      sock.on("data", (chunk: string) => {
        buf += chunk;
        if (buf.length > MAX_LINE) {
          sock.end(`${JSON.stringify({ error: "request too large" })}\n`);
          return;
        }
        let nl = buf.indexOf("\n");
        while (nl >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          void this.answer(line).then((out) => sock.write(`${JSON.stringify(out)}\n`));
          nl = buf.indexOf("\n");
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.path, () => resolve());
    });
    chmodSync(this.path, 0o660);
    this.server = server;
  }

  private async answer(line: string): Promise<unknown> {
    let req: unknown;
    try {
      req = JSON.parse(line);
    } catch {
      return { error: "malformed request" };
    }
    const r = checkRequest(req);
    if (!r) return { error: "unknown request" };
    try {
      return { ok: await this.handler(r) };
    } catch (err) {
      return { error: err instanceof Error ? err.message : String(err) };
    }
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(this.path, { force: true });
  }
}

/** The request, rebuilt from its checked fields only; null when it is not one we know. */
function checkRequest(req: unknown): ControlRequest | null {
  if (typeof req !== "object" || req === null || Array.isArray(req)) return null;
  const r = req as Record<string, unknown>;
  if (r.op === "status") return { op: "status" };
  if (r.op === "command" && typeof r.target === "string" && typeof r.payload === "string") return { op: "command", target: r.target, payload: r.payload };
  if (r.op === "dead-letters" && (r.action === "resend" || r.action === "purge")) {
    const out: DeadLetterRequest = { op: "dead-letters", action: r.action };
    if (r.stream !== undefined) {
      if (r.stream !== "telemetry" && r.stream !== "events" && r.stream !== "results") return null;
      out.stream = r.stream;
    }
    if (r.seq !== undefined) {
      const seq = r.seq;
      if (!Array.isArray(seq) || seq.length !== 2 || !seq.every((n) => Number.isSafeInteger(n) && (n as number) >= 0) || (seq[0] as number) > (seq[1] as number)) return null;
      out.seq = [seq[0] as number, seq[1] as number];
    }
    return out;
  }
  if (r.op === "image") {
    const { sha256, size, offset, data } = r;
    if (typeof sha256 !== "string" || !HEX64.test(sha256)) return null;
    if (!Number.isSafeInteger(size) || (size as number) <= 0 || (size as number) > IMAGE_MAX_BYTES) return null;
    if (!Number.isSafeInteger(offset) || (offset as number) < 0 || (offset as number) > (size as number)) return null;
    if (typeof data !== "string" || data.length > Math.ceil(IMAGE_PIECE / 3) * 4 || !/^[A-Za-z0-9+/]*={0,2}$/.test(data)) return null;
    return { op: "image", sha256, size: size as number, offset: offset as number, data };
  }
  if (r.op === "updates") {
    const out: UpdatesRequest = { op: "updates" };
    for (const k of ["board", "job"] as const) {
      const v = r[k];
      if (v === undefined) continue;
      if (typeof v !== "string" || v.length > 64) return null;
      out[k] = v;
    }
    if (r.slots !== undefined) {
      if (typeof r.slots !== "boolean") return null;
      out.slots = r.slots;
    }
    return out;
  }
  return null;
}

/** Sends one request to a running agent. A missing socket means the agent is not running. */
export function askAgent(path: string, req: ControlRequest, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new UserError(`the agent at ${path} did not answer within ${timeoutMs / 1000} s`, 1));
    }, timeoutMs);
    sock.setEncoding("utf8");
    sock.on("connect", () => sock.write(`${JSON.stringify(req)}\n`));
    sock.on("data", (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      const answer = JSON.parse(buf.slice(0, nl)) as { ok?: unknown; error?: string };
      if (answer.error !== undefined) reject(new UserError(`agent: ${answer.error}`, 1));
      else resolve(answer.ok);
    });
    sock.on("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === "ENOENT" || err.code === "ECONNREFUSED") {
        reject(new UserError(`no agent running with this config (no socket at ${path}); start it with: edge-agent run -c FILE`, 1));
      } else if (err.code === "EACCES") {
        reject(new UserError(`no permission on ${path} (run as the agent's user or a member of its group)`, 2));
      } else reject(new UserError(`cannot reach the agent at ${path}: ${err.message}`, 1));
    });
  });
}
