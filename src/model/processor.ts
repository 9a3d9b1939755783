import type { Reading } from "./reading.js";

/**
 * Derives figures on the gateway from the readings of the sources: room comfort, occupancy,
 * energy balances. A processor sees every tick's readings, returns derived readings (stored and
 * sent like any other) and events: state changes such as "room occupied" or "CO₂ band poor",
 * published on the events topic and kept in the outbox so none is lost.
 */
export interface ProcessorOutput {
  readings: Reading[];
  /** An event is a reading of a state that changed: point `<name>/<what>`, value the new state. */
  events: Reading[];
}

export interface Processor {
  readonly name: string;
  /** Called with each tick's readings (of every source, in the order they were polled). */
  process(readings: readonly Reading[], now: number): ProcessorOutput;
  /** Called every second, for what changes with time alone (a presence hold running out). */
  tick?(now: number): ProcessorOutput;
}

export const NOTHING: ProcessorOutput = { readings: [], events: [] };
