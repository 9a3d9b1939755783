// EPEVER "B-Series MODBUS Specification V2.3" and "LS-B Series Protocol V1.1" (devices.md):
// FC04 registers ÷100 unless noted; 32-bit values are two registers, low word first.
import type { ModbusProfile } from "../types.js";
import {
  coil,
  constant,
  discrete,
  i16in,
  i32in_lowfirst,
  NO_UNIT,
  u16in,
  u32in_lowfirst,
  walk,
} from "./points.js";

export const epever: ModbusProfile = {
  id: "epever",
  vendor: "EPEVER",
  model: "Tracer / LandStar",
  description: "Solar charge controller with a switched load output (solar streetlights)",
  source: "EPEVER B-Series MODBUS Specification V2.3; LS-B Series Protocol V1.1",
  // devices.md flags the id: one document says 0 (broadcast in Modbus), so 1 it is.
  serial: { baud: 115200, parity: "none", dataBits: 8, stopBits: 1, unit: 1 },
  // devices.md "Block reads" (a Tracer 3210A): reserved registers inside 0x3100–0x3111 read,
  // reads past the implemented blocks are refused, 0x311A, 0x311B and 0x311D answer only alone.
  // Elsewhere a read may span only documented addresses. Other models may allow more: the
  // planner still learns from refusals.
  readable: [
    { table: "input", first: 0x3100, last: 0x3111 },
    { table: "input", first: 0x311a, last: 0x311a },
    { table: "input", first: 0x311b, last: 0x311b },
    { table: "input", first: 0x311d, last: 0x311d },
    { table: "input", first: 0x3200, last: 0x3202 },
    { table: "input", first: 0x3300, last: 0x3313 },
    { table: "input", first: 0x331a, last: 0x331c },
    { table: "coil", first: 0x0000, last: 0x0003 },
    { table: "coil", first: 0x0005, last: 0x0006 },
    { table: "coil", first: 0x000d, last: 0x000e },
    { table: "discrete", first: 0x2000, last: 0x2000 },
    { table: "discrete", first: 0x200c, last: 0x200c },
  ],
  points: [
    u16in("pv_voltage", 0x3100, 0.01, "V", walk(0, 22)),
    u16in("pv_current", 0x3101, 0.01, "A", walk(0, 3.5)),
    u32in_lowfirst("pv_power", 0x3102, 0.01, "W", walk(0, 60)),
    u16in("battery_voltage", 0x3104, 0.01, "V", walk(12, 14.4)),
    u16in("charging_current", 0x3105, 0.01, "A", walk(0, 4.5)),
    u32in_lowfirst("charging_power", 0x3106, 0.01, "W", walk(0, 60)),
    u16in("load_voltage", 0x310c, 0.01, "V", walk(12, 14.4)),
    u16in("load_current", 0x310d, 0.01, "A", walk(0, 3)),
    u32in_lowfirst("load_power", 0x310e, 0.01, "W", walk(0, 36)),
    // Signed: streetlight batteries see frosts; below 327 °C int16 and uint16 read the same.
    i16in("battery_temperature", 0x3110, 0.01, "°C", walk(-5, 40)),
    i16in("internal_temperature", 0x3111, 0.01, "°C", walk(0, 50)),
    u16in("battery_soc", 0x311a, 1, "%", walk(40, 100)),
    u16in("rated_voltage", 0x311d, 0.01, "V", constant(12), { description: "System rated voltage (12, 24, 36, 48 V)" }),
    u16in("battery_status", 0x3200, 1, NO_UNIT, constant(0), { description: "D3–0 voltage state, D7–4 temperature" }),
    u16in("charging_status", 0x3201, 1, NO_UNIT, constant(0), { description: "D3–2: 0 none, 1 float, 2 boost, 3 equalize" }),
    u16in("discharging_status", 0x3202, 1, NO_UNIT, constant(0)),
    u16in("stat_battery_voltage", 0x331a, 0.01, "V", walk(12, 14.4), { description: "Battery voltage, statistics block" }),
    i32in_lowfirst("battery_net_current", 0x331b, 0.01, "A", walk(-5, 5), { description: "Positive while charging" }),
    coil("charging_enabled", 0x0000, true),
    // The lamp of a streetlight; obeyed in manual output control mode (coil 0x0001 = 1).
    coil("load_output", 0x0002, true, { description: "Manual load control" }),
    coil("force_load", 0x0006, true, { description: "Force load on/off (test)" }),
    discrete("over_temperature", 0x2000),
    discrete("night", 0x200c, { description: "Day/night from PV voltage: 1 = night" }),
  ],
  // Rated voltage is raw here (1200 = 12 V); battery voltage is scaled.
  identify: [
    { table: "input", address: 0x311d, type: "uint16", min: 1200, max: 4800 },
    { table: "input", address: 0x3104, type: "uint16", scale: 0.01, min: 8, max: 70 },
  ],
};
