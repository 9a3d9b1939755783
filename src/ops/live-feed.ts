/**
 * The local live feed for room panels and signage totems on the LAN: the latest value of every
 * point as JSON, and a Server-Sent Events stream of changes — without going through the central
 * platform. Read-only: GET (and HEAD) only, nothing can be changed through it.
 *
 *   GET /points[?prefix=room-101/]   {"room-101/co2": {"value": 612, "ts": …, "quality": "good"}, …}
 *   GET /stream[?prefix=room-101/]   text/event-stream: `event: reading` with one reading as data
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Reading } from "../model/reading.js";
import { UserError } from "../model/errors.js";

interface Client {
  res: ServerResponse;
  prefix: string;
}

export class LiveFeed {
  private readonly latest = new Map<string, { value: Reading["value"]; ts: number; quality: Reading["quality"] }>();
  private readonly clients = new Set<Client>();
  private server: Server | null = null;
  private keepAlive: NodeJS.Timeout | null = null;

  constructor(private readonly opts: { host: string; port: number }) {}

  /** Takes each tick's readings: keeps the latest per point and streams the changed ones. */
  update(readings: readonly Reading[]): void {
    for (const r of readings) {
      const prev = this.latest.get(r.point);
      if (prev && prev.value === r.value && prev.quality === r.quality) {
        prev.ts = r.ts;
        continue;
      }
      this.latest.set(r.point, { value: r.value, ts: r.ts, quality: r.quality });
      if (this.clients.size === 0) continue;
      const line = `event: reading\ndata: ${JSON.stringify({ point: r.point, value: r.value, ts: r.ts, quality: r.quality })}\n\n`;
      for (const c of this.clients) if (r.point.startsWith(c.prefix)) c.res.write(line);
    }
  }

  async start(): Promise<{ host: string; port: number }> {
    const server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) =>
        reject(new UserError(`live_feed: cannot listen on ${this.opts.host}:${this.opts.port} (${err.code ?? err.message}); change live_feed.port or live_feed.host`)),
      );
      server.listen(this.opts.port, this.opts.host, () => resolve());
    });
    this.server = server;
    // A comment line now and then keeps proxies and panels from closing an idle stream.
    this.keepAlive = setInterval(() => {
      for (const c of this.clients) c.res.write(": keep-alive\n\n");
    }, 15_000);
    this.keepAlive.unref();
    const a = server.address();
    return { host: this.opts.host, port: typeof a === "object" && a ? a.port : this.opts.port };
  }

  async stop(): Promise<void> {
    if (this.keepAlive) clearInterval(this.keepAlive);
    for (const c of this.clients) c.res.end();
    this.clients.clear();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://feed");
    const prefix = url.searchParams.get("prefix") ?? "";
    // Panels and totems are web pages served from elsewhere on the LAN.
    res.setHeader("Access-Control-Allow-Origin", "*");
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { Allow: "GET, HEAD", "Content-Type": "text/plain" }).end("read-only\n");
      return;
    }
    if (url.pathname === "/points") {
      const body: Record<string, unknown> = {};
      for (const [point, v] of this.latest) if (point.startsWith(prefix)) body[point] = v;
      res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-store" }).end(req.method === "HEAD" ? undefined : JSON.stringify(body));
      return;
    }
    if (url.pathname === "/stream") {
      res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-store", Connection: "keep-alive" });
      if (req.method === "HEAD") {
        res.end();
        return;
      }
      // A new panel first gets the current picture, then the changes.
      for (const [point, v] of this.latest) {
        if (point.startsWith(prefix)) res.write(`event: reading\ndata: ${JSON.stringify({ point, ...v })}\n\n`);
      }
      const client: Client = { res, prefix };
      this.clients.add(client);
      req.on("close", () => this.clients.delete(client));
      return;
    }
    res.writeHead(404, { "Content-Type": "text/plain" }).end("not found: try /points or /stream\n");
  }
}
