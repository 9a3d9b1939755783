/**
 * What a simulated bridge board measures, as data: its own points and the child nodes it relays,
 * each point with a waveform hint or, if writable, its bounds and first value. The simulator
 * (board.ts) is generic over these.
 */

/** A slow sine with noise: mean + amplitude · sin(2π t / period + phase) + drift · t + noise. */
export interface Waveform {
  mean: number;
  amplitude: number;
  periodS: number;
  /** Uniform noise of ± this much on each reading. */
  noise: number;
  /** Change per hour of board uptime (a battery that runs down). */
  driftPerHour?: number;
  /** Digits kept, as a real sensor driver would round. */
  decimals: number;
}

export interface SimPointSpec {
  name: string;
  unit: string;
  type: "number" | "bool";
  /** Measured points move along this; writable points hold what was last written. */
  wave?: Waveform;
  writable?: { min?: number; max?: number; initial: number | boolean };
}

export interface SimChildSpec {
  /** The child node's id on the radio, as the board reports it (`<board>/<child>/<point>`). */
  id: string;
  points: readonly SimPointSpec[];
}

export interface BoardProfile {
  name: string;
  hardware: string;
  firmware: string;
  points: readonly SimPointSpec[];
  children: readonly SimChildSpec[];
}

const battery = (mean: number): SimPointSpec => ({
  name: "battery",
  unit: "V",
  type: "number",
  // A CR123A-class lithium cell: flat near 3.0 V for most of its life.
  wave: { mean, amplitude: 0.01, periodS: 86_400, noise: 0.005, driftPerHour: -0.0005, decimals: 3 },
});

/** A meeting-room node: its own climate sensors and a LED, relaying two battery sensors by radio. */
export const ROOM_NODE: BoardProfile = {
  name: "room-node",
  hardware: "room-node/rev-c",
  firmware: "1.4.2",
  points: [
    { name: "temperature", unit: "°C", type: "number", wave: { mean: 21.5, amplitude: 1.2, periodS: 1800, noise: 0.05, decimals: 2 } },
    { name: "humidity", unit: "%", type: "number", wave: { mean: 45, amplitude: 6, periodS: 2400, noise: 0.3, decimals: 1 } },
    { name: "co2", unit: "ppm", type: "number", wave: { mean: 700, amplitude: 250, periodS: 1200, noise: 8, decimals: 0 } },
    { name: "setpoint", unit: "°C", type: "number", writable: { min: 5, max: 30, initial: 21 } },
    { name: "led", unit: "", type: "bool", writable: { initial: false } },
  ],
  children: [
    {
      id: "sensor-a",
      points: [
        { name: "temperature", unit: "°C", type: "number", wave: { mean: 20.8, amplitude: 0.8, periodS: 1500, noise: 0.05, decimals: 2 } },
        battery(3.02),
      ],
    },
    {
      id: "sensor-b",
      points: [
        { name: "temperature", unit: "°C", type: "number", wave: { mean: 22.1, amplitude: 0.6, periodS: 2100, noise: 0.05, decimals: 2 } },
        battery(2.96),
      ],
    },
  ],
};

const PROFILES = new Map<string, BoardProfile>([[ROOM_NODE.name, ROOM_NODE]]);

export function boardProfile(name: string): BoardProfile | undefined {
  return PROFILES.get(name);
}

export function boardProfileNames(): string[] {
  return [...PROFILES.keys()];
}
