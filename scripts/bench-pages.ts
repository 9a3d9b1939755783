/**
 * The pages' weight and time to first values, for the README (issue 17, "Speed"; timing claims
 * live here, not in tests). Usage: npm run bench:pages [-- --runs 10]
 *
 * The demo (configs/demo.yaml, its own data dir and ports) runs in this process; headless Chromium
 * (Debian `chromium`, puppeteer-core) opens the room display and the gateway page --runs times each,
 * in a fresh tab with an empty cache, and reads from the page when the first values were on screen
 * (`document.body.dataset.firstValues`, set by the page's script: ms since navigation started).
 * Weight: the page and its assets as served gzip-compressed.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import puppeteer from "puppeteer-core";
import { Agent } from "../src/agent/agent.js";
import { silentLogger } from "../src/ops/logger.js";
import { demoConfig } from "../test/helpers/config.js";
import { median } from "./bench-util.js";

const { values: args } = parseArgs({ options: { runs: { type: "string", default: "10" } } });
const RUNS = Number(args.runs);
const chromium = process.env.EDGE_TEST_CHROMIUM ?? ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].find((f) => existsSync(f));
if (!chromium) throw new Error("bench:pages needs Chromium (Debian package chromium, or EDGE_TEST_CHROMIUM)");

const dir = mkdtempSync(join(tmpdir(), "edge-pages-"));
const agent = new Agent(demoConfig(join(dir, "demo.db")), { log: silentLogger() });
await agent.start();
const base = agent.liveFeedUrl!;
await new Promise((r) => setTimeout(r, 6000)); // every device polled at least once

const size = async (path: string) => Number((await fetch(`${base}${path}`, { headers: { "Accept-Encoding": "gzip" } })).headers.get("content-length"));
const shared = (await size("/assets/pages.css")) + (await size("/assets/dom.client.js"));
const weights = {
  room: (await size("/display/room-101")) + (await size("/assets/room.client.js")) + shared,
  gateway: (await size("/")) + (await size("/assets/gateway.client.js")) + shared,
};
const browser = await puppeteer.launch({ executablePath: chromium, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
console.log(`bench:pages — the demo's pages in headless ${await browser.version()}, ${RUNS} loads each, fresh tab, no cache`);
for (const [name, path] of [["room display", "/display/room-101"], ["gateway page", "/"]] as const) {
  const first: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const page = await browser.newPage();
    await page.setCacheEnabled(false);
    await page.goto(`${base}${path}`, { waitUntil: "domcontentloaded" });
    await page.waitForFunction(() => document.body.dataset.firstValues !== undefined, { timeout: 10_000 });
    first.push(Number(await page.evaluate(() => document.body.dataset.firstValues)));
    await page.close();
  }
  const kb = (name === "room display" ? weights.room : weights.gateway) / 1024;
  console.log(`${name}: first values on screen ${median(first).toFixed(0)} ms after navigation (median; max ${Math.max(...first).toFixed(0)} ms) · page and assets ${kb.toFixed(1)} KB compressed`);
}
await browser.close();
await agent.stop();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
