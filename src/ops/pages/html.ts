/**
 * The two pages of the live feed (docs/pages.md), rendered on the gateway as small HTML shells:
 * the room display (`/display/<room>`) and the gateway page (`/`). Everything a page shows comes
 * from its script (`/assets/*.js`) over /points, /stream, /status.json and /history, and is put on
 * screen with textContent — never as HTML. What the shell carries from the config (titles, labels,
 * units, point names) goes in one JSON block, escaped so that no config string can close it.
 */
export type Language = "en" | "it";

const WORDS: Record<Language, Record<string, string>> = {
  en: {
    co2: "CO₂",
    temperature: "Temperature",
    humidity: "Humidity",
    dew_point: "Dew point",
    occupancy: "Occupancy",
    occupied: "occupied",
    free: "free",
    good: "good",
    fair: "fair",
    poor: "poor",
    updated: "updated",
    no_data_since: "no data since",
    waiting: "waiting for data…",
    gateway: "Gateway",
    devices: "Sources and devices",
    online: "online",
    offline: "offline",
    uplink: "Uplink",
    outbox: "Outbox",
    depth: "waiting to be sent",
    oldest: "oldest unsent",
    dropped: "dropped",
    actuators: "Actuators",
    last_error: "last error",
    rooms: "Rooms",
  },
  it: {
    co2: "CO₂",
    temperature: "Temperatura",
    humidity: "Umidità",
    dew_point: "Punto di rugiada",
    occupancy: "Occupazione",
    occupied: "occupata",
    free: "libera",
    good: "buona",
    fair: "discreta",
    poor: "scarsa",
    updated: "aggiornato",
    no_data_since: "nessun dato dalle",
    waiting: "in attesa di dati…",
    gateway: "Gateway",
    devices: "Sorgenti e dispositivi",
    online: "in linea",
    offline: "non in linea",
    uplink: "Collegamento",
    outbox: "Coda di invio",
    depth: "in attesa di invio",
    oldest: "il più vecchio non inviato",
    dropped: "scartati",
    actuators: "Attuatori",
    last_error: "ultimo errore",
    rooms: "Stanze",
  },
};

/** The words of a language with the config's own over them (a null-prototype object). */
export function words(language: Language, own: Readonly<Record<string, string | undefined>> = {}): Record<string, string> {
  const out = Object.create(null) as Record<string, string>;
  for (const [k, v] of Object.entries(WORDS[language])) out[k] = v;
  for (const [k, v] of Object.entries(own)) if (typeof v === "string" && k in out) out[k] = v;
  return out;
}

/** Text for HTML content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** JSON inside <script type="application/json">: `<`, `>`, `&` and the line separators escaped, so nothing closes the block. */
export function jsonBlock(data: unknown): string {
  return JSON.stringify(data).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function shell(o: { lang: Language; title: string; script: string; data: unknown; body: string; className: string }): string {
  return `<!doctype html>
<html lang="${o.lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(o.title)}</title>
<link rel="stylesheet" href="/assets/pages.css">
<script type="application/json" id="config">${jsonBlock(o.data)}</script>
<script type="module" src="/assets/${o.script}"></script>
</head>
<body class="${o.className}">
${o.body}
</body>
</html>
`;
}

export interface RoomView {
  name: string;
  title: string;
  /** Point ids of the room's measurements, when the config names them. */
  co2?: string;
  temperature?: string;
  humidity?: string;
  /** Derived by the gateway: `<room>/occupied`, `<room>/co2_band`, `<room>/dew_point`. */
  occupied: string;
  /** Whether the room has a presence input (else no occupancy tile). */
  presence: boolean;
  co2Band: string;
  dewPoint?: string;
  units: Record<string, string>;
}

export function roomPage(room: RoomView, o: { lang: Language; words: Record<string, string>; staleAfterMs: number }): string {
  return shell({
    lang: o.lang,
    title: room.title,
    script: "room.client.js",
    className: "room",
    data: { room, words: o.words, staleAfterMs: o.staleAfterMs, lang: o.lang },
    body: `<main id="app" aria-live="polite"><h1 id="title">${escapeHtml(room.title)}</h1><p id="state">${escapeHtml(o.words.waiting ?? "")}</p></main>`,
  });
}

export function gatewayPage(o: { lang: Language; words: Record<string, string>; gateway: string; site: string; rooms: string[]; historyMs: number; units: Record<string, string> }): string {
  return shell({
    lang: o.lang,
    title: `${o.site}/${o.gateway}`,
    script: "gateway.client.js",
    className: "gateway",
    data: { words: o.words, gateway: o.gateway, site: o.site, rooms: o.rooms, historyMs: o.historyMs, units: o.units, lang: o.lang },
    body: `<main id="app"><h1 id="title">${escapeHtml(`${o.site}/${o.gateway}`)}</h1><p id="state">${escapeHtml(o.words.waiting ?? "")}</p></main>`,
  });
}

/** One stylesheet for both pages: large type on the display, compact on the gateway page; light and dark. */
export const PAGES_CSS = `
:root{color-scheme:light dark;--bg:#fff;--fg:#111;--muted:#666;--line:#ddd;--good:#1b7f3b;--fair:#b36b00;--poor:#b3261e;--card:#f6f6f6}
@media (prefers-color-scheme:dark){:root{--bg:#111;--fg:#eee;--muted:#aaa;--line:#333;--good:#4cc27a;--fair:#f0a530;--poor:#ff6b5e;--card:#1c1c1c}}
*{box-sizing:border-box}html,body{margin:0;background:var(--bg);color:var(--fg);font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
.room main{min-height:100vh;display:flex;flex-direction:column;padding:4vmin;gap:3vmin}
.room h1{font-size:6vmin;margin:0;font-weight:600}
.room .grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,28vmin),1fr));gap:3vmin;flex:1}
.room .tile{background:var(--card);border-radius:2vmin;padding:3vmin;display:flex;flex-direction:column;gap:1vmin;border:0.6vmin solid transparent;min-width:0}
.room .label{font-size:clamp(1rem,4vmin,3rem);color:var(--muted)}
.room .value{margin:auto 0;font-size:clamp(2.5rem,min(11vmin,8vw),9rem);font-weight:700;line-height:1.05;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
.room .unit{display:inline-block;font-size:.4em;font-weight:400;margin-left:.25em;overflow-wrap:anywhere;max-width:100%}
.room .band{font-size:clamp(1.4rem,6vmin,4.5rem);font-weight:700;min-height:1.2em}
.room .band-good{border-color:var(--good)}.room .band-good .band{color:var(--good)}
.room .band-fair{border-color:var(--fair)}.room .band-fair .band{color:var(--fair)}
.room .band-poor{border-color:var(--poor)}.room .band-poor .band{color:var(--poor)}
.room #state{font-size:3.5vmin;color:var(--muted);margin:0}
.room.stale .tile{opacity:.35}.room.stale #state{color:var(--poor);font-weight:700;font-size:5vmin}
.gateway main{max-width:1100px;margin:0 auto;padding:12px}
.gateway h1{font-size:1.4rem;margin:.2em 0}.gateway h2{font-size:1.1rem;margin:1em 0 .4em;border-bottom:1px solid var(--line)}
.gateway section.dev{border:1px solid var(--line);border-radius:8px;padding:8px;margin:8px 0}
.gateway .head{display:flex;gap:8px;align-items:baseline;flex-wrap:wrap}
.gateway .dot{display:inline-block;width:.7em;height:.7em;border-radius:50%}
.gateway .on{background:var(--good)}.gateway .off{background:var(--poor)}
.gateway .err{color:var(--poor);font-size:.85rem;overflow-wrap:anywhere}
.gateway table{border-collapse:collapse;width:100%;font-size:.9rem;table-layout:fixed}
.gateway td{padding:2px 6px;border-top:1px solid var(--line);vertical-align:middle}
.gateway td.n{overflow-wrap:anywhere}.gateway td.v{width:9.5em;text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.gateway td:last-child{width:132px}.gateway svg{width:120px;height:28px;display:block}.gateway polyline{fill:none;stroke:currentColor;stroke-width:1.5}
@media (max-width:600px){.gateway td:last-child{width:72px}.gateway svg{width:64px}.gateway td.v{width:7.5em}}
.gateway dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}.gateway dt{color:var(--muted)}
`;
