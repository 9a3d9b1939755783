/** Every Modbus profile the agent knows, keyed by the id configs use. */
import { epever } from "./profiles/epever.js";
import { sdm120 } from "./profiles/sdm120.js";
import { sdm630 } from "./profiles/sdm630.js";
import type { ModbusProfile } from "./types.js";

// Keys are spelled out (not derived from the ids) so the registry test can catch a mismatch.
const PROFILES: Readonly<Record<string, ModbusProfile>> = { sdm120, sdm630, epever };

export function listProfiles(): ModbusProfile[] {
  return Object.values(PROFILES);
}

export function getProfile(id: string): ModbusProfile | undefined {
  return Object.hasOwn(PROFILES, id) ? PROFILES[id] : undefined;
}

export function profileIds(): string[] {
  return Object.keys(PROFILES);
}
