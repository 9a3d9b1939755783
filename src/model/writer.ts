/** Writes a point of a device and reads it back: what an actuator's relay drives (a Modbus coil). */
export interface PointWriter {
  readonly name: string;
  writePoint(point: string, value: number | boolean | string, opts?: { evenIfOffline?: boolean }): Promise<{ readBack: number | boolean | string }>;
}
