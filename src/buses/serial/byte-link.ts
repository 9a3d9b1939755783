/**
 * A byte stream to one board: a serial port, or (demo, tests) one end of an in-memory pipe. The
 * bridge speaks its framed protocol over it and knows nothing of what is underneath. One
 * interface, a real and a simulated implementation, one contract suite (test/contract/byte-link).
 */
export interface ByteLink {
  /** What a technician calls it: `/dev/ttyACM0`, `memory:room-node`. */
  readonly name: string;
  readonly isOpen: boolean;
  /** Opens it; a port in use by another process is refused with a message that says so. */
  open(): Promise<void>;
  /** Writes bytes; resolves once they left for the driver. Bytes written while closed are dropped (false). */
  write(bytes: Uint8Array): Promise<boolean>;
  /** Bytes as they come, in any chunking. */
  onData(listener: (chunk: Uint8Array) => void): void;
  /** Called once when the link closes by itself (unplug, the other end went away), not on close(). */
  onClose(listener: (reason: string) => void): void;
  close(): Promise<void>;
}
