/** Every Modbus profile the agent knows, keyed by the id configs use. */
import { epever } from "./profiles/epever.js";
import { sdm120 } from "./profiles/sdm120.js";
import { sdm630 } from "./profiles/sdm630.js";
import type { ModbusPoint, ModbusProfile } from "./types.js";

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

/**
 * The points a configured device reads: its profile's (only the `only` ones, when given) plus
 * the points described in the config. The config check, the poller and the tools all use this.
 */
export function devicePoints(dev: { profile?: string | undefined; only?: string[] | undefined; points: readonly ModbusPoint[] }): ModbusPoint[] {
  const profile = dev.profile ? getProfile(dev.profile) : undefined;
  const fromProfile = (profile?.points ?? []).filter((p) => !dev.only || dev.only.includes(p.name));
  return [...fromProfile, ...dev.points];
}
