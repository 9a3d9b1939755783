import { createServer, type Server } from "node:net";
import { Aedes } from "aedes";

/** A broker started later on a given port (to test retries finding it). */
export class AedesLike {
  private constructor(
    private readonly broker: Aedes,
    private readonly server: Server,
  ) {}

  static async listen(port: number): Promise<AedesLike> {
    const broker = await Aedes.createBroker();
    const server = createServer(broker.handle);
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", () => resolve()));
    return new AedesLike(broker, server);
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => this.broker.close(() => r()));
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
