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
  stop?(): Promise<void>;
  /** Its devices and buses, typed: what status, metrics and the health message read. */
  status?(): SourceDetail;
  /** The type's own figures, passed through to `status --json` as they are. */
  health?(): unknown;
  /** Present on sources whose points an actuator may switch (a Modbus device's coils). */
  writePoint?: PointWriter["writePoint"];
}
