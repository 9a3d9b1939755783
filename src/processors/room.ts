/**
 * Room metrics derived on the gateway from the readings of the sources:
 * - occupancy: occupied on presence, free once no presence was seen for `hold`;
 * - CO₂ band: good below `good` ppm, fair below `fair`, poor above; a band is left for a
 *   better one only `hysteresis` ppm below its threshold, so a value hovering at 800 ppm does
 *   not flood the platform with events;
 * - dew point from temperature and relative humidity (Magnus formula).
 *
 * Derived readings are `<room>/occupied`, `<room>/co2_band`, `<room>/dew_point`. A change of
 * occupancy or band is also an event; the first state after a start counts as a change, so the
 * platform learns the state after a restart.
 */
import type { RoomConfig } from "../config/schema.js";
import type { Reading } from "../model/reading.js";
import type { Processor, ProcessorOutput } from "../model/processor.js";

export type Co2Band = "good" | "fair" | "poor";

/**
 * Magnus coefficients over water after Sonntag (1990), as Sensirion's application note
 * "Dew-point Calculation" gives them: a = 17.62, b = 243.12 °C, for −45…60 °C.
 */
export const MAGNUS = { a: 17.62, b: 243.12 } as const;

/** Dew point in °C; null when humidity is not above 0 %. */
export function dewPoint(celsius: number, relativeHumidity: number): number | null {
  if (!(relativeHumidity > 0)) return null;
  const rh = Math.min(100, relativeHumidity);
  const gamma = Math.log(rh / 100) + (MAGNUS.a * celsius) / (MAGNUS.b + celsius);
  return (MAGNUS.b * gamma) / (MAGNUS.a - gamma);
}

/** The band of a CO₂ value, given the band it is in now (for hysteresis). */
export function co2Band(ppm: number, bands: RoomConfig["co2_bands"], current: Co2Band | null = null): Co2Band {
  const plain: Co2Band = ppm < bands.good ? "good" : ppm < bands.fair ? "fair" : "poor";
  if (current === null) return plain;
  const rank = { good: 0, fair: 1, poor: 2 } as const;
  if (rank[plain] >= rank[current]) return plain;
  // Moving to a better band: only once clearly below that band's upper threshold.
  const sticky: Co2Band = ppm < bands.good - bands.hysteresis ? "good" : ppm < bands.fair - bands.hysteresis ? "fair" : "poor";
  return rank[sticky] < rank[current] ? sticky : current;
}

/** Pairs temperature and humidity only if measured within this of each other. */
const PAIR_WINDOW_MS = 10 * 60_000;

const round = (n: number, decimals: number) => Math.round(n * 10 ** decimals) / 10 ** decimals;

export class RoomProcessor implements Processor {
  readonly name: string;
  private occupied: boolean | null = null;
  /** Presence is being detected right now (the sensor's output is active). */
  private active = false;
  /** The last moment presence was seen: an active reading, or the end of an active period. */
  private lastSeen: number | null = null;
  private band: Co2Band | null = null;
  private temperature: { value: number; ts: number } | null = null;
  private humidity: { value: number; ts: number } | null = null;

  constructor(private readonly cfg: RoomConfig) {
    this.name = cfg.name;
  }

  process(readings: readonly Reading[], now: number): ProcessorOutput {
    const out: ProcessorOutput = { readings: [], events: [] };
    let dewInput: number | null = null;
    let dewBad: number | null = null;
    for (const r of readings) {
      if (r.point === this.cfg.presence) this.presence(r, out);
      if (r.point === this.cfg.co2) this.co2(r, out);
      if (r.point === this.cfg.temperature || r.point === this.cfg.humidity) {
        const good = r.quality === "good" && typeof r.value === "number";
        if (!good) dewBad = r.ts;
        else {
          if (r.point === this.cfg.temperature) this.temperature = { value: r.value as number, ts: r.ts };
          else this.humidity = { value: r.value as number, ts: r.ts };
          dewInput = Math.max(dewInput ?? r.ts, r.ts);
        }
      }
    }
    if (dewBad !== null) out.readings.push({ point: `${this.name}/dew_point`, ts: dewBad, value: null, quality: "bad" });
    else if (dewInput !== null) this.dew(out);
    this.expire(now, out);
    return out;
  }

  tick(now: number): ProcessorOutput {
    const out: ProcessorOutput = { readings: [], events: [] };
    this.expire(now, out);
    return out;
  }

  private presence(r: Reading, out: ProcessorOutput): void {
    if (r.quality !== "good" || r.value === null) {
      out.readings.push({ point: `${this.name}/occupied`, ts: r.ts, value: null, quality: "bad" });
      return;
    }
    const active = r.value === true || (typeof r.value === "number" && r.value !== 0);
    if (active) this.lastSeen = Math.max(this.lastSeen ?? r.ts, r.ts);
    else if (this.active) this.lastSeen = Math.max(this.lastSeen ?? r.ts, r.ts); // the hold runs from the end of presence
    this.active = active;
    if (active) this.setOccupied(true, r.ts, out);
    else if (this.occupied === null) this.setOccupied(false, r.ts, out);
    else this.expire(r.ts, out);
    out.readings.push({ point: `${this.name}/occupied`, ts: r.ts, value: this.occupied, quality: "good" });
  }

  /** Frees the room once the hold has run out since presence was last seen. */
  private expire(now: number, out: ProcessorOutput): void {
    if (this.occupied !== true || this.active || this.lastSeen === null) return;
    const freeAt = this.lastSeen + this.cfg.hold;
    if (now < freeAt) return;
    this.setOccupied(false, freeAt, out);
    out.readings.push({ point: `${this.name}/occupied`, ts: freeAt, value: false, quality: "good" });
  }

  private setOccupied(value: boolean, ts: number, out: ProcessorOutput): void {
    if (this.occupied === value) return;
    this.occupied = value;
    out.events.push({ point: `${this.name}/occupied`, ts, value, quality: "good" });
  }

  private co2(r: Reading, out: ProcessorOutput): void {
    const point = `${this.name}/co2_band`;
    if (r.quality !== "good" || typeof r.value !== "number") {
      out.readings.push({ point, ts: r.ts, value: null, quality: "bad" });
      return;
    }
    const band = co2Band(r.value, this.cfg.co2_bands, this.band);
    if (band !== this.band) out.events.push({ point, ts: r.ts, value: band, quality: "good" });
    this.band = band;
    out.readings.push({ point, ts: r.ts, value: band, quality: "good" });
  }

  private dew(out: ProcessorOutput): void {
    const t = this.temperature;
    const h = this.humidity;
    if (!t || !h || Math.abs(t.ts - h.ts) > PAIR_WINDOW_MS) return;
    const dp = dewPoint(t.value, h.value);
    const ts = Math.max(t.ts, h.ts);
    out.readings.push(
      dp === null ? { point: `${this.name}/dew_point`, ts, value: null, quality: "bad" } : { point: `${this.name}/dew_point`, ts, value: round(dp, 2), quality: "good" },
    );
  }
}
