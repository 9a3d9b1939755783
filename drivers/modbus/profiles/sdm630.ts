// Eastron SDM630 register map as in reaper7/SDM_Energy_Meter SDM.h and volkszaehler/mbmd sdm.go
// (devices.md): FC04 float32 registers, high word first.
import type { ModbusProfile } from "../types.js";
import { EASTRON_BLOCK_READS } from "./eastron.js";
import { constant, counter, f32hold, f32in, NO_UNIT, sine, walk } from "./points.js";

const phases = [1, 2, 3] as const;

export const sdm630: ModbusProfile = {
  id: "sdm630",
  vendor: "Eastron",
  model: "SDM630-Modbus",
  description: "Three-phase energy meter",
  source: "reaper7/SDM_Energy_Meter SDM.h; volkszaehler/mbmd meters/rs485/sdm.go",
  // devices.md flags parity: some sources say even. None is the default here; configs may override.
  serial: { baud: 9600, parity: "none", dataBits: 8, stopBits: 1, unit: 1 },
  ...EASTRON_BLOCK_READS,
  points: [
    ...phases.map((n) => f32in(`voltage_l${n}`, 0x0000 + 2 * (n - 1), "V", sine(227, 233, 60))),
    ...phases.map((n) => f32in(`current_l${n}`, 0x0006 + 2 * (n - 1), "A", walk(0.5, 25))),
    ...phases.map((n) => f32in(`active_power_l${n}`, 0x000c + 2 * (n - 1), "W", walk(0, 5500))),
    ...phases.map((n) => f32in(`power_factor_l${n}`, 0x001e + 2 * (n - 1), NO_UNIT, walk(0.9, 1))),
    f32in("current_sum", 0x0030, "A", walk(1.5, 75)),
    f32in("active_power_total", 0x0034, "W", walk(0, 16500)),
    f32in("apparent_power_total", 0x0038, "VA", walk(0, 17000)),
    f32in("reactive_power_total", 0x003c, "var", walk(-2000, 2000)),
    f32in("power_factor_total", 0x003e, NO_UNIT, walk(0.9, 1)),
    f32in("frequency", 0x0046, "Hz", walk(49.9, 50.1)),
    f32in("import_active_energy", 0x0048, "kWh", counter(0.002)),
    f32in("export_active_energy", 0x004a, "kWh", counter(0.0002)),
    f32in("import_reactive_energy", 0x004c, "kvarh", counter(0.0004)),
    f32in("export_reactive_energy", 0x004e, "kvarh", counter(0.00005)),
    f32in("total_active_energy", 0x0156, "kWh", counter(0.0022)),
    // Settings take effect only in set-up mode and after a power cycle (manual).
    f32hold("meter_id", 0x0014, NO_UNIT, constant(1), { writable: true, description: "Modbus unit id, 1–247" }),
  ],
  // L2 and L3 voltages are there; an SDM120 reads zeros at those addresses (unused Eastron
  // registers read as zero), so `modbus scan` tries the SDM120's meter code first (registry order).
  identify: [
    { table: "input", address: 0x0046, type: "float32", min: 45, max: 65 },
    { table: "input", address: 0x0002, type: "float32", min: 0, max: 300 },
    { table: "input", address: 0x0004, type: "float32", min: 0, max: 300 },
  ],
};
