/// <reference lib="dom" />
/**
 * The gateway page for the technician (runs in the browser, a phone on a ladder): every source and
 * device with its online state, last error and last values, a line of each number's last minutes,
 * the uplink, the outbox and the actuators — read-only. /status.json every 2 s, /history once,
 * then /stream. Every text goes in with textContent; plots are SVG polylines.
 */
import { el, pageConfig, type Points, type Value, withToken } from "./dom.client.js";

interface Config {
  words: Record<string, string>;
  gateway: string;
  site: string;
  rooms: string[];
  historyMs: number;
  units: Record<string, string>;
  lang: string;
}
interface Device {
  name: string;
  online: boolean;
  lastError: string | null;
}
interface PageStatus {
  version: string;
  uplink: { state: string; broker: string; protocol: string; lastError: string | null };
  outbox: { depth: number; oldestAgeMs: number | null; dropped: Record<string, number>; deadLetters: number };
  sources: Array<{ name: string; type: string; lastError: string | null; devices: Device[] }>;
  actuators: Record<string, Record<string, unknown>>;
}

const cfg = pageConfig<Config>();
const w = (k: string) => cfg.words[k] ?? k;
const SVG = "http://www.w3.org/2000/svg";

const app = document.getElementById("app")!;
const state = document.getElementById("state")!;
const top = el("section");
const devices = el("section");
const actuators = el("section");
app.append(top, devices, actuators);

/** Each point's last value and its recent numbers (bounded by historyMs and 600 samples). */
const values = new Map<string, { value: Value; ts: number; quality: string }>();
const series = new Map<string, Array<[number, number]>>();
function record(point: string, value: Value, ts: number, quality: string): void {
  values.set(point, { value, ts, quality });
  const n = typeof value === "number" && Number.isFinite(value) ? value : typeof value === "boolean" ? Number(value) : null;
  if (n === null) return;
  let s = series.get(point);
  if (!s) series.set(point, (s = []));
  if (s.length > 0 && s[s.length - 1]![0] >= ts) return; // the stream's first picture repeats the last sample
  s.push([ts, n]);
  const from = ts - cfg.historyMs;
  while (s.length > 600 || (s.length > 0 && s[0]![0] < from)) s.shift();
}

function fmt(point: string, v: { value: Value; quality: string } | undefined): string {
  if (!v) return "–";
  let t: string;
  if (typeof v.value === "number") t = Number.isFinite(v.value) ? v.value.toLocaleString(cfg.lang, { maximumFractionDigits: 2 }) : String(v.value);
  else if (v.value === null) t = "–";
  else t = String(v.value);
  const unit = cfg.units[point];
  return `${t}${unit && typeof v.value === "number" ? ` ${unit}` : ""}${v.quality === "good" ? "" : ` (${v.quality})`}`;
}

function plot(point: string): SVGSVGElement {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 120 28");
  svg.setAttribute("preserveAspectRatio", "none");
  const s = series.get(point) ?? [];
  if (s.length >= 2) {
    const t0 = s[0]![0];
    const t1 = s[s.length - 1]![0];
    let lo = Infinity;
    let hi = -Infinity;
    for (const [, v] of s) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const line = document.createElementNS(SVG, "polyline");
    const dx = t1 > t0 ? 118 / (t1 - t0) : 0;
    const dy = hi > lo ? 24 / (hi - lo) : 0;
    line.setAttribute("points", s.map(([t, v]) => `${(1 + (t - t0) * dx).toFixed(1)},${(26 - (hi > lo ? (v - lo) * dy : 12)).toFixed(1)}`).join(" "));
    svg.append(line);
    svg.dataset.samples = String(s.length);
  }
  return svg;
}

/** The points of a device or source: `<name>/…`. */
function pointsOf(name: string): string[] {
  return [...values.keys()].filter((p) => p.startsWith(`${name}/`)).sort();
}

/** The points' rows: name (without the device's prefix), value with unit, the recent line. */
function table(points: string[], prefix = ""): HTMLTableElement {
  const t = el("table");
  for (const p of points) {
    const tr = el("tr");
    tr.dataset.point = p;
    const name = el("td", "n", prefix && p.startsWith(`${prefix}/`) ? p.slice(prefix.length + 1) : p);
    name.title = p;
    tr.append(name, el("td", "v", fmt(p, values.get(p))));
    const td = el("td");
    td.append(plot(p));
    tr.append(td);
    t.append(tr);
  }
  return t;
}

function dl(rows: Array<[string, string]>): HTMLDListElement {
  const d = el("dl");
  for (const [k, v] of rows) d.append(el("dt", "", k), el("dd", "", v));
  return d;
}

const age = (ms: number | null) => (ms === null ? "–" : ms < 60_000 ? `${Math.round(ms / 1000)} s` : ms < 3_600_000 ? `${Math.round(ms / 60_000)} min` : `${(ms / 3_600_000).toFixed(1)} h`);

let first = true;
function render(st: PageStatus): void {
  state.textContent = `edge-agent ${st.version} · ${new Date().toLocaleTimeString(cfg.lang)}`;
  top.replaceChildren(
    el("h2", "", w("uplink")),
    dl([
      ["state", `${st.uplink.state} (MQTT ${st.uplink.protocol})`],
      ["broker", st.uplink.broker],
      [w("last_error"), st.uplink.lastError ?? "–"],
    ]),
    el("h2", "", w("outbox")),
    dl([
      [w("depth"), String(st.outbox.depth)],
      [w("oldest"), age(st.outbox.oldestAgeMs)],
      [w("dropped"), Object.entries(st.outbox.dropped).map(([k, v]) => `${k} ${v}`).join(" · ")],
      ["dead letters", String(st.outbox.deadLetters)],
    ]),
  );
  if (cfg.rooms.length) {
    const p = el("p");
    for (const r of cfg.rooms) {
      const a = el("a", "", `${w("rooms")}: ${r}`);
      a.href = withToken(`/display/${encodeURIComponent(r)}`);
      p.append(a, " ");
    }
    top.append(p);
  }
  const shown = new Set<string>();
  const parts: HTMLElement[] = [el("h2", "", w("devices"))];
  for (const src of st.sources) {
    const sec = el("section", "dev");
    sec.dataset.source = src.name;
    const head = el("div", "head");
    head.append(el("strong", "", src.name), el("span", "", src.type));
    sec.append(head);
    if (src.lastError) sec.append(el("div", "err", `${w("last_error")}: ${src.lastError}`));
    for (const d of src.devices) {
      const row = el("div", "head");
      row.dataset.device = d.name;
      const dot = el("span", `dot ${d.online ? "on" : "off"}`);
      dot.title = d.online ? w("online") : w("offline");
      row.append(dot, el("span", "", d.name), el("span", "", d.online ? w("online") : w("offline")));
      sec.append(row);
      if (d.lastError) sec.append(el("div", "err", `${w("last_error")}: ${d.lastError}`));
      const pts = pointsOf(d.name).filter((p) => !shown.has(p));
      pts.forEach((p) => shown.add(p));
      if (pts.length) sec.append(table(pts, d.name));
    }
    const own = pointsOf(src.name).filter((p) => !shown.has(p));
    own.forEach((p) => shown.add(p));
    if (own.length) sec.append(table(own, src.name));
    parts.push(sec);
  }
  const rest = [...values.keys()].filter((p) => !shown.has(p)).sort();
  if (rest.length) {
    const sec = el("section", "dev");
    sec.append(el("div", "head", "…"), table(rest));
    parts.push(sec);
  }
  devices.replaceChildren(...parts);
  const acts = Object.entries(st.actuators);
  actuators.replaceChildren(
    ...(acts.length
      ? [el("h2", "", w("actuators")), dl(acts.map(([name, s]) => [name, Object.entries(s).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : String(v)}`).join(" · ")]))]
      : []),
  );
  if (first && values.size > 0) {
    first = false;
    document.body.dataset.firstValues = String(Math.round(performance.now()));
  }
}

async function refresh(): Promise<void> {
  try {
    const r = await fetch(withToken("/status.json"));
    if (r.ok) render((await r.json()) as PageStatus);
  } catch {
    state.textContent = w("no_data_since");
  }
}

async function main(): Promise<void> {
  const [hist, pts] = await Promise.all([
    fetch(withToken("/history")).then((r) => (r.ok ? (r.json() as Promise<Record<string, Array<[number, number]>>>) : ({} as Record<string, Array<[number, number]>>))),
    fetch(withToken("/points")).then((r) => (r.ok ? (r.json() as Promise<Points>) : ({} as Points))),
  ]);
  for (const [p, s] of Object.entries(hist)) series.set(p, s.slice(-600));
  for (const [p, v] of Object.entries(pts)) values.set(p, v);
  await refresh();
  setInterval(() => void refresh(), 2000);
  const stream = new EventSource(withToken("/stream"));
  stream.addEventListener("reading", (e) => {
    const r = JSON.parse((e as MessageEvent<string>).data) as { point: string; value: Value; ts: number; quality: string };
    record(r.point, r.value, r.ts, r.quality);
  });
}
void main();
