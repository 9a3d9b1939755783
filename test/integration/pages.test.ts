/**
 * The pages people look at, in a real headless Chromium (Debian `chromium`, driven by
 * puppeteer-core): the room display shows the simulated room's values and changes colour and word
 * when the CO₂ crosses a band, says "no data since …" when the stream stops; the gateway page of
 * the demo lists every device and draws plots; a token is needed off loopback; a config string
 * with HTML in it stays text. Screenshots go to test-output/pages/.
 */
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/agent/agent.js";
import { validateConfig } from "../../src/agent/config.js";
import { silentLogger } from "../../src/ops/logger.js";
import { demoConfig, testConfig } from "../helpers/config.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

const CHROMIUM = process.env.EDGE_TEST_CHROMIUM ?? ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].find((f) => existsSync(f));
const OUT = join("test-output", "pages");
let browser: Browser;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  if (!CHROMIUM) throw new Error("these tests need Chromium: install the Debian package `chromium` (or set EDGE_TEST_CHROMIUM)");
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
}, 60_000);
afterAll(async () => {
  await browser?.close();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const HOSTILE_TITLE = `<img src=x onerror="window.pwned=1">Sala "Verdi" & <b>co</b>`;

async function roomAgent(over: Record<string, unknown> = {}): Promise<Agent> {
  const agent = new Agent(
    testConfig({
      uplink: { url: "mqtt://127.0.0.1:1", health_interval: "0s" },
      store: { path: join(tempDir(), "o.db") },
      live_feed: { port: 0, stale_after: "3s", language: "it", labels: { co2: "Aria" }, ...over },
      sources: [
        {
          type: "simulated",
          name: "room-101",
          interval: "100ms",
          points: [
            // Crosses 800 (good → fair) and 1200 (fair → poor) every 6 s.
            { name: "co2", wave: "ramp", min: 600, max: 1500, period: "6s", decimals: 0, unit: "ppm" },
            { name: "temperature", wave: "constant", min: 21.5, unit: "°C" },
            { name: "humidity", wave: "constant", min: 45, unit: `%<script>window.pwned=2</script>` },
          ],
        },
      ],
      rooms: [{ name: "meeting", title: HOSTILE_TITLE, co2: "room-101/co2", temperature: "room-101/temperature", humidity: "room-101/humidity" }],
    }),
    { log: silentLogger() },
  );
  await agent.start();
  return agent;
}

async function open(url: string, viewport = { width: 1920, height: 1080 }): Promise<Page> {
  const page = await browser.newPage();
  cleanups.push(() => page.close());
  await page.setViewport(viewport);
  await page.goto(url, { waitUntil: "domcontentloaded" });
  return page;
}

describe("room display in Chromium", () => {
  it("shows the room's values, changes colour and word when the CO₂ crosses a band, and keeps config strings as text", async () => {
    const agent = await roomAgent();
    cleanups.push(() => agent.stop());
    const page = await open(`${agent.liveFeedUrl}/display/meeting`);
    await page.waitForFunction(() => document.body.dataset.firstValues !== undefined, { timeout: 10_000 });
    const tileText = (point: string) => page.$eval(`[data-point="${point}"]`, (e) => e.textContent ?? "");
    expect(await tileText("room-101/temperature")).toMatch(/21,5\s*°C/); // Italian decimals
    expect(await tileText("room-101/co2")).toMatch(/^Aria/); // the config's own label
    // Each band in turn, with its word (never colour alone) and its class.
    const seen = new Map<string, string>();
    await waitFor(
      "the CO₂ tile in all three bands",
      async () => {
        const [band, word, border] = await page.$eval('[data-point="room-101/co2"]', (e) => [
          (e as HTMLElement).dataset.band ?? "",
          e.querySelector(".band")?.textContent ?? "",
          getComputedStyle(e).borderTopColor,
        ]);
        if (band) seen.set(band, `${word}|${border}`);
        if (band === "poor" && !existsSync(join(OUT, "room-display-poor.png"))) await page.screenshot({ path: join(OUT, "room-display-poor.png") });
        if (band === "good" && !existsSync(join(OUT, "room-display-good.png"))) await page.screenshot({ path: join(OUT, "room-display-good.png") });
        return seen.size === 3;
      },
      { timeoutMs: 20_000, everyMs: 100 },
    );
    expect(seen.get("good")!.split("|")[0]).toBe("buona");
    expect(seen.get("fair")!.split("|")[0]).toBe("discreta");
    expect(seen.get("poor")!.split("|")[0]).toBe("scarsa");
    const colours = new Set([...seen.values()].map((v) => v.split("|")[1]));
    expect(colours.size).toBe(3);
    // The hostile title and unit are shown as the text they are; nothing ran, nothing was added.
    expect(await page.$eval("#title", (e) => e.textContent)).toBe(HOSTILE_TITLE);
    expect(await page.title()).toBe(HOSTILE_TITLE);
    expect(await tileText("room-101/humidity")).toContain("%<script>window.pwned=2</script>");
    expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBeUndefined();
    expect(await page.$$("img, b, script:not([src]):not([type='application/json'])")).toHaveLength(0);
    // A phone.
    await page.setViewport({ width: 390, height: 844, deviceScaleFactor: 2 });
    await page.screenshot({ path: join(OUT, "room-display-phone.png") });
  }, 60_000);

  it("says 'no data since …' when the stream stops", async () => {
    const agent = await roomAgent();
    const page = await open(`${agent.liveFeedUrl}/display/meeting`);
    await page.waitForFunction(() => document.body.dataset.firstValues !== undefined, { timeout: 10_000 });
    expect(await page.$eval("body", (b) => b.classList.contains("stale"))).toBe(false);
    expect(await page.$eval("#state", (e) => e.textContent)).toMatch(/^aggiornato \d\d:\d\d:\d\d$/);
    await agent.stop();
    await page.waitForFunction(() => document.body.classList.contains("stale"), { timeout: 10_000 });
    expect(await page.$eval("#state", (e) => e.textContent)).toMatch(/^nessun dato dalle \d\d:\d\d:\d\d$/);
    await page.screenshot({ path: join(OUT, "room-display-stale.png") });
  }, 60_000);

  it("answers an unknown room with 404 and the rooms there are", async () => {
    const agent = await roomAgent();
    cleanups.push(() => agent.stop());
    const r = await fetch(`${agent.liveFeedUrl}/display/${encodeURIComponent("<script>x</script>")}`);
    expect(r.status).toBe(404);
    expect(r.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(await r.text()).toBe("no room of that name; rooms: meeting\n");
  });
});

describe("gateway page in Chromium", () => {
  it("lists every device of the demo with its state and values, and draws plots", async () => {
    const agent = new Agent(demoConfig(join(tempDir(), "demo.db")), { log: silentLogger() });
    await agent.start();
    cleanups.push(() => agent.stop());
    const page = await open(`${agent.liveFeedUrl}/`, { width: 1280, height: 900 });
    const devices = Object.values(agent.status().sources).flatMap((s) => s.devices.map((d) => d.name));
    expect(devices.length).toBeGreaterThanOrEqual(6);
    await page.waitForFunction((names: string[]) => names.every((n) => document.querySelector(`[data-device="${CSS.escape(n)}"]`)), { timeout: 20_000 }, devices);
    // Plots: numbers with at least two samples get a line (the page polls every 2 s and redraws).
    await page.waitForFunction(() => Array.from(document.querySelectorAll("svg[data-samples]")).some((s) => Number((s as SVGElement).dataset.samples) >= 3), { timeout: 30_000 });
    const polyline = await page.$eval("svg[data-samples] polyline", (p) => p.getAttribute("points") ?? "");
    expect(polyline.split(" ").length).toBeGreaterThanOrEqual(2);
    const text = await page.$eval("main", (m) => m.textContent ?? "");
    expect(text).toMatch(/Uplink/);
    expect(text).toMatch(/Outbox/);
    expect(text).toContain("street-1"); // the demo's streetlight, read-only
    expect(await page.$$("button, form, input")).toHaveLength(0);
    await page.screenshot({ path: join(OUT, "gateway-page.png"), fullPage: true });
    await page.setViewport({ width: 390, height: 844, deviceScaleFactor: 2 });
    await page.screenshot({ path: join(OUT, "gateway-page-phone.png") });
  }, 90_000);
});

describe("access to the pages", () => {
  it("needs the token off loopback, sends security headers, and changes nothing", async () => {
    const refused = validateConfig({ site: "s", gateway: "g", uplink: { url: "mqtt://127.0.0.1:1" }, live_feed: { host: "0.0.0.0" } });
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.errors.join("\n")).toMatch(/live_feed\.token: required when host is '0\.0\.0\.0'/);
    const token = "0123456789abcdef0123";
    const agent = await roomAgent({ host: "0.0.0.0", token });
    cleanups.push(() => agent.stop());
    const base = agent.liveFeedUrl!;
    for (const path of ["/", "/display/meeting", "/points", "/stream", "/status.json", "/history"]) {
      const r = await fetch(`${base}${path}`);
      expect([path, r.status]).toEqual([path, 401]);
      const wrong = await fetch(`${base}${path}${path.includes("?") ? "&" : "?"}token=0123456789abcdef0124`);
      expect([path, wrong.status]).toEqual([path, 401]);
    }
    const ok = await fetch(`${base}/display/meeting?token=${token}`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-security-policy")).toMatch(/script-src 'self'/);
    expect(ok.headers.get("x-content-type-options")).toBe("nosniff");
    expect(ok.headers.get("referrer-policy")).toBe("no-referrer");
    expect(ok.headers.get("x-frame-options")).toBe("DENY");
    expect((await fetch(`${base}/points`, { headers: { Authorization: `Bearer ${token}` } })).status).toBe(200);
    expect((await fetch(`${base}/assets/room.client.js`)).status).toBe(200); // the script holds nothing of the gateway's
    for (const method of ["POST", "PUT", "DELETE", "PATCH"]) expect((await fetch(`${base}/points?token=${token}`, { method })).status).toBe(405);
    // The page works with the token in its URL (its script passes it on).
    const page = await open(`${base}/display/meeting?token=${token}`);
    await page.waitForFunction(() => document.body.dataset.firstValues !== undefined, { timeout: 10_000 });
  }, 60_000);

  it("keeps each page with its assets under 100 KB compressed", async () => {
    const agent = await roomAgent();
    cleanups.push(() => agent.stop());
    const size = async (path: string) => {
      const r = await fetch(`${agent.liveFeedUrl}${path}`, { headers: { "Accept-Encoding": "gzip" } });
      expect(r.status).toBe(200);
      return Number(r.headers.get("content-length"));
    };
    const shared = (await size("/assets/pages.css")) + (await size("/assets/dom.client.js"));
    const room = (await size("/display/meeting")) + (await size("/assets/room.client.js")) + shared;
    const gateway = (await size("/")) + (await size("/assets/gateway.client.js")) + shared;
    expect(room).toBeLessThan(100 * 1024);
    expect(gateway).toBeLessThan(100 * 1024);
  });
});
