import type { Actuator } from "../model/command.js";
import type { PollCommit } from "../model/cursor.js";
import type { Reading } from "../model/reading.js";
import type { BusStatus, DeviceStatus } from "../model/status.js";
import type { PointWriter } from "../model/writer.js";

/** The field devices behind a source and the buses they are on, typed (status, metrics, health). */
export interface SourceDetail {
  devices: DeviceStatus[];
  buses: BusStatus[];
}


/**
 * Something the agent polls at an interval: a simulated device, a Modbus line, an I²C bus.
 * `poll` returns the readings of one tick; a failing device yields readings of quality bad,
 * never a thrown error for the whole source.
 */
export interface Source {
  readonly name: string;
  /** Poll period in ms. */
  readonly interval: number;
  start?(): Promise<void>;
  poll(tickTs: number): Promise<Reading[]>;
  /**
   * A source that is pushed readings (a bridged board) and must know when they are safe: asked
   * right after each poll; its cursors commit in the same transaction as the readings, and
   * settled() says whether they did.
   */
  commit?(): PollCommit | null;
  stop?(): Promise<void>;
  /** Its devices and buses, typed: what status, metrics and the health message read. */
  status?(): SourceDetail;
  /** The type's own figures, passed through to `status --json` as they are. */
  health?(): unknown;
  /** Targets of commands this source brings itself (a bridged board's writable points). */
  actuators?(): Actuator[];
  /** Present on sources whose points an actuator may switch (a Modbus device's coils). */
  writePoint?: PointWriter["writePoint"];
}
