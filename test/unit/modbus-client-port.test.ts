/**
 * Our port under modbus-serial over Modbus TCP: it matches each reply to the request in progress
 * by its MBAP transaction id, and files every request under one modbus-serial transaction id, so
 * modbus-serial (which keeps each transaction, reply included, until its id comes round again)
 * holds one per connection, not one per MBAP id.
 */
import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ModbusClientPort } from "../../src/buses/modbus/client-port.js";
import { fromHex, mbapFrame, parseMbap, rtuFrame, toHex } from "../../src/buses/modbus/frames.js";

const READ = rtuFrame(1, fromHex("04 00 00 00 01"));
const REPLY_PDU = fromHex("04 02 12 34");

/** A Modbus TCP peer that hands each request's transaction id to `answer`. */
async function peer(answer: (txId: number, socket: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    let rx: Buffer = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      rx = Buffer.concat([rx, chunk]);
      for (let r = parseMbap(rx); "frame" in r; r = parseMbap(rx)) {
        rx = r.rest;
        answer(r.frame.txId, socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const a = server.address();
  return { server, port: typeof a === "object" && a ? a.port : 0 };
}

const open: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of open.splice(0).reverse()) await close();
});

async function connect(port: number): Promise<{ client: ModbusClientPort; replies: Buffer[] }> {
  const client = new ModbusClientPort({ kind: "tcp", host: "127.0.0.1", port });
  const replies: Buffer[] = [];
  client.on("data", (frame: Buffer) => replies.push(frame));
  await new Promise<void>((resolve, reject) => client.open((err) => (err ? reject(err) : resolve())));
  open.push(() => new Promise<void>((resolve) => client.close(() => resolve())));
  return { client, replies };
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 2));
}

describe("ModbusClientPort over Modbus TCP", () => {
  it("numbers requests 1…255, 0, 1… on the wire and files them all under modbus-serial's one id", async () => {
    const seen: number[] = [];
    const { server, port } = await peer((txId, socket) => {
      seen.push(txId);
      socket.write(mbapFrame(txId, 1, REPLY_PDU));
    });
    open.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const { client, replies } = await connect(port);
    for (let i = 0; i < 300; i++) {
      expect(client._transactionIdWrite).toBe(1);
      client.write(READ);
      await until(() => replies.length === i + 1);
      expect(client._transactionIdRead).toBe(1);
    }
    expect(seen.slice(0, 3)).toEqual([1, 2, 3]);
    expect(seen.slice(254, 258)).toEqual([255, 0, 1, 2]);
    // Passed on as the RTU frame modbus-serial parses (unit, PDU, CRC).
    expect(toHex(replies[0]!)).toBe(toHex(rtuFrame(1, REPLY_PDU)));
  });

  it("passes on only the reply to the request in progress: not one to an earlier request, nor a second one", async () => {
    const { server, port } = await peer((txId, socket) => {
      // An answer to the previous request straggling in, then this one's, twice.
      socket.write(Buffer.concat([mbapFrame((txId + 255) % 256, 1, fromHex("04 02 00 00")), mbapFrame(txId, 1, REPLY_PDU), mbapFrame(txId, 1, REPLY_PDU)]));
    });
    open.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const { client, replies } = await connect(port);
    client.write(READ);
    await until(() => replies.length === 1);
    client.write(READ);
    await until(() => replies.length === 2);
    await new Promise((r) => setTimeout(r, 20));
    expect(replies.map(toHex)).toEqual([toHex(rtuFrame(1, REPLY_PDU)), toHex(rtuFrame(1, REPLY_PDU))]);
  });
});
