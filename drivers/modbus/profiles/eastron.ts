// How Eastron meters answer block reads (devices.md "Block reads": Eastron protocol documents,
// ESPHome sdm_meter, nmakel/sdm_modbus, esphome/issues#3912).
import type { ModbusProfile } from "../types.js";

/**
 * Up to 40 values (80 registers) per read, and the unused registers between the input
 * parameters read as zero, so 0x0000–0x004F is one read. The range is the span devices.md
 * confirms (up to total active energy at 0x0156); the meters document more above it.
 */
export const EASTRON_BLOCK_READS: Pick<ModbusProfile, "maxRegisters" | "readable"> = {
  maxRegisters: 80,
  readable: [{ table: "input", first: 0x0000, last: 0x0157 }],
};
