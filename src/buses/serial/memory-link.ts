/**
 * Two ends of an in-memory byte pipe: what one writes, the other receives on a later tick (as a
 * real port would deliver it). The simulated board and the demo use it; `unplug()` closes both
 * ends as a pulled USB cable would, and `faults` lets tests spoil bytes on the way.
 */
import type { ByteLink } from "./byte-link.js";

export interface PipeFaults {
  /** Applied to every chunk one end writes; returns what the other end receives (maybe nothing). */
  transform?(chunk: Uint8Array, from: "a" | "b"): Uint8Array | null;
}

class MemoryEnd implements ByteLink {
  peer: MemoryEnd | null = null;
  private open_ = false;
  private readonly data: Array<(chunk: Uint8Array) => void> = [];
  private readonly closed: Array<(reason: string) => void> = [];

  constructor(
    readonly name: string,
    private readonly side: "a" | "b",
    private readonly pipe: MemoryPipe,
  ) {}

  get isOpen(): boolean {
    return this.open_;
  }

  async open(): Promise<void> {
    if (this.pipe.unplugged) throw new Error(`${this.name}: no such port (unplugged)`);
    this.open_ = true;
  }

  async write(bytes: Uint8Array): Promise<boolean> {
    if (!this.open_) return false;
    const peer = this.peer;
    let chunk: Uint8Array | null = Uint8Array.from(bytes);
    if (this.pipe.faults.transform) chunk = this.pipe.faults.transform(chunk, this.side);
    if (chunk && chunk.length > 0 && peer) {
      const c = chunk;
      setImmediate(() => peer.deliver(c));
    }
    return true;
  }

  deliver(chunk: Uint8Array): void {
    if (!this.open_) return;
    for (const l of this.data) l(chunk);
  }

  onData(listener: (chunk: Uint8Array) => void): void {
    this.data.push(listener);
  }

  onClose(listener: (reason: string) => void): void {
    this.closed.push(listener);
  }

  async close(): Promise<void> {
    this.open_ = false;
  }

  /** The cable went: closed from outside, listeners told. */
  cut(reason: string): void {
    if (!this.open_) return;
    this.open_ = false;
    for (const l of this.closed) l(reason);
  }
}

export class MemoryPipe {
  readonly a: ByteLink;
  readonly b: ByteLink;
  unplugged = false;
  faults: PipeFaults = {};

  constructor(name: string) {
    const a = new MemoryEnd(`memory:${name}`, "a", this);
    const b = new MemoryEnd(`memory:${name}#board`, "b", this);
    a.peer = b;
    b.peer = a;
    this.a = a;
    this.b = b;
  }

  /** Both ends close, as when the cable is pulled; open() fails until plug(). */
  unplug(): void {
    this.unplugged = true;
    (this.a as MemoryEnd).cut("unplugged");
    (this.b as MemoryEnd).cut("unplugged");
  }

  plug(): void {
    this.unplugged = false;
  }
}
