/// <reference lib="dom" />
/**
 * The room display (runs in the browser: a signage totem, a tablet at the door, a phone). Reads
 * the room's points once from /points, then follows /stream; shows each value with its unit, the
 * CO₂ band as a colour *and* a word, occupancy, and the time of the last update — or "no data
 * since …" when nothing new came for `staleAfterMs`. Every text goes in with textContent.
 */
import { el, pageConfig, type Points, type Value, withToken } from "./dom.client.js";
import type { RoomView } from "./html.js";

interface Config {
  room: RoomView;
  words: Record<string, string>;
  staleAfterMs: number;
  lang: string;
}

const cfg = pageConfig<Config>();
const { room, words } = cfg;

const app = document.getElementById("app")!;
const state = document.getElementById("state")!;
const grid = el("div", "grid");
app.insertBefore(grid, state);

interface Tile {
  box: HTMLElement;
  value: HTMLElement;
  unit: HTMLElement;
  extra?: HTMLElement;
}
const tiles = new Map<string, Tile>();
function tile(point: string | undefined, label: string, withBand = false): void {
  if (!point) return;
  const box = el("section", "tile");
  box.dataset.point = point;
  box.append(el("div", "label", label));
  const line = el("div", "value");
  const unit = el("span", "unit", room.units[point] ?? "");
  const value = el("span", "", "–");
  line.append(value, unit);
  box.append(line);
  const t: Tile = { box, value, unit };
  if (withBand) {
    t.extra = el("div", "band", "");
    box.append(t.extra);
  }
  grid.append(box);
  tiles.set(point, t);
}
tile(room.co2, words.co2 ?? "CO₂", true);
tile(room.temperature, words.temperature ?? "Temperature");
tile(room.humidity, words.humidity ?? "Humidity");
if (room.presence) tile(room.occupied, words.occupancy ?? "Occupancy");

const points = [room.co2, room.temperature, room.humidity, room.occupied, room.co2Band].filter((p): p is string => typeof p === "string");
const fmtTime = new Intl.DateTimeFormat(cfg.lang, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
let newestTs = 0;
let advancedAt = 0;
let first = true;

function show(point: string, value: Value, ts: number, quality: string): void {
  if (ts > newestTs) {
    newestTs = ts;
    advancedAt = Date.now();
  }
  if (point === room.co2Band) {
    const t = room.co2 ? tiles.get(room.co2) : undefined;
    if (t?.extra) {
      const band = value === "good" || value === "fair" || value === "poor" ? value : null;
      t.box.classList.remove("band-good", "band-fair", "band-poor");
      if (band) t.box.classList.add(`band-${band}`);
      t.extra.textContent = band ? (words[band] ?? band) : "";
      t.box.dataset.band = band ?? "";
    }
    return;
  }
  const t = tiles.get(point);
  if (!t) return;
  let text: string;
  if (point === room.occupied) text = value === true ? (words.occupied ?? "occupied") : value === false ? (words.free ?? "free") : "–";
  else if (typeof value === "number") text = Number.isFinite(value) ? value.toLocaleString(cfg.lang, { maximumFractionDigits: point === room.co2 ? 0 : 1 }) : "–";
  else text = value === null ? "–" : String(value);
  t.value.textContent = quality === "good" ? text : `${text}?`;
  t.box.dataset.value = String(value);
  if (first) {
    first = false;
    document.body.dataset.firstValues = String(Math.round(performance.now()));
  }
  render();
}

function render(): void {
  if (newestTs === 0) return;
  const stale = Date.now() - advancedAt > cfg.staleAfterMs;
  document.body.classList.toggle("stale", stale);
  state.textContent = `${stale ? (words.no_data_since ?? "no data since") : (words.updated ?? "updated")} ${fmtTime.format(new Date(newestTs))}`;
}
setInterval(render, 1000);

const query = `points=${encodeURIComponent(points.join(","))}`;
fetch(withToken(`/points?${query}`))
  .then((r) => (r.ok ? (r.json() as Promise<Points>) : ({} as Points)))
  .then((all) => {
    for (const p of points) {
      const v = all[p];
      if (v) show(p, v.value, v.ts, v.quality);
    }
  })
  .catch(() => undefined);
const stream = new EventSource(withToken(`/stream?${query}`));
stream.addEventListener("reading", (e) => {
  const r = JSON.parse((e as MessageEvent<string>).data) as { point: string; value: Value; ts: number; quality: string };
  show(r.point, r.value, r.ts, r.quality);
});
// The gateway says its values are still fresh even when none changed.
stream.addEventListener("fresh", (e) => {
  const ts = (JSON.parse((e as MessageEvent<string>).data) as { ts: number }).ts;
  if (ts > newestTs) {
    newestTs = ts;
    advancedAt = Date.now();
    render();
  }
});
