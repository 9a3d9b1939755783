/** Small helpers shared by the benchmark scripts. */
import type { Reading } from "../src/model/reading.js";

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Readings as 50 meters with 10 points each would produce them. */
export function meterReadings(n: number, ts: number): Reading[] {
  const names = ["voltage_l1", "voltage_l2", "voltage_l3", "current_l1", "current_l2", "current_l3", "power_total", "pf_total", "frequency", "energy_import"];
  return Array.from({ length: n }, (_, i) => ({
    point: `meter-${(Math.floor(i / 10) % 50) + 1}/${names[i % 10]}`,
    ts: ts + Math.floor(i / 500) * 1000,
    value: Math.round(Math.random() * 2300_00) / 100,
    quality: "good" as const,
  }));
}

export function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}
