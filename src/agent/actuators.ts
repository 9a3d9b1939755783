/**
 * Builds the streetlights and charging points the config declares. They are both actuators
 * (reachable by commands) and processors (they see every tick's readings: meter figures,
 * presence). Their relays are coils of the Modbus devices the sources poll, so a write takes
 * its turn on the same line as the polls.
 */
import type { ChargerConfig, RelayConfig, StreetlightConfig } from "../config/control-schema.js";
import { Charger } from "../control/charger.js";
import { ModbusCoilRelay, type Relay, SimRelay } from "../control/relay.js";
import { Streetlight } from "../control/streetlight.js";
import type { Logger } from "../model/logger.js";
import type { Source } from "../sources/source.js";

export interface ControlDeps {
  sources: readonly Source[];
  log: Logger;
  /** Builds a GPIO output relay (the GPIO backend lives with the Sala Smart work). */
  gpioRelay?: (pin: number, activeLow: boolean) => Relay;
}

export function createRelay(cfg: RelayConfig, owner: string, deps: ControlDeps): Relay {
  if ("simulated" in cfg) return new SimRelay(`${owner} simulated relay`);
  if ("modbus" in cfg) {
    // A source that can write its points (a Modbus device): the relay takes its turn on its line.
    const device = deps.sources.find((s) => s.name === cfg.modbus.device && s.writePoint);
    if (!device?.writePoint) throw new Error(`${owner}.relay: no Modbus device named '${cfg.modbus.device}'`);
    const writePoint = device.writePoint.bind(device);
    return new ModbusCoilRelay({ name: device.name, writePoint }, cfg.modbus.point);
  }
  if (!deps.gpioRelay) throw new Error(`${owner}.relay: GPIO outputs are not available`);
  return deps.gpioRelay(cfg.gpio.pin, cfg.gpio.active_low);
}

export function createStreetlight(cfg: StreetlightConfig, deps: ControlDeps): Streetlight {
  return new Streetlight(
    {
      name: cfg.name,
      relay: createRelay(cfg.relay, cfg.name, deps),
      schedule: {
        latitude: cfg.latitude,
        longitude: cfg.longitude,
        timezone: cfg.timezone,
        dimmable: cfg.dimmable,
        on: cfg.on,
        off: cfg.off,
        on_offset_min: cfg.on_offset,
        off_offset_min: cfg.off_offset,
        ...(cfg.part_night ? { part_night: cfg.part_night } : {}),
        ...(cfg.presence_boost ? { presence_boost: { level: cfg.presence_boost.level, hold_min: cfg.presence_boost.hold / 60_000 } } : {}),
      },
      ...(cfg.presence ? { presencePoint: cfg.presence } : {}),
      maxOverrideS: Math.round(cfg.max_override / 1000),
      reassertMs: 10 * 60_000,
    },
    deps.log.child({ light: cfg.name }),
  );
}

export function createCharger(cfg: ChargerConfig, deps: ControlDeps): Charger {
  return new Charger(
    {
      name: cfg.name,
      relay: createRelay(cfg.relay, cfg.name, deps),
      powerPoint: `${cfg.meter}/${cfg.power_point}`,
      energyPoint: `${cfg.meter}/${cfg.energy_point}`,
      onlinePoint: `${cfg.meter}/online`,
      maxPowerW: cfg.max_power,
      maxKwh: cfg.max_kwh,
      maxMinutes: Math.round(cfg.max_duration / 60_000),
      meterTimeoutMs: cfg.meter_timeout,
    },
    deps.log.child({ charger: cfg.name }),
  );
}
