import { getTimes } from "suncalc";
import { describe, expect, it } from "vitest";
import {
  desiredState,
  nextTransitions,
  scheduleWarnings,
  type LightState,
  type StreetlightScheduleConfig,
} from "../../src/control/streetlight-schedule.js";

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const utc = (y: number, mo: number, d: number, h = 0, mi = 0) => Date.UTC(y, mo - 1, d, h, mi);

const MILAN: StreetlightScheduleConfig = { latitude: 45.46, longitude: 9.19, timezone: "Europe/Rome", dimmable: true };
const PART_NIGHT: StreetlightScheduleConfig = { ...MILAN, part_night: { from: "00:30", to: "05:00", mode: "off" } };

/** The switching instant in (lo, hi], to the millisecond, found by bisection on desiredState alone. */
function switchInstant(cfg: StreetlightScheduleConfig, lo: number, hi: number): number {
  const before = desiredState(cfg, lo).on;
  expect(desiredState(cfg, hi).on, new Date(hi).toISOString()).toBe(!before);
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (desiredState(cfg, mid).on === before) lo = mid;
    else hi = mid;
  }
  return hi;
}

/** Minutes since local midnight in Rome, as a wall clock shows them. */
function romeMinutes(ms: number): number {
  const f = new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Rome", hourCycle: "h23", hour: "2-digit", minute: "2-digit" });
  const [h, m] = f.format(ms).split(":").map(Number);
  return h! * 60 + m!;
}

const sunAt = (day: number) => getTimes(new Date(day + 12 * HOUR), MILAN.latitude, MILAN.longitude);
const pick = ({ on, level, reason }: LightState) => ({ on, level, reason });

describe("streetlight schedule: dusk to dawn in Milan, every day of 2026", () => {
  it.each([
    [0, 0],
    [15, -20],
    [-30, 45],
  ])("switches on at sunset + %i min and off at sunrise + %i min, within a minute", (onOffset, offOffset) => {
    const cfg = { ...MILAN, on_offset_min: onOffset, off_offset_min: offOffset };
    const late: string[] = [];
    let worst = 0;
    for (let day = utc(2026, 1, 1); day < utc(2027, 1, 1); day += DAY) {
      const sun = sunAt(day);
      // Evening: daylight at 12:00 UTC, lit by 23:00 UTC; morning: lit at 00:00 UTC, off by 10:00 UTC.
      const on = switchInstant(cfg, day + 12 * HOUR, day + 23 * HOUR) - (sun.sunset!.getTime() + onOffset * MINUTE);
      const off = switchInstant(cfg, day, day + 10 * HOUR) - (sun.sunrise!.getTime() + offOffset * MINUTE);
      worst = Math.max(worst, Math.abs(on), Math.abs(off));
      if (Math.abs(on) > MINUTE || Math.abs(off) > MINUTE) late.push(`${new Date(day).toISOString()}: on ${on} ms, off ${off} ms`);
    }
    expect(late).toEqual([]);
    expect(worst).toBeLessThanOrEqual(MINUTE);
  });

  it.each([
    ["spring forward", utc(2026, 3, 28), utc(2026, 3, 29), 60],
    ["fall back", utc(2026, 10, 24), utc(2026, 10, 25), -60],
  ])("on the %s day the switching stays with the sun while the local clock jumps an hour", (_, before, change, shift) => {
    const onBefore = switchInstant(MILAN, before + 12 * HOUR, before + 23 * HOUR);
    const onChange = switchInstant(MILAN, change + 12 * HOUR, change + 23 * HOUR);
    const offBefore = switchInstant(MILAN, before, before + 10 * HOUR);
    const offChange = switchInstant(MILAN, change, change + 10 * HOUR);
    for (const [at, ref] of [
      [onChange, sunAt(change).sunset!],
      [offChange, sunAt(change).sunrise!],
    ] as const) {
      expect(Math.abs(at - ref.getTime())).toBeLessThanOrEqual(MINUTE);
    }
    // In UTC a day apart, give or take two minutes; on the wall clock an hour apart.
    expect(Math.abs(onChange - onBefore - DAY)).toBeLessThan(2 * MINUTE);
    expect(Math.abs(offChange - offBefore - DAY)).toBeLessThan(2 * MINUTE);
    expect(Math.abs(romeMinutes(onChange) - romeMinutes(onBefore) - shift)).toBeLessThan(5);
    expect(Math.abs(romeMinutes(offChange) - romeMinutes(offBefore) - shift)).toBeLessThan(5);
  });

  it("switches on civil dusk and off at civil dawn when asked to", () => {
    const cfg: StreetlightScheduleConfig = { ...MILAN, on: "civil_dusk", off: "civil_dawn" };
    const day = utc(2026, 6, 21);
    const sun = sunAt(day);
    expect(Math.abs(switchInstant(cfg, day + 12 * HOUR, day + 23 * HOUR) - sun.dusk!.getTime())).toBeLessThanOrEqual(MINUTE);
    expect(Math.abs(switchInstant(cfg, day, day + 10 * HOUR) - sun.dawn!.getTime())).toBeLessThanOrEqual(MINUTE);
  });
});

describe("streetlight schedule: part-night 00:30–05:00 Rome time", () => {
  // Window edges written out in UTC: CET is UTC+1, CEST is UTC+2.
  it.each([
    ["a winter night", utc(2026, 1, 14, 23, 30), utc(2026, 1, 15, 4)],
    ["a summer night", utc(2026, 7, 14, 22, 30), utc(2026, 7, 15, 3)],
    ["the spring-forward night (3.5 h)", utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 3)],
    ["the fall-back night (5.5 h)", utc(2026, 10, 24, 22, 30), utc(2026, 10, 25, 4)],
  ])("is off inside the window and on either side, on %s", (_, start, end) => {
    expect(pick(desiredState(PART_NIGHT, start - SECOND))).toEqual({ on: true, level: 100, reason: "night" });
    expect(desiredState(PART_NIGHT, start - SECOND).nextChange).toBe(start);
    expect(pick(desiredState(PART_NIGHT, start))).toEqual({ on: false, level: 0, reason: "part-night" });
    expect(desiredState(PART_NIGHT, start + HOUR).on).toBe(false);
    expect(desiredState(PART_NIGHT, end - SECOND)).toMatchObject({ on: false, nextChange: end });
    expect(pick(desiredState(PART_NIGHT, end))).toEqual({ on: true, level: 100, reason: "night" });
    expect(nextTransitions(PART_NIGHT, start - 2 * HOUR, end + 20 * MINUTE)).toEqual([
      { at: start, on: false, level: 0, reason: "part-night" },
      { at: end, on: true, level: 100, reason: "night" },
    ]);
  });

  it("puts an edge inside the changed hour where the wall clock meets it first", () => {
    const cfg: StreetlightScheduleConfig = { ...MILAN, part_night: { from: "02:30", to: "04:00", mode: "off" } };
    // 02:30 does not exist on 29 March: the window opens when the clock shows 03:30 CEST.
    expect(nextTransitions(cfg, utc(2026, 3, 28, 22), utc(2026, 3, 29, 4)).map((s) => s.at)).toEqual([
      utc(2026, 3, 29, 1, 30),
      utc(2026, 3, 29, 2),
    ]);
    // 02:30 happens twice on 25 October: the window opens at the first and stays shut through the repeat.
    expect(nextTransitions(cfg, utc(2026, 10, 24, 22), utc(2026, 10, 25, 5)).map((s) => s.at)).toEqual([
      utc(2026, 10, 25, 0, 30),
      utc(2026, 10, 25, 3),
    ]);
  });

  it("dims to the level on a dimmable lamp, and keeps a non-dimmable lamp fully on", () => {
    const inside = utc(2026, 1, 15, 1);
    const dim: StreetlightScheduleConfig = { ...MILAN, part_night: { from: "00:30", to: "05:00", mode: "dim", level: 30 } };
    expect(pick(desiredState(dim, inside))).toEqual({ on: true, level: 30, reason: "part-night" });
    expect(pick(desiredState({ ...dim, dimmable: false }, inside))).toEqual({ on: true, level: 100, reason: "part-night" });
    expect(scheduleWarnings({ ...dim, dimmable: false })).toHaveLength(1);
    expect(scheduleWarnings(dim)).toEqual([]);
  });

  it("does not light the lamp when the window reaches into daylight", () => {
    const cfg: StreetlightScheduleConfig = { ...MILAN, part_night: { from: "04:00", to: "09:00", mode: "dim", level: 40 } };
    expect(desiredState(cfg, utc(2026, 7, 15, 3)).level).toBe(40); // 05:00 CEST, before sunrise
    expect(pick(desiredState(cfg, utc(2026, 7, 15, 5)))).toEqual({ on: false, level: 0, reason: "day" });
  });
});

describe("streetlight schedule: presence boost", () => {
  const cfg: StreetlightScheduleConfig = { ...PART_NIGHT, presence_boost: { level: 80, hold_min: 5 } };
  const t = utc(2026, 1, 15, 1); // 02:00 CET, inside the window

  it("raises the lamp to the boost level until presenceUntil, then back to off", () => {
    const until = t + 5 * MINUTE;
    expect(desiredState(cfg, t, { presenceUntil: until })).toEqual({ on: true, level: 80, reason: "presence", nextChange: until });
    expect(desiredState(cfg, until - 1, { presenceUntil: until }).level).toBe(80);
    expect(pick(desiredState(cfg, until, { presenceUntil: until }))).toEqual({ on: false, level: 0, reason: "part-night" });
    expect(desiredState({ ...cfg, dimmable: false }, t, { presenceUntil: until }).level).toBe(100);
  });

  it("changes nothing outside the window, in daylight, or below a brighter dim level", () => {
    expect(pick(desiredState(cfg, utc(2026, 1, 14, 22), { presenceUntil: Infinity }))).toEqual({ on: true, level: 100, reason: "night" });
    expect(desiredState(cfg, utc(2026, 1, 15, 12), { presenceUntil: Infinity }).on).toBe(false);
    const dim90: StreetlightScheduleConfig = { ...cfg, part_night: { from: "00:30", to: "05:00", mode: "dim", level: 90 } };
    expect(pick(desiredState(dim90, t, { presenceUntil: t + MINUTE }))).toEqual({ on: true, level: 90, reason: "part-night" });
  });
});

describe("streetlight schedule: manual override", () => {
  it("keeps the lamp on in daylight until it expires, and is automatic again at exactly `until`", () => {
    const noon = utc(2026, 6, 15, 10);
    const override = { on: true, until: noon + 2 * HOUR };
    expect(desiredState(MILAN, noon, { override })).toEqual({ on: true, level: 100, reason: "override", nextChange: override.until });
    expect(desiredState(MILAN, override.until - 1, { override }).on).toBe(true);
    expect(pick(desiredState(MILAN, override.until, { override }))).toEqual({ on: false, level: 0, reason: "day" });
    expect(desiredState(MILAN, noon, { override: { ...override, level: 40 } }).level).toBe(40);
    expect(desiredState({ ...MILAN, dimmable: false }, noon, { override: { ...override, level: 40 } }).level).toBe(100);
  });

  it("keeps the lamp off at night until it expires, over a part-night window too", () => {
    const evening = utc(2026, 1, 14, 21);
    const override = { on: false, until: evening + 30 * MINUTE };
    expect(pick(desiredState(PART_NIGHT, evening, { override }))).toEqual({ on: false, level: 0, reason: "override" });
    expect(pick(desiredState(PART_NIGHT, override.until, { override }))).toEqual({ on: true, level: 100, reason: "night" });
    const overWindow = { on: true, until: utc(2026, 1, 15, 2) };
    expect(desiredState(PART_NIGHT, utc(2026, 1, 15, 1), { override: overWindow }).on).toBe(true);
    expect(desiredState(PART_NIGHT, overWindow.until, { override: overWindow }).reason).toBe("part-night");
  });
});

describe("streetlight schedule: nextChange", () => {
  it.each<[string, StreetlightScheduleConfig]>([
    ["plain", { ...MILAN, on_offset_min: 10, off_offset_min: -10 }],
    ["part-night dim", { ...MILAN, part_night: { from: "23:15", to: "04:45", mode: "dim", level: 25 } }],
    ["part-night on a non-dimmable lamp", { ...MILAN, dimmable: false, part_night: { from: "00:30", to: "05:00", mode: "dim" } }],
  ])("is the next instant the state changes, all through 2026 (%s)", (_, cfg) => {
    for (let t = utc(2026, 1, 1); t < utc(2027, 1, 1); t += 7 * HOUR + 13 * MINUTE) {
      const now = desiredState(cfg, t);
      expect(now.nextChange).toBeGreaterThan(t);
      expect(now.nextChange - t).toBeLessThan(DAY);
      expect(pick(desiredState(cfg, Math.floor((t + now.nextChange) / 2)))).toEqual(pick(now));
      expect(pick(desiredState(cfg, now.nextChange - 1))).toEqual(pick(now));
      expect(pick(desiredState(cfg, now.nextChange))).not.toEqual(pick(now));
    }
  });
});

describe("streetlight schedule: polar day and night at 78 N", () => {
  const svalbard: StreetlightScheduleConfig = { latitude: 78, longitude: 15.6, timezone: "Europe/Oslo", dimmable: true };

  it("stays off through the midnight sun and on through the polar night", () => {
    expect(getTimes(new Date(utc(2026, 6, 21, 12)), 78, 15.6).sunset).toBeNull(); // the case under test
    expect(getTimes(new Date(utc(2026, 12, 21, 12)), 78, 15.6).sunrise).toBeNull();
    for (let h = 0; h < 24; h += 3) {
      expect(pick(desiredState(svalbard, utc(2026, 6, 21, h)))).toEqual({ on: false, level: 0, reason: "day" });
      expect(pick(desiredState(svalbard, utc(2026, 12, 21, h)))).toEqual({ on: true, level: 100, reason: "night" });
    }
    expect(nextTransitions(svalbard, utc(2026, 6, 1), utc(2026, 7, 1))).toEqual([]);
    expect(nextTransitions(svalbard, utc(2026, 12, 1), utc(2027, 1, 1))).toEqual([]);
  });

  it("walks the whole year, through the polar edges, switching on and off in turn", () => {
    const cfg: StreetlightScheduleConfig = { ...svalbard, on_offset_min: 15, off_offset_min: -15, part_night: { from: "00:30", to: "05:00", mode: "off" } };
    const steps = nextTransitions(cfg, utc(2026, 1, 1), utc(2027, 1, 1));
    expect(steps.length).toBeGreaterThan(100);
    expect(steps.every((s, i) => i === 0 || s.on !== steps[i - 1]!.on)).toBe(true);
  });
});
