/**
 * Prometheus metrics of the ingest itself (`--metrics HOST:PORT`, path /metrics): what came in,
 * what was stored, duplicates and redeliveries, quarantined messages, batch sizes, commit time,
 * lag (age of the oldest message not yet committed) and replays asked.
 */
import { createServer, type Server } from "node:http";
import { Counter, Gauge, Histogram, Registry, Summary, collectDefaultMetrics } from "prom-client";
import { listen } from "../model/listen.js";
import { UserError } from "../model/errors.js";
import type { BatchStats } from "./writer.js";

const P = "edge_ingest_";

export class IngestMetrics {
  readonly registry = new Registry();
  private readonly messages = new Counter({ name: `${P}messages_total`, help: "messages received, by kind", labelNames: ["kind"], registers: [this.registry] });
  private readonly redeliveries = new Counter({ name: `${P}redeliveries_total`, help: "messages the broker marked as delivered before", registers: [this.registry] });
  private readonly stored = new Counter({ name: `${P}readings_total`, help: "readings, events and results stored (new sequence numbers)", registers: [this.registry] });
  private readonly duplicates = new Counter({ name: `${P}duplicates_total`, help: "sequence numbers received again and not stored twice", registers: [this.registry] });
  private readonly quarantined = new Counter({ name: `${P}quarantined_total`, help: "messages or readings put in quarantine", registers: [this.registry] });
  private readonly batches = new Histogram({ name: `${P}batch_readings`, help: "readings per committed batch", buckets: [1, 10, 100, 1000, 5000, 20000, 50000], registers: [this.registry] });
  private readonly commit = new Histogram({ name: `${P}commit_seconds`, help: "time to store and commit one batch", buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [this.registry] });
  /** The same as quantiles of this process (the last 10 minutes), for reading by eye and benchmarks. */
  private readonly commitQ = new Summary({ name: `${P}commit_quantile_seconds`, help: "time to store and commit one batch, quantiles", percentiles: [0.5, 0.9, 0.99], maxAgeSeconds: 600, ageBuckets: 5, registers: [this.registry] });
  private readonly waited = new Histogram({ name: `${P}ack_delay_seconds`, help: "from a batch's oldest message arriving to its commit (then acknowledged)", buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10], registers: [this.registry] });
  private readonly dbErrors = new Counter({ name: `${P}db_errors_total`, help: "batches the database could not take (retried)", registers: [this.registry] });
  readonly replays = new Counter({ name: `${P}replays_asked_total`, help: "replay commands sent to gateways", registers: [this.registry] });
  readonly lag = new Gauge({ name: `${P}lag_seconds`, help: "age of the oldest message received and not yet committed", registers: [this.registry] });
  private server: Server | null = null;

  received(kind: string, redelivered: boolean): void {
    this.messages.inc({ kind });
    if (redelivered) this.redeliveries.inc();
  }

  committed(s: BatchStats, waitedMs: number): void {
    this.stored.inc(s.readings);
    this.duplicates.inc(s.duplicates);
    this.quarantined.inc(s.quarantined);
    this.batches.observe(s.readings + s.duplicates);
    this.commit.observe(s.commitMs / 1000);
    this.commitQ.observe(s.commitMs / 1000);
    this.waited.observe(waitedMs / 1000);
  }

  dbError(): void {
    this.dbErrors.inc();
  }

  /** Serves /metrics on host:port; returns the URL. */
  async serve(address: string, lagMs: () => number): Promise<string> {
    const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address);
    const port = m ? Number(m[3]) : NaN;
    if (!m || port > 65535) throw new UserError(`--metrics: expected HOST:PORT like 127.0.0.1:9465, got '${address.slice(0, 80)}'`);
    const host = m[1] ?? m[2]!;
    collectDefaultMetrics({ register: this.registry, prefix: P });
    const server = createServer((req, res) => {
      if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found: GET /metrics\n");
        return;
      }
      this.lag.set(lagMs() / 1000);
      this.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": this.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    });
    try {
      await listen(server, port, host);
    } catch (err) {
      throw new UserError(`--metrics: cannot listen on ${address} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    this.server = server;
    const a = server.address();
    return `http://${host.includes(":") ? `[${host}]` : host}:${typeof a === "object" && a ? a.port : port}/metrics`;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    const closed = new Promise<void>((r) => s.close(() => r()));
    s.closeAllConnections();
    await closed;
  }
}
