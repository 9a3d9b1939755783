/**
 * A real serial port as a ByteLink (node-serialport). Opened exclusively (TIOCEXCL: a second
 * opener, in this process or another, is refused with "in use"), without dropping DTR at close
 * (hupcl off) so that boards resetting on DTR are not reset by the gateway's comings and goings.
 * Linux raises DTR when a tty is opened whatever we ask; a board that resets then is given
 * `boot_delay` by the bridge before the first hello. An unplug shows as an error or a close,
 * but node-serialport does not always report it (serialport#2043): the bridge relies on
 * heartbeats, not on this.
 */
import { SerialPort } from "serialport";
import type { ByteLink } from "./byte-link.js";

export interface SerialLinkOptions {
  path: string;
  baudRate: number;
}

export class SerialLink implements ByteLink {
  private port: SerialPort | null = null;
  private readonly data: Array<(chunk: Uint8Array) => void> = [];
  private readonly closed: Array<(reason: string) => void> = [];
  private closing = false;

  constructor(private readonly opts: SerialLinkOptions) {}

  get name(): string {
    return this.opts.path;
  }

  get isOpen(): boolean {
    return this.port?.isOpen ?? false;
  }

  async open(): Promise<void> {
    if (this.port?.isOpen) return;
    const port = new SerialPort({ path: this.opts.path, baudRate: this.opts.baudRate, autoOpen: false, lock: true, hupcl: false });
    await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(new Error(describeOpenError(this.opts.path, err))) : resolve())));
    this.closing = false;
    this.port = port;
    port.on("data", (chunk: Buffer) => {
      for (const l of this.data) l(chunk);
    });
    port.on("error", () => {
      // Reported through close (or not at all: see the header); nothing to do here.
    });
    port.on("close", (err: Error | null) => {
      if (this.port === port) this.port = null;
      if (this.closing) return;
      const reason = err?.message ?? "closed";
      for (const l of this.closed) l(reason);
    });
  }

  async write(bytes: Uint8Array): Promise<boolean> {
    const port = this.port;
    if (!port?.isOpen) return false;
    return new Promise<boolean>((resolve) => {
      port.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), (err) => resolve(!err));
    });
  }

  /** Drops DTR and RTS for 100 ms and raises them again: what resets most boards (ESP32, Arduino). */
  async pulseReset(): Promise<void> {
    const port = this.port;
    if (!port?.isOpen) return;
    const set = (on: boolean) => new Promise<void>((resolve, reject) => port.set({ dtr: on, rts: on }, (err) => (err ? reject(err) : resolve())));
    await set(false);
    await new Promise((r) => setTimeout(r, 100));
    await set(true);
  }

  onData(listener: (chunk: Uint8Array) => void): void {
    this.data.push(listener);
  }

  onClose(listener: (reason: string) => void): void {
    this.closed.push(listener);
  }

  async close(): Promise<void> {
    const port = this.port;
    this.port = null;
    this.closing = true;
    if (!port?.isOpen) return;
    await new Promise<void>((resolve) => port.close(() => resolve()));
  }
}

/** The open error as a technician should read it: in use, missing, not allowed. */
export function describeOpenError(path: string, err: Error): string {
  const m = err.message;
  if (/EBUSY|Resource busy|Cannot lock port/i.test(m)) return `${path} is in use by another process (only one may own a board's port; see: fuser -v ${path})`;
  if (/ENOENT|No such file/i.test(m)) return `${path}: no such port (is the board plugged in?)`;
  if (/EACCES|Permission denied/i.test(m)) return `${path}: permission denied (is the user in the dialout group?)`;
  return `${path}: ${m}`;
}
