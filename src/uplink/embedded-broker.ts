/**
 * An MQTT broker inside the agent (aedes), on loopback only: the zero-setup demo and unit tests
 * use it. Production gateways talk to a real broker.
 */
import { createServer, type Server } from "node:net";
import type { Aedes } from "aedes";
import { listen } from "../model/listen.js";

export class EmbeddedBroker {
  private broker: Aedes | null = null;
  private server: Server | null = null;
  private boundPort = 0;

  constructor(private readonly port: number) {}

  get url(): string {
    return `mqtt://127.0.0.1:${this.boundPort}`;
  }

  /** Listens on the configured port, or on a free one when it is taken; returns the URL. */
  async start(): Promise<string> {
    // Loaded only when a config asks for it: production gateways never carry the broker.
    const { Aedes: AedesBroker } = await import("aedes");
    this.broker = await AedesBroker.createBroker();
    const server = createServer(this.broker.handle);
    this.server = server;
    try {
      await listen(server, this.port, "127.0.0.1");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE" || this.port === 0) throw err;
      await listen(server, 0, "127.0.0.1");
    }
    const address = server.address();
    this.boundPort = typeof address === "object" && address ? address.port : 0;
    return this.url;
  }

  get portInUseFallback(): boolean {
    return this.port !== 0 && this.boundPort !== this.port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    const broker = this.broker;
    this.server = null;
    this.broker = null;
    if (broker) await new Promise<void>((resolve) => broker.close(() => resolve()));
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

