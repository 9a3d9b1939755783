/** The daemon's process guard: which part a throw came from, one line per problem, repeats counted. */
import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { guardProcess, originOf } from "../../src/cli/run.js";
import { formatPath } from "../../src/model/path.js";

function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("did not throw");
}

describe("originOf", () => {
  it("names the room of the first frame in our code, and the place", () => {
    const err = thrownBy(() => formatPath(null as unknown as string[]));
    expect(originOf(err)).toEqual({ part: "model", at: expect.stringMatching(/^src\/model\/path\.ts:\d+$/) });
  });

  it("reads built paths, file URLs and drivers, and skips frames outside our code", () => {
    const root = new URL("../../", import.meta.url).pathname;
    const err = new Error("x");
    err.stack = [
      "Error: x",
      "    at Socket.emit (node:events:519:28)",
      `    at MqttClient.handle (${root}node_modules/mqtt/build/lib/client.js:10:3)`,
      `    at Device.poll (file://${root}drivers/modbus/sdm120.js:42:7)`,
      `    at async Uplink.pump (${root}src/uplink/uplink.js:300:5)`,
    ].join("\n");
    expect(originOf(err)).toEqual({ part: "drivers/modbus", at: "drivers/modbus/sdm120.js:42" });
    expect(originOf("a string")).toEqual({ part: "unknown" });
    expect(originOf(Object.assign(new Error("no stack"), { stack: undefined }))).toEqual({ part: "unknown" });
  });
});

describe("guardProcess", () => {
  const setup = () => {
    const proc = new EventEmitter();
    const lines: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = [];
    const log = {
      error: (obj: Record<string, unknown>, msg: string) => lines.push({ level: "error", obj, msg }),
      fatal: (obj: Record<string, unknown>, msg: string) => lines.push({ level: "fatal", obj, msg }),
    };
    const exits: number[] = [];
    let now = 0;
    const unguard = guardProcess(log as never, { process: proc, exit: (code) => exits.push(code), now: () => now });
    return { proc, lines, exits, unguard, advance: (ms: number) => (now += ms) };
  };

  it("logs an unhandled rejection with its part, once a minute when it repeats, and does not exit", () => {
    const { proc, lines, exits, advance } = setup();
    const err = thrownBy(() => formatPath(null as unknown as string[]));
    proc.emit("unhandledRejection", err);
    proc.emit("unhandledRejection", err);
    proc.emit("unhandledRejection", err);
    proc.emit("unhandledRejection", new Error("another"));
    advance(60_000);
    proc.emit("unhandledRejection", err);
    expect(exits).toEqual([]);
    expect(lines.map((l) => l.msg)).toEqual([
      expect.stringMatching(/^unhandled rejection in model: .*; the gateway goes on$/),
      "unhandled rejection in unknown: another; the gateway goes on",
      expect.stringMatching(/^unhandled rejection in model: .* \(2 more like it in the last minute\); the gateway goes on$/),
    ]);
    expect(lines[2]!.obj).toMatchObject({ part: "model", unhandled_total: 5 });
  });

  it("logs an uncaught exception as fatal and exits 1; unguard removes both handlers", () => {
    const { proc, lines, exits, unguard } = setup();
    proc.emit("uncaughtException", new Error("half done"));
    expect(exits).toEqual([1]);
    expect(lines).toEqual([{ level: "fatal", obj: { part: "unknown" }, msg: "uncaught exception in unknown: half done; exiting so that systemd restarts the agent from a clean state" }]);
    unguard();
    expect(proc.listenerCount("unhandledRejection") + proc.listenerCount("uncaughtException")).toBe(0);
  });
});
