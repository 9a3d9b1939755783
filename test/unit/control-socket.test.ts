/**
 * The control socket (the CLI's way into the agent) against hostile requests, the firmware
 * update ones included: malformed JSON, unknown ops, prototype names, wrong types, huge, negative
 * and NaN numbers, an oversized line, many at once — each answered with an error, the handler
 * never reached with anything but a checked request, and the socket still serving after them.
 */
import { createConnection } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { askAgent, type ControlRequest, ControlSocket } from "../../src/ops/control-socket.js";
import { tempDir } from "../helpers/tmp.js";

const sockets: ControlSocket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) await s.stop();
});

function raw(path: string, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = createConnection(path);
    let buf = "";
    c.setEncoding("utf8");
    c.on("connect", () => c.write(line.endsWith("\n") ? line : `${line}\n`));
    c.on("data", (d: string) => {
      buf += d;
      if (buf.includes("\n")) {
        c.end();
        resolve(buf.slice(0, buf.indexOf("\n")));
      }
    });
    c.on("error", reject);
  });
}

describe("the control socket against hostile requests", () => {
  it("refuses malformed and unknown requests, firmware ones included, and keeps serving", async () => {
    const path = join(tempDir(), "edge-agent.sock");
    const seen: ControlRequest[] = [];
    const sock = new ControlSocket(path, async (req) => (seen.push(req), { fine: true }));
    sockets.push(sock);
    await sock.start();
    const sha = "a".repeat(64);
    const hostile = [
      "not json",
      "[]",
      "null",
      '{"op":"__proto__"}',
      '{"op":"constructor"}',
      '{"op":"toString"}',
      JSON.stringify({ op: "image", sha256: "A".repeat(64), size: 10, offset: 0, data: "" }),
      JSON.stringify({ op: "image", sha256: sha, size: -1, offset: 0, data: "" }),
      JSON.stringify({ op: "image", sha256: sha, size: 1e300, offset: 0, data: "" }),
      JSON.stringify({ op: "image", sha256: sha, size: 10, offset: 11, data: "" }),
      JSON.stringify({ op: "image", sha256: sha, size: 10, offset: -1, data: "" }),
      JSON.stringify({ op: "image", sha256: sha, size: 10, offset: 0.5, data: "" }),
      JSON.stringify({ op: "image", sha256: sha, size: 10, offset: 0, data: "not base64!" }),
      JSON.stringify({ op: "image", sha256: sha, size: 10, offset: 0, data: 5 }),
      '{"op":"image","sha256":"' + sha + '","size":NaN,"offset":0,"data":""}',
      JSON.stringify({ op: "updates", board: { __proto__: 1 } }),
      JSON.stringify({ op: "updates", job: "x".repeat(65) }),
      JSON.stringify({ op: "updates", slots: "yes" }),
      JSON.stringify({ op: "command", target: 5, payload: "{}" }),
    ];
    const answers = await Promise.all(hostile.map((l) => raw(path, l)));
    for (const [i, a] of answers.entries()) expect(JSON.parse(a), hostile[i]).toHaveProperty("error");
    expect(seen).toEqual([]);
    // An oversized line is refused without being parsed.
    expect(JSON.parse(await raw(path, JSON.stringify({ op: "image", sha256: sha, size: 1, offset: 0, data: "A".repeat(70_000) })))).toEqual({ error: "request too large" });
    // Good requests get through, rebuilt from their checked fields only (no extra keys).
    await expect(askAgent(path, { op: "updates", board: "room-1", slots: true, extra: "x" } as unknown as ControlRequest)).resolves.toEqual({ fine: true });
    await expect(askAgent(path, { op: "image", sha256: sha, size: 3, offset: 0, data: "AAAA" })).resolves.toEqual({ fine: true });
    expect(seen).toEqual([
      { op: "updates", board: "room-1", slots: true },
      { op: "image", sha256: sha, size: 3, offset: 0, data: "AAAA" },
    ]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
