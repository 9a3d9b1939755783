/**
 * The monthly data budget's arithmetic (src/uplink/budget.ts): bytes per calendar month (UTC),
 * the forecast from the rate so far (not before an hour of history), the roll-over to a new
 * month, and the count kept across a restart of the same month only.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DataBudget, publishBytes } from "../../src/uplink/budget.js";
import { tempDir } from "../helpers/tmp.js";

const DEC1 = Date.UTC(2026, 11, 1);
const DAY = 86_400_000;

describe("the monthly data budget", () => {
  it("forecasts the month from the rate so far and says when it is over", () => {
    let now = DEC1 + 10 * DAY; // 10 of 31 days gone
    const b = new DataBudget(100e6, null, () => now);
    b.record(30e6);
    expect(b.snapshot()).toMatchObject({ month: "2026-12", bytes: 30e6, forecast: 93e6, saving: false });
    b.record(5e6);
    expect(b.snapshot()).toMatchObject({ forecast: 108.5e6, saving: true });
    // A new month starts from zero.
    now = Date.UTC(2027, 0, 1) + 1000;
    expect(b.snapshot()).toMatchObject({ month: "2027-01", bytes: 0, forecast: 0, saving: false });
    b.record(1000);
    expect(b.snapshot().bytes).toBe(1000);
  });

  it("does not extrapolate from the first minutes of a month", () => {
    const b = new DataBudget(100e6, null, () => DEC1 + 60_000);
    b.record(1e5);
    // an hour at least: 0.1 MB/h × 744 h
    expect(b.snapshot().forecast).toBe(74.4e6);
  });

  it("keeps the month's count across a restart, not another month's", () => {
    const path = join(tempDir(), "data-budget.json");
    const now = DEC1 + 5 * DAY;
    const a = new DataBudget(1e6, path, () => now);
    a.record(4242);
    a.save();
    expect(new DataBudget(1e6, path, () => now).snapshot().bytes).toBe(4242);
    expect(new DataBudget(1e6, path, () => Date.UTC(2027, 0, 2)).snapshot().bytes).toBe(0);
    writeFileSync(path, '{"month":"2026-12","bytes":-5}');
    expect(new DataBudget(1e6, path, () => now).snapshot().bytes).toBe(0);
    writeFileSync(path, "garbage");
    expect(new DataBudget(1e6, path, () => now).snapshot().bytes).toBe(0);
  });

  it("counts whole MQTT 5 PUBLISH packets: header, topic, packet id, properties length, payload", () => {
    // 1 + remaining-length(1) + (2 + 22 topic + 2 id + 1 props + 100 payload = 127)
    expect(publishBytes("edge/site/gw/telemetry", 100)).toBe(129);
    expect(publishBytes("edge/site/gw/telemetry", 101)).toBe(131); // remaining length takes 2 bytes from 128
  });
});

describe("uplink.budget in the config", () => {
  it("takes 100MB/month or {limit, saving_linger}, and says what is wrong otherwise", async () => {
    const { parseConfigText } = await import("../../src/agent/config.js");
    const cfg = (budget: string) => parseConfigText(`site: s\ngateway: g\nuplink: { url: "mqtt://127.0.0.1:1", budget: ${budget} }\n`, "/etc/edge-agent");
    const a = cfg("100MB/month");
    expect(a.ok && a.config.uplink.budget).toEqual({ limit: 100 * 1024 * 1024, saving_linger: 60_000, non_critical: [], non_critical_interval: 300_000 });
    const b = cfg("{ limit: 2GB, saving_linger: 5m }");
    expect(b.ok && b.config.uplink.budget).toEqual({ limit: 2 * 1024 ** 3, saving_linger: 300_000, non_critical: [], non_critical_interval: 300_000 });
    for (const bad of ["100MB", "lots/month", "-5MB/month", "{ limit: 1MB, __proto__: 1 }", "{ limit: 1MB, saving_linger: 0s }"]) {
      const r = cfg(JSON.stringify(bad).startsWith('"{') ? bad : JSON.stringify(bad));
      expect(r.ok, bad).toBe(false);
      if (!r.ok) expect(r.errors.join("\n")).toMatch(/uplink\.budget/);
    }
  });
});

describe("the budget's thinning of non-critical points", () => {
  it("while saving, keeps a non-critical point once per interval (by reading time); critical points and the non-saving time pass whole", async () => {
    const { budgetThinner } = await import("../../src/uplink/budget.js");
    let saving = false;
    const t = budgetThinner(["room-*/humidity", "a.b/c", "__proto__/*"], 1000, () => saving);
    const rows = (n: number) => Array.from({ length: n }, (_, i) => ["room-1/humidity", "room-1/co2", "a.b/c", "axb/c", "__proto__/x"].map((point) => ({ point, ts: i * 300, value: i, quality: "good" as const }))).flat();
    expect(t(rows(10)).length).toBe(50);
    saving = true;
    const kept = t(rows(10));
    const count = (p: string) => kept.filter((r) => r.point === p).length;
    expect([count("room-1/humidity"), count("room-1/co2"), count("a.b/c"), count("axb/c"), count("__proto__/x")]).toEqual([3, 10, 3, 10, 3]);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });
});
