// Eastron SDM120-Modbus user manual V2.9 (devices.md): FC04 float32 registers, high word first.
import type { ModbusProfile } from "../types.js";
import { EASTRON_BLOCK_READS } from "./eastron.js";
import { constant, counter, f32hold, f32in, NO_UNIT, sine, u16hold, walk } from "./points.js";

export const sdm120: ModbusProfile = {
  id: "sdm120",
  vendor: "Eastron",
  model: "SDM120-Modbus",
  description: "Single-phase energy meter, 45 A direct connection",
  source: "Eastron SDM120M user manual V2.9",
  serial: { baud: 2400, parity: "none", dataBits: 8, stopBits: 1, unit: 1 },
  ...EASTRON_BLOCK_READS,
  points: [
    f32in("voltage", 0x0000, "V", sine(227, 233, 60)),
    f32in("current", 0x0006, "A", walk(0.2, 10)),
    f32in("active_power", 0x000c, "W", walk(0, 2300)),
    f32in("apparent_power", 0x0012, "VA", walk(0, 2400)),
    f32in("reactive_power", 0x0018, "var", walk(-300, 300)),
    f32in("power_factor", 0x001e, NO_UNIT, walk(0.9, 1)),
    f32in("frequency", 0x0046, "Hz", walk(49.9, 50.1)),
    f32in("import_active_energy", 0x0048, "kWh", counter(0.0005)),
    f32in("export_active_energy", 0x004a, "kWh", counter(0.00005)),
    f32in("import_reactive_energy", 0x004c, "kvarh", counter(0.0001)),
    f32in("export_reactive_energy", 0x004e, "kvarh", counter(0.00002)),
    f32in("total_active_energy", 0x0156, "kWh", counter(0.00055)),
    // Settings take effect only in set-up mode and after a power cycle (manual).
    f32hold("meter_id", 0x0014, NO_UNIT, constant(1), { writable: true, description: "Modbus unit id, 1–247" }),
    u16hold("meter_code", 0xfc02, 1, NO_UNIT, constant(0x0020), { description: "Model code, 0x0020 on the SDM120" }),
  ],
  // Read as one uint16 register, as devices.md gives it (0xFC00–0xFC01 is the uint32 serial number).
  identify: [{ table: "holding", address: 0xfc02, type: "uint16", equals: 0x0020 }],
};
