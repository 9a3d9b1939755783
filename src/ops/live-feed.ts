/**
 * The local live feed for people on site (docs/pages.md): pages to look at and the data behind
 * them, without going through the central platform. Read-only: GET (and HEAD) only, nothing on
 * the gateway can be changed through it.
 *
 *   GET /                              the gateway page (sources, devices, values, plots, uplink, outbox)
 *   GET /display/<room>                a room display (signage totem, tablet at the door)
 *   GET /points[?prefix=…|?points=a,b] {"room-101/co2": {"value": 612, "ts": …, "quality": "good"}, …}
 *   GET /stream[?prefix=…|?points=a,b] text/event-stream: `event: reading` per change, `event: fresh` every 5 s
 *   GET /history[?prefix=…]            each number's recent samples: {"meter-1/power": [[ts, v], …]}
 *   GET /status.json                   what the gateway page shows besides values
 *   GET /assets/<file>                 the pages' script and style (gzip when asked for)
 *
 * Loopback by default; on another address every page and data request needs the config's token
 * (`?token=` or `Authorization: Bearer`). A stream client that does not read is dropped once
 * 256 KiB wait for it: a stuck panel never grows the agent's memory.
 */
import { timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { gzipSync } from "node:zlib";
import { UserError } from "../model/errors.js";
import type { Reading } from "../model/reading.js";
import { gatewayPage, type Language, PAGES_CSS, roomPage, type RoomView, words } from "./pages/html.js";

export interface PageStatus {
  version: string;
  uplink: { state: string; broker: string; protocol: string; lastError: string | null };
  outbox: { depth: number; oldestAgeMs: number | null; dropped: Record<string, number>; deadLetters: number };
  sources: Array<{ name: string; type: string; lastError: string | null; devices: Array<{ name: string; online: boolean; lastError: string | null }> }>;
  actuators: Record<string, Record<string, unknown>>;
}

export interface LiveFeedOptions {
  host: string;
  port: number;
  token?: string;
  language?: Language;
  labels?: Readonly<Record<string, string | undefined>>;
  staleAfterMs?: number;
  historyMs?: number;
  site?: string;
  gateway?: string;
  rooms?: readonly RoomView[];
  units?: ReadonlyMap<string, string>;
  status?: () => PageStatus;
}

interface Client {
  res: ServerResponse;
  accepts: (point: string) => boolean;
}

/** A stream client this far behind is dropped (it stopped reading). */
export const CLIENT_BUFFER_MAX = 256 * 1024;
const CLIENTS_MAX = 200;
const HISTORY_SAMPLES = 600;
const HISTORY_POINTS = 5000;
const FRESH_EVERY_MS = 5000;

const SECURITY_HEADERS = {
  "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "X-Frame-Options": "DENY",
  "Cross-Origin-Resource-Policy": "same-site",
};

/** A page script as compiled beside this module (dist/src/ops/pages/), or from dist when this runs from the sources (tests). */
function script(name: string): string {
  for (const rel of [`./pages/${name}`, `../../dist/src/ops/pages/${name}`]) {
    try {
      return readFileSync(new URL(rel, import.meta.url), "utf8").replace(/\n\/\/# sourceMappingURL=.*\n?$/, "\n");
    } catch {
      // the next place
    }
  }
  throw new Error(`page script ${name} not found: run npm run build`);
}

const ASSETS: Record<string, { type: string; load: () => string }> = {
  "room.client.js": { type: "text/javascript; charset=utf-8", load: () => script("room.client.js") },
  "gateway.client.js": { type: "text/javascript; charset=utf-8", load: () => script("gateway.client.js") },
  "dom.client.js": { type: "text/javascript; charset=utf-8", load: () => script("dom.client.js") },
  "pages.css": { type: "text/css; charset=utf-8", load: () => PAGES_CSS },
};

export class LiveFeed {
  private readonly latest = new Map<string, { value: Reading["value"]; ts: number; quality: Reading["quality"] }>();
  private readonly history = new Map<string, Array<[number, number]>>();
  private readonly clients = new Set<Client>();
  private readonly assets = new Map<string, { type: string; raw: Buffer; gz: Buffer }>();
  private readonly rooms: Map<string, RoomView>;
  private server: Server | null = null;
  private keepAlive: NodeJS.Timeout | null = null;
  private fresh: NodeJS.Timeout | null = null;
  /** Clients dropped because they stopped reading (for tests and status). */
  dropped = 0;

  constructor(private readonly opts: LiveFeedOptions) {
    this.rooms = new Map((opts.rooms ?? []).map((r) => [r.name, r]));
  }

  /** Takes each tick's readings: keeps the latest per point, each number's recent history, and streams the changed ones. */
  update(readings: readonly Reading[]): void {
    for (const r of readings) {
      this.remember(r);
      const prev = this.latest.get(r.point);
      if (prev && prev.value === r.value && prev.quality === r.quality) {
        prev.ts = r.ts;
        continue;
      }
      this.latest.set(r.point, { value: r.value, ts: r.ts, quality: r.quality });
      if (this.clients.size === 0) continue;
      const line = `event: reading\ndata: ${JSON.stringify({ point: r.point, value: r.value, ts: r.ts, quality: r.quality })}\n\n`;
      for (const c of this.clients) if (c.accepts(r.point)) this.send(c, line);
    }
  }

  private remember(r: Reading): void {
    const n = typeof r.value === "number" && Number.isFinite(r.value) ? r.value : typeof r.value === "boolean" ? Number(r.value) : null;
    if (n === null) return;
    let h = this.history.get(r.point);
    if (!h) {
      if (this.history.size >= HISTORY_POINTS) return;
      this.history.set(r.point, (h = []));
    }
    const last = h[h.length - 1];
    if (last && last[0] >= r.ts) return;
    h.push([r.ts, n]);
    const from = r.ts - (this.opts.historyMs ?? 600_000);
    let drop = 0;
    while (drop < h.length && (h.length - drop > HISTORY_SAMPLES || h[drop]![0] < from)) drop++;
    if (drop > 0) h.splice(0, drop);
  }

  /** Writes to a stream client, or drops it when it stopped reading. */
  private send(c: Client, text: string): void {
    if (c.res.writableLength > CLIENT_BUFFER_MAX) {
      this.clients.delete(c);
      this.dropped++;
      c.res.destroy();
      return;
    }
    c.res.write(text);
  }

  async start(): Promise<{ host: string; port: number }> {
    const server = createServer((req, res) => {
      try {
        this.handle(req, res);
      } catch {
        if (!res.headersSent) res.writeHead(500, { "Content-Type": "text/plain" });
        res.end("error\n");
      }
    });
    server.requestTimeout = 10_000;
    server.headersTimeout = 5_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) =>
        reject(new UserError(`live_feed: cannot listen on ${this.opts.host}:${this.opts.port} (${err.code ?? err.message}); change live_feed.port or live_feed.host`)),
      );
      server.listen(this.opts.port, this.opts.host, () => resolve());
    });
    this.server = server;
    // A comment line now and then keeps proxies and panels from closing an idle stream.
    this.keepAlive = setInterval(() => {
      for (const c of this.clients) this.send(c, ": keep-alive\n\n");
    }, 15_000);
    this.keepAlive.unref();
    // Values that did not change are still fresh: the newest time a client's points carry.
    this.fresh = setInterval(() => {
      for (const c of this.clients) {
        let ts = 0;
        for (const [p, v] of this.latest) if (v.ts > ts && c.accepts(p)) ts = v.ts;
        if (ts > 0) this.send(c, `event: fresh\ndata: {"ts":${ts}}\n\n`);
      }
    }, FRESH_EVERY_MS);
    this.fresh.unref();
    const a = server.address();
    return { host: this.opts.host, port: typeof a === "object" && a ? a.port : this.opts.port };
  }

  async stop(): Promise<void> {
    if (this.keepAlive) clearInterval(this.keepAlive);
    if (this.fresh) clearInterval(this.fresh);
    for (const c of this.clients) c.res.end();
    this.clients.clear();
    const server = this.server;
    this.server = null;
    if (server) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    }
  }

  /** The connected stream clients (tests). */
  get streams(): number {
    return this.clients.size;
  }

  private authorised(req: IncomingMessage, url: URL): boolean {
    const want = this.opts.token;
    if (want === undefined) return true;
    const auth = req.headers.authorization;
    const given = url.searchParams.get("token") ?? (typeof auth === "string" && auth.startsWith("Bearer ") ? auth.slice(7) : null);
    if (given === null) return false;
    const a = Buffer.from(given);
    const b = Buffer.from(want);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  private asset(name: string): { type: string; raw: Buffer; gz: Buffer } | null {
    const def = Object.hasOwn(ASSETS, name) ? ASSETS[name] : undefined;
    if (!def) return null;
    let a = this.assets.get(name);
    if (!a) {
      const raw = Buffer.from(def.load());
      a = { type: def.type, raw, gz: gzipSync(raw, { level: 9 }) };
      this.assets.set(name, a);
    }
    return a;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { Allow: "GET, HEAD", "Content-Type": "text/plain" }).end("read-only\n");
      return;
    }
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://feed");
    } catch {
      res.writeHead(400, { "Content-Type": "text/plain" }).end("bad request\n");
      return;
    }
    const head = req.method === "HEAD";
    const gz = /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
    if (url.pathname.startsWith("/assets/")) {
      const a = this.asset(url.pathname.slice("/assets/".length));
      if (!a) {
        res.writeHead(404, { "Content-Type": "text/plain" }).end("not found\n");
        return;
      }
      const body = gz ? a.gz : a.raw;
      res.writeHead(200, { "Content-Type": a.type, "Cache-Control": "no-cache", "Content-Length": body.length, Vary: "Accept-Encoding", ...(gz ? { "Content-Encoding": "gzip" } : {}) });
      res.end(head ? undefined : body);
      return;
    }
    if (!this.authorised(req, url)) {
      res.writeHead(401, { "Content-Type": "text/plain", "WWW-Authenticate": 'Bearer realm="edge-agent"' }).end("a token is needed: add ?token=… (live_feed.token)\n");
      return;
    }
    // Panels and totems may be web pages served from elsewhere on the LAN (the data only).
    const data = (type: string, body: string) => {
      const raw = Buffer.from(body);
      const out = gz && raw.length > 1024 ? gzipSync(raw) : raw;
      res.writeHead(200, {
        "Content-Type": type,
        "Cache-Control": "no-store",
        "Access-Control-Allow-Origin": "*",
        "Content-Length": out.length,
        Vary: "Accept-Encoding",
        ...(out !== raw ? { "Content-Encoding": "gzip" } : {}),
      });
      res.end(head ? undefined : out);
    };
    const accepts = this.filter(url);
    const lang = this.opts.language ?? "en";
    const w = words(lang, this.opts.labels);
    if (url.pathname === "/") {
      const units: Record<string, string> = Object.create(null) as Record<string, string>;
      for (const [p, u] of this.opts.units ?? []) units[p] = u;
      const html = gatewayPage({ lang, words: w, gateway: this.opts.gateway ?? "", site: this.opts.site ?? "", rooms: [...this.rooms.keys()], historyMs: this.opts.historyMs ?? 600_000, units });
      this.page(res, html, gz, head);
      return;
    }
    if (url.pathname.startsWith("/display/")) {
      let name: string;
      try {
        name = decodeURIComponent(url.pathname.slice("/display/".length));
      } catch {
        name = "";
      }
      const room = this.rooms.get(name);
      if (!room) {
        const known = [...this.rooms.keys()];
        res.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" }).end(`no room of that name; rooms: ${known.length ? known.join(", ") : "none in the config"}\n`);
        return;
      }
      this.page(res, roomPage(room, { lang, words: w, staleAfterMs: this.opts.staleAfterMs ?? 120_000 }), gz, head);
      return;
    }
    if (url.pathname === "/points") {
      const body: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
      for (const [point, v] of this.latest) if (accepts(point)) body[point] = v;
      data("application/json", JSON.stringify(body));
      return;
    }
    if (url.pathname === "/history") {
      const body: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
      for (const [point, h] of this.history) if (accepts(point)) body[point] = h;
      data("application/json", JSON.stringify(body));
      return;
    }
    if (url.pathname === "/status.json") {
      if (!this.opts.status) {
        res.writeHead(404, { "Content-Type": "text/plain" }).end("no status here\n");
        return;
      }
      data("application/json", JSON.stringify(this.opts.status()));
      return;
    }
    if (url.pathname === "/stream") {
      if (this.clients.size >= CLIENTS_MAX) {
        res.writeHead(503, { "Content-Type": "text/plain", "Retry-After": "30" }).end("too many streams\n");
        return;
      }
      res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-store", Connection: "keep-alive", "Access-Control-Allow-Origin": "*" });
      if (head) {
        res.end();
        return;
      }
      // Headers now: a client must not wait for the first value (or the keep-alive) to know it is connected.
      res.flushHeaders();
      const client: Client = { res, accepts };
      // A new panel first gets the current picture, then the changes.
      for (const [point, v] of this.latest) if (accepts(point)) this.send(client, `event: reading\ndata: ${JSON.stringify({ point, ...v })}\n\n`);
      if (res.destroyed) return;
      this.clients.add(client);
      req.on("close", () => this.clients.delete(client));
      return;
    }
    res.writeHead(404, { "Content-Type": "text/plain" }).end("not found: try /, /display/<room>, /points or /stream\n");
  }

  private page(res: ServerResponse, html: string, gz: boolean, head: boolean): void {
    const raw = Buffer.from(html);
    const out = gz ? gzipSync(raw) : raw;
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store", "Content-Length": out.length, Vary: "Accept-Encoding", ...(gz ? { "Content-Encoding": "gzip" } : {}) });
    res.end(head ? undefined : out);
  }

  /** `?points=a,b` (exact names) or `?prefix=…`; everything without either. */
  private filter(url: URL): (point: string) => boolean {
    const list = url.searchParams.get("points");
    if (list !== null) {
      const set = new Set(list.split(",").slice(0, 1000));
      return (p) => set.has(p);
    }
    const prefix = url.searchParams.get("prefix") ?? "";
    return (p) => p.startsWith(prefix);
  }
}
