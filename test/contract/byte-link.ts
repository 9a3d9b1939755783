/**
 * What every ByteLink must do, whatever carries the bytes: deliver them in order and intact in
 * any chunking, refuse writes when closed, reopen, and tell when the other end goes away.
 */
import { describe, expect, it } from "vitest";
import type { ByteLink } from "../../src/buses/serial/byte-link.js";
import { until } from "../helpers/wait.js";

export interface LinkPair {
  /** The gateway's end and the board's end, not yet open. */
  gateway: ByteLink;
  board: ByteLink;
  /** Pulls the cable: both ends go away. */
  unplug(): Promise<void>;
  close(): Promise<void>;
}

export interface LinkTraits {
  /** A second opener of the gateway's port (real ports: refused as in use); absent when the transport has no such thing. */
  secondOpener?: (pair: LinkPair) => ByteLink;
}

function collect(link: ByteLink): { bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  link.onData((c) => chunks.push(Buffer.from(c)));
  return { bytes: () => Buffer.concat(chunks) };
}

export function byteLinkContract(label: string, make: () => Promise<LinkPair>, traits: LinkTraits = {}): void {
  describe(`ByteLink contract: ${label}`, () => {
    it("delivers bytes both ways, in order and intact, whatever the chunking (zeros and 0xFF included)", async () => {
      const pair = await make();
      try {
        await pair.gateway.open();
        await pair.board.open();
        const atBoard = collect(pair.board);
        const atGateway = collect(pair.gateway);
        const sent = Buffer.alloc(20_000);
        for (let i = 0; i < sent.length; i++) sent[i] = (i * 7919) & 0xff;
        for (let off = 0; off < sent.length; ) {
          const n = 1 + ((off * 31) % 700);
          expect(await pair.gateway.write(sent.subarray(off, off + n))).toBe(true);
          off += n;
        }
        await pair.board.write(Buffer.from([0, 0, 0xff, 1]));
        await until(() => atBoard.bytes().length >= sent.length && atGateway.bytes().length >= 4, "the bytes at the other end");
        expect(atBoard.bytes().equals(sent)).toBe(true);
        expect([...atGateway.bytes()]).toEqual([0, 0, 0xff, 1]);
      } finally {
        await pair.close();
      }
    });

    it("refuses writes once closed, and opens again", async () => {
      const pair = await make();
      try {
        await pair.gateway.open();
        await pair.board.open();
        await pair.gateway.close();
        expect(pair.gateway.isOpen).toBe(false);
        expect(await pair.gateway.write(Buffer.from([1]))).toBe(false);
        await pair.gateway.open();
        const atBoard = collect(pair.board);
        expect(await pair.gateway.write(Buffer.from([42]))).toBe(true);
        await until(() => atBoard.bytes().length > 0, "the byte after reopening");
        expect([...atBoard.bytes()]).toEqual([42]);
      } finally {
        await pair.close();
      }
    });

    const secondOpener = traits.secondOpener;
    if (secondOpener) {
      it("a second opener of the same port is refused, naming it as in use", async () => {
        const pair = await make();
        try {
          await pair.gateway.open();
          await expect(secondOpener(pair).open()).rejects.toThrow(/is in use by another process/);
        } finally {
          await pair.close();
        }
      });
    }

    it("after an unplug, opening fails with 'no such port' until the port is back", async () => {
      const pair = await make();
      try {
        await pair.gateway.open();
        await pair.unplug();
        await pair.gateway.close();
        await expect(pair.gateway.open()).rejects.toThrow(/no such port/);
      } finally {
        await pair.close();
      }
    });
  });
}
