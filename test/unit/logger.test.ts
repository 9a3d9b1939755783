import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/ops/logger.js";
import { redactUrl } from "../../src/uplink/uplink.js";

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { stream, lines };
}

describe("logs", () => {
  it("are one JSON object per line off a terminal, at the configured level", () => {
    const { stream, lines } = capture();
    const log = createLogger({ level: "warn", pretty: false, destination: stream });
    log.info("hidden");
    log.warn({ device: "meter-1" }, "meter-1: offline");
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 40, device: "meter-1", msg: "meter-1: offline" });
  });

  it("never carry a secret: passwords, keys and tokens are redacted wherever they sit", () => {
    const { stream, lines } = capture();
    const log = createLogger({ level: "info", pretty: false, destination: stream });
    log.info({ uplink: { url: "mqtts://b:8883", username: "gw", password: "s3cret", tls: { key: "-----BEGIN KEY-----" } }, token: "abc", password: "p" }, "config");
    const text = lines.join("");
    expect(text).not.toMatch(/s3cret|BEGIN KEY|"abc"|"p"/);
    expect(JSON.parse(lines[0]!)).toMatchObject({ uplink: { username: "gw", password: "[redacted]", tls: { key: "[redacted]" } }, token: "[redacted]", password: "[redacted]" });
  });

  it("show broker URLs without their credentials", () => {
    expect(redactUrl("mqtt://gw:s3cret@broker:1883")).toBe("mqtt://[redacted]@broker:1883");
    expect(redactUrl("mqtt://broker:1883")).toBe("mqtt://broker:1883");
  });

  it("are readable on a terminal", () => {
    const { stream, lines } = capture();
    const log = createLogger({ level: "info", pretty: true, destination: stream });
    log.info("agent running");
    expect(lines.join("")).toMatch(/INFO.*agent running/);
    expect(() => JSON.parse(lines.join(""))).toThrow();
  });
});
