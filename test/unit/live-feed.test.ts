/**
 * The live feed's server against hostile and careless clients: a stream client that never reads is
 * dropped once its buffer is full (the agent's memory stays bounded), hostile paths and names find
 * nothing, and config strings cannot break out of the page's JSON block or its HTML.
 */
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { CLIENT_BUFFER_MAX, LiveFeed } from "../../src/ops/live-feed.js";
import { escapeHtml, jsonBlock, roomPage, words } from "../../src/ops/pages/html.js";

const feeds: LiveFeed[] = [];
afterEach(async () => {
  for (const f of feeds.splice(0)) await f.stop();
});

async function feed(): Promise<{ f: LiveFeed; base: string; port: number }> {
  const f = new LiveFeed({ host: "127.0.0.1", port: 0, rooms: [{ name: "r1", title: "R", occupied: "r1/occupied", presence: false, co2Band: "r1/co2_band", units: {} }] });
  feeds.push(f);
  const a = await f.start();
  return { f, base: `http://127.0.0.1:${a.port}`, port: a.port };
}

describe("live feed: a stream client that never reads", () => {
  it("is dropped once its buffer passes the bound, and the others go on", async () => {
    const { f, base, port } = await feed();
    const sock = connect(port, "127.0.0.1");
    await new Promise<void>((r) => sock.once("connect", () => r()));
    sock.write("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    sock.pause(); // never reads again
    sock.on("error", () => undefined);
    // A reader that keeps up.
    const ac = new AbortController();
    const res = await fetch(`${base}/stream`, { signal: ac.signal });
    const reader = res.body!.getReader();
    let got = 0;
    const reading = (async () => {
      for (;;) {
        const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
        if (done) return;
        got += value!.length;
      }
    })();
    await new Promise((r) => setTimeout(r, 100));
    expect(f.streams).toBe(2);
    // The reader that reads is let catch up after each batch; the one that does not fills the
    // kernel's buffers, then its 256 KiB in the server, and is dropped.
    const big = "x".repeat(10_000);
    let sent = 0;
    for (let i = 0; i < 20_000 && f.dropped === 0; i++) {
      const batch = Array.from({ length: 10 }, (_, k) => ({ point: `p/${k}`, ts: i * 1000 + k, value: `${big}${i}`, quality: "good" as const }));
      f.update(batch);
      sent += 10 * 10_050;
      const until = Date.now() + 50;
      while (got < sent - 110_000 && Date.now() < until) await new Promise((r) => setTimeout(r, 1));
    }
    expect(f.dropped).toBe(1);
    expect(f.streams).toBe(1);
    sock.destroy();
    expect(got).toBeGreaterThan(CLIENT_BUFFER_MAX);
    ac.abort();
    await reading;
  });
});

describe("live feed: hostile requests", () => {
  it("finds nothing for hostile paths and names, and stays read-only", async () => {
    const { f, base } = await feed();
    f.update([{ point: "a/b", ts: 1, value: 1, quality: "good" }]);
    for (const path of ["/display/__proto__", "/display/constructor", "/display/%E0%A4%A", "/display/r1/../r1x", "/assets/__proto__", "/assets/..%2F..%2Fpackage.json", "/assets/toString", "/nothing"]) {
      const r = await fetch(`${base}${path}`);
      expect([path, r.status]).toEqual([path, 404]);
    }
    expect(await (await fetch(`${base}/points?points=__proto__,constructor,toString`)).json()).toEqual({});
    expect(await (await fetch(`${base}/points?prefix=${"x".repeat(5000)}`)).json()).toEqual({});
    expect(await (await fetch(`${base}/points?points=a/b`)).json()).toEqual({ "a/b": { value: 1, ts: 1, quality: "good" } });
    expect((await fetch(`${base}/points`, { method: "POST", body: "{}" })).status).toBe(405);
    expect((await fetch(`${base}/status.json`)).status).toBe(404); // no status provider here
    const head = await fetch(`${base}/display/r1`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
  });

  it("keeps config strings inside the JSON block and the HTML as text", () => {
    const evil = `</script><script>alert(1)</script>\u2028<!--`;
    const block = jsonBlock({ t: evil });
    expect(block).not.toMatch(/<|>|\u2028/);
    expect(JSON.parse(block)).toEqual({ t: evil });
    expect(escapeHtml(`<a href="x" onclick='y'>&</a>`)).toBe("&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;");
    const html = roomPage({ name: "r", title: evil, occupied: "r/occupied", presence: false, co2Band: "r/co2_band", units: { "r/co2": evil } }, { lang: "en", words: words("en"), staleAfterMs: 1000 });
    expect(html.match(/<script/g)).toHaveLength(2); // the JSON block and the module, nothing else
    expect(html).not.toContain("</script><script>");
  });

  it("takes the config's words only for known labels", () => {
    const w = words("it", JSON.parse('{"co2":"Aria","__proto__":{"x":1},"constructor":"c","toString":"t"}') as Record<string, string>);
    expect(w.co2).toBe("Aria");
    expect(w.good).toBe("buona");
    expect(Object.getPrototypeOf(w)).toBeNull();
    expect(Object.keys(w)).not.toContain("constructor");
    expect(Object.keys(w)).not.toContain("toString");
  });
});
