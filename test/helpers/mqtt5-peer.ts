/**
 * A minimal MQTT 5 broker for the cases real brokers here cannot be made to produce on demand:
 * a PUBACK with a chosen reason code per message, a CONNACK with a Maximum Packet Size, a
 * DISCONNECT "packet too large". Built on mqtt-packet (the codec MQTT.js itself uses), it speaks
 * the protocol on a real TCP socket; it keeps no sessions and delivers nothing.
 */
import { createServer, type Server, type Socket } from "node:net";
import mqttPacket, { type IPublishPacket, type Packet } from "mqtt-packet";

export interface PeerRules {
  /** The PUBACK reason for a publish (0 = accepted). */
  puback?: (p: IPublishPacket, n: number) => number;
  /** Answer a publish with a DISCONNECT of this reason instead (e.g. 0x95 packet too large). */
  disconnect?: (p: IPublishPacket) => number | null;
  /** CONNACK properties, e.g. { maximumPacketSize: 1000 }. */
  connack?: { maximumPacketSize?: number; receiveMaximum?: number };
  /** Refuse MQTT 5 as an MQTT 3.1.1-only broker does (CONNACK code 1). */
  only311?: boolean;
}

export class Mqtt5Peer {
  /** Every publish the peer accepted (PUBACK 0), in arrival order. */
  readonly accepted: IPublishPacket[] = [];
  readonly refused: Array<{ packet: IPublishPacket; reason: number }> = [];
  connects = 0;
  protocols: number[] = [];
  private readonly sockets = new Set<Socket>();
  private publishes = 0;

  private constructor(
    private readonly server: Server,
    readonly rules: PeerRules,
  ) {}

  static async start(rules: PeerRules = {}): Promise<Mqtt5Peer> {
    const server = createServer();
    const peer = new Mqtt5Peer(server, rules);
    server.on("connection", (s) => peer.serve(s));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    return peer;
  }

  get url(): string {
    const a = this.server.address();
    return `mqtt://127.0.0.1:${typeof a === "object" && a ? a.port : 0}`;
  }

  /** The telemetry readings accepted, as [seq, point] pairs, in order of arrival. */
  acceptedSeqs(topicSuffix = "/telemetry"): number[] {
    const out: number[] = [];
    for (const p of this.accepted) {
      if (!p.topic.endsWith(topicSuffix)) continue;
      const m = JSON.parse(p.payload.toString()) as { seq: [number, number] | number };
      const [a, b] = Array.isArray(m.seq) ? m.seq : [m.seq, m.seq];
      for (let s = a; s <= b; s++) out.push(s);
    }
    return out;
  }

  private serve(sock: Socket): void {
    this.sockets.add(sock);
    sock.on("close", () => this.sockets.delete(sock));
    sock.on("error", () => sock.destroy());
    let version = 5;
    const parser = mqttPacket.parser({ protocolVersion: 5 });
    const send = (packet: Packet) => {
      if (!sock.destroyed) sock.write(mqttPacket.generate(packet, { protocolVersion: version }));
    };
    parser.on("error", () => sock.destroy());
    parser.on("packet", (packet: Packet) => {
      if (packet.cmd === "connect") {
        this.connects++;
        version = packet.protocolVersion ?? 4;
        this.protocols.push(version);
        if (this.rules.only311 && version === 5) {
          sock.end(mqttPacket.generate({ cmd: "connack", returnCode: 1, sessionPresent: false }, { protocolVersion: 4 }));
          return;
        }
        // mqtt-packet reads the version from CONNECT itself; this keeps its settings in step.
        (parser as unknown as { settings: { protocolVersion: number } }).settings = { protocolVersion: version };
        send(version === 5 ? { cmd: "connack", reasonCode: 0, sessionPresent: false, properties: this.rules.connack ?? {} } : { cmd: "connack", returnCode: 0, sessionPresent: false });
      } else if (packet.cmd === "publish") {
        const n = this.publishes++;
        const cut = this.rules.disconnect?.(packet) ?? null;
        if (cut !== null) {
          send({ cmd: "disconnect", reasonCode: cut });
          sock.end();
          return;
        }
        const reason = this.rules.puback?.(packet, n) ?? 0;
        if (reason === 0) this.accepted.push(packet);
        else this.refused.push({ packet, reason });
        if (packet.qos === 1) send(version === 5 ? { cmd: "puback", messageId: packet.messageId!, reasonCode: reason } : { cmd: "puback", messageId: packet.messageId! });
      } else if (packet.cmd === "subscribe") {
        send({ cmd: "suback", messageId: packet.messageId, granted: packet.subscriptions.map(() => 1) });
      } else if (packet.cmd === "pingreq") {
        send({ cmd: "pingresp" });
      } else if (packet.cmd === "disconnect") {
        sock.end();
      }
    });
    sock.on("data", (d: Buffer) => parser.parse(d));
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
