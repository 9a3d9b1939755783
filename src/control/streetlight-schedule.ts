/**
 * What a solar streetlight should do at a given instant — on, off or dimmed, and why — and when
 * that next changes. Pure: no I/O and no timers; time comes in as a number, so the same code runs
 * under fake time and over a whole year in tests. The controller applies the result to its lamp
 * (EPEVER load coil, GPIO relay, a dimmer) and sets one timer to `nextChange`.
 *
 * Decisions:
 * - A lamp that is not dimmable is either off or fully on: any level above 0 means 100. So a
 *   part-night "dim" window keeps such a lamp fully on (a dark street is the worse failure; the
 *   config check warns), and a presence boost switches it fully on.
 * - Polar day and night: where suncalc finds no rise or set (it returns null, or Invalid Date in
 *   older versions) on any of the days around `now`, the lamp follows the sun's altitude at that
 *   moment against the `on` event's altitude (offsets do not apply), and `nextChange` is where
 *   that altitude next crosses it (found to the second), or a re-check a day later.
 * - Part-night times are local wall-clock times in `timezone`. A time that falls in the
 *   spring-forward gap moves forward by the gap, a time in the repeated autumn hour takes its
 *   first occurrence (what Temporal calls "compatible").
 */
import type { OffEvent, OnEvent } from "../model/streetlight.js";
import { getPosition, getTimes, type SunTimeName, type SunTimes } from "suncalc";

const MINUTE = 60_000;
const DAY = 86_400_000;

/**
 * suncalc's events, by the apparent altitude of the sun's centre: sunrise / sunset at −0.833°
 * (upper limb on the horizon, refraction included); `dawn` / `dusk` at −6°, the start and end of
 * civil twilight, when artificial light becomes necessary.
 */
const EVENTS = {
  sunset: { key: "sunset", altitude: -0.833 },
  civil_dusk: { key: "dusk", altitude: -6 },
  sunrise: { key: "sunrise", altitude: -0.833 },
  civil_dawn: { key: "dawn", altitude: -6 },
} as const satisfies Record<string, { key: SunTimeName; altitude: number }>;

export { OFF_EVENTS, ON_EVENTS, type OffEvent, type OnEvent } from "../model/streetlight.js";

export const DEFAULT_DIM_LEVEL = 50;

export interface PartNightConfig {
  /** "HH:MM", local time in the schedule's `timezone`; the window may cross midnight. */
  from: string;
  to: string;
  /** "off", or "dim" to `level`. */
  mode: "off" | "dim";
  /** 0–100, default 50; only a dimmable lamp honours a level between 0 and 100. */
  level?: number;
}

export interface PresenceBoostConfig {
  /** 0–100 during a part-night window while presence holds. */
  level: number;
  /** How long one detection holds the boost (see `boostUntil`). */
  hold_min: number;
}

export interface StreetlightScheduleConfig {
  latitude: number;
  longitude: number;
  /** IANA zone of the site (e.g. Europe/Rome); used only for the part-night times. */
  timezone: string;
  /** Default "sunset". */
  on?: OnEvent;
  /** Default "sunrise". */
  off?: OffEvent;
  /** Minutes after the `on` event (negative: before). Expected within a few hours. */
  on_offset_min?: number;
  /** Minutes after the `off` event (negative: before). */
  off_offset_min?: number;
  part_night?: PartNightConfig;
  presence_boost?: PresenceBoostConfig;
  dimmable: boolean;
}

export interface ScheduleContext {
  /** Presence boost holds until this instant (ms). */
  presenceUntil?: number;
  /** A manual override; automatic mode resumes at exactly `until`. */
  override?: { on: boolean; level?: number; until: number };
}

export type LightReason = "night" | "day" | "part-night" | "presence" | "override";

export interface LightState {
  on: boolean;
  /** 0–100; `on` is `level > 0`. */
  level: number;
  reason: LightReason;
  /** The next instant (ms) at which on, level or reason changes, unless the context does. */
  nextChange: number;
}

export interface Transition {
  at: number;
  on: boolean;
  level: number;
  reason: LightReason;
}

export function desiredState(cfg: StreetlightScheduleConfig, nowMs: number, ctx: ScheduleContext = {}): LightState {
  const o = ctx.override;
  if (o && nowMs < o.until) {
    const level = o.on ? lampLevel(cfg, o.level ?? 100) : 0;
    return { on: level > 0, level, reason: "override", nextChange: o.until };
  }
  const sky = skyAt(cfg, nowMs);
  if (!sky.night) return { on: false, level: 0, reason: "day", nextChange: sky.next };
  const pn = cfg.part_night;
  if (!pn) return { on: true, level: 100, reason: "night", nextChange: sky.next };

  const win = partNightAt(pn, cfg.timezone, nowMs);
  const nextChange = Math.min(sky.next, win.next);
  if (!win.inside) return { on: true, level: 100, reason: "night", nextChange };
  const base = pn.mode === "off" ? 0 : lampLevel(cfg, pn.level ?? DEFAULT_DIM_LEVEL);
  const boost = cfg.presence_boost;
  if (boost && ctx.presenceUntil !== undefined && nowMs < ctx.presenceUntil) {
    const level = lampLevel(cfg, boost.level);
    if (level > base) return { on: true, level, reason: "presence", nextChange: Math.min(nextChange, ctx.presenceUntil) };
  }
  return { on: base > 0, level: base, reason: "part-night", nextChange };
}

/** Every instant in (fromMs, toMs] where the automatic schedule switches the lamp or changes its level. */
export function nextTransitions(cfg: StreetlightScheduleConfig, fromMs: number, toMs: number): Transition[] {
  const out: Transition[] = [];
  let state = desiredState(cfg, fromMs);
  while (state.nextChange <= toMs) {
    const at = state.nextChange;
    const next = desiredState(cfg, at);
    if (next.on !== state.on || next.level !== state.level) {
      out.push({ at, on: next.on, level: next.level, reason: next.reason });
    }
    state = next;
  }
  return out;
}

/** Until when one presence detection at `detectedAt` holds the boost. */
export function boostUntil(cfg: StreetlightScheduleConfig, detectedAt: number): number {
  return detectedAt + (cfg.presence_boost?.hold_min ?? 0) * MINUTE;
}

/** What a valid config may still get wrong, for the config check to print. */
export function scheduleWarnings(cfg: StreetlightScheduleConfig): string[] {
  const warnings: string[] = [];
  const pn = cfg.part_night;
  if (pn?.mode === "dim" && !cfg.dimmable) {
    warnings.push("part_night.mode: dim on a lamp that is not dimmable keeps it fully on in the window");
  }
  if (pn && clockMinutes(pn.from) === clockMinutes(pn.to)) warnings.push("part_night: from equals to, the window is empty");
  if (cfg.presence_boost && !pn) warnings.push("presence_boost: has no effect without part_night");
  return warnings;
}

function lampLevel(cfg: StreetlightScheduleConfig, level: number): number {
  const clamped = Math.min(100, Math.max(0, level));
  return cfg.dimmable || clamped === 0 ? clamped : 100;
}

// --- the sky ---------------------------------------------------------------------------------

interface Sky {
  night: boolean;
  next: number;
}

function instant(d: Date | null | undefined): number | undefined {
  const t = d?.getTime();
  return t === undefined || Number.isNaN(t) ? undefined : t;
}

/** Night is [on event + offset, next off event + offset), taken over the solar days around now. */
function skyAt(cfg: StreetlightScheduleConfig, now: number): Sky {
  const on = EVENTS[cfg.on ?? "sunset"];
  const off = EVENTS[cfg.off ?? "sunrise"];
  const onOffset = (cfg.on_offset_min ?? 0) * MINUTE;
  const offOffset = (cfg.off_offset_min ?? 0) * MINUTE;
  // getTimes gives the solar day nearest the instant (suncalc 2 anchors it; no local noon needed).
  const today = getTimes(new Date(now), cfg.latitude, cfg.longitude);
  const noon = today.solarNoon.getTime();
  const days: SunTimes[] = [-1, 0, 1, 2].map((k) =>
    k === 0 ? today : getTimes(new Date(noon + k * DAY), cfg.latitude, cfg.longitude),
  );
  const sets = days.map((d) => instant(d[on.key]));
  const rises = days.map((d) => instant(d[off.key]));
  if (sets.includes(undefined) || rises.includes(undefined)) return polarSky(cfg, now, on.altitude);

  const nights: [number, number][] = [];
  for (let k = 0; k < 3; k++) {
    const start = sets[k]! + onOffset;
    const end = rises[k + 1]! + offOffset;
    if (end > start) nights.push([start, end]); // offsets longer than the night leave no night
  }
  const night = nights.some(([start, end]) => start <= now && now < end);
  const ahead = nights.flat().filter((t) => t > now);
  return { night, next: ahead.length > 0 ? Math.min(...ahead) : now + DAY };
}

/** No rise or set near now: follow the sun's altitude; next change where it crosses the threshold. */
function polarSky(cfg: StreetlightScheduleConfig, now: number, threshold: number): Sky {
  // getPosition's altitude includes refraction (about 0.5° at the horizon); close enough here.
  const dark = (t: number) => getPosition(new Date(t), cfg.latitude, cfg.longitude).altitude < threshold;
  const night = dark(now);
  const step = 10 * MINUTE;
  for (let t = now + step; t <= now + DAY; t += step) {
    if (dark(t) === night) continue;
    let lo = t - step;
    let hi = t;
    while (hi - lo > 1000) {
      const mid = Math.floor((lo + hi) / 2);
      if (dark(mid) === night) lo = mid;
      else hi = mid;
    }
    return { night, next: hi };
  }
  return { night, next: now + DAY };
}

// --- part-night window in local wall-clock time ------------------------------------------------

function clockMinutes(hhmm: string): number {
  const m = /^([01]\d|2[0-3]):([0-5]\d)$/.exec(hhmm);
  if (!m) throw new Error(`part_night: "${hhmm}" is not a time HH:MM`);
  return Number(m[1]) * 60 + Number(m[2]);
}

/** Whether now is inside a window (of the local day before, of or after now), and its next edge. */
function partNightAt(pn: PartNightConfig, tz: string, now: number): { inside: boolean; next: number } {
  const from = clockMinutes(pn.from);
  const to = clockMinutes(pn.to);
  let inside = false;
  let next = Infinity;
  if (from === to) return { inside, next };
  const { year, month, day } = wallClock(now, tz);
  for (const d of [day - 1, day, day + 1]) {
    const start = localToUtc(year, month, d, from, tz);
    const end = localToUtc(year, month, from < to ? d : d + 1, to, tz);
    if (start <= now && now < end) inside = true;
    for (const t of [start, end]) if (t > now) next = Math.min(next, t);
  }
  return { inside, next };
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function wallClock(ms: number, tz: string): Record<"year" | "month" | "day" | "hour" | "minute" | "second", number> {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: tz,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(tz, f);
  }
  const p = { year: 0, month: 0, day: 0, hour: 0, minute: 0, second: 0 };
  for (const { type, value } of f.formatToParts(ms)) if (type in p) p[type as keyof typeof p] = Number(value);
  return p;
}

/** The zone's offset from UTC at an instant, in ms (+2 h for Rome in summer). */
function offsetAt(ms: number, tz: string): number {
  const p = wallClock(ms, tz);
  return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(ms / 1000) * 1000;
}

/** The instant a local date and minute of day means in `tz` (day may overflow the month). */
function localToUtc(year: number, month: number, day: number, minutes: number, tz: string): number {
  const wall = Date.UTC(year, month - 1, day, 0, minutes);
  // The offsets a day before and after cover both sides of a daylight-saving change.
  const candidates = [wall - offsetAt(wall - DAY, tz), wall - offsetAt(wall + DAY, tz)];
  const valid = candidates.filter((t) => t + offsetAt(t, tz) === wall);
  return valid.length > 0 ? Math.min(...valid) : candidates[0]!; // in the gap: shifted forward by it
}
