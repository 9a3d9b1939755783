/**
 * The C reference firmware (drivers/bridge/firmware): its own tests (CRC, COBS, frames, the
 * golden frames of drivers/bridge/golden.json byte for byte, a board core against a minimal
 * gateway over a lossy link), the committed nanopb/schema files against bridge.proto, and the
 * host program over a socat pty against a small Python peer. Needs gcc, make, nanopb,
 * libnanopb-dev, python3-protobuf and socat (.ci/run installs them); skipped elsewhere unless CI.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const dir = "drivers/bridge/firmware";
const haveToolchain = existsSync("/usr/include/pb.h") && existsSync("/usr/bin/nanopb_generator.py");

async function make(...targets: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run("make", ["-s", "-C", dir, ...targets], { maxBuffer: 16 << 20, timeout: 170_000 });
    return stdout + stderr;
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`make ${targets.join(" ")} failed: ${err.message}\n${err.stdout ?? ""}\n${err.stderr ?? ""}`);
  }
}

describe("C reference firmware", () => {
  it("has its toolchain (gcc, make, nanopb, libnanopb-dev, python3-protobuf: .ci/run installs them)", () => {
    expect(haveToolchain, "apt-get install gcc make nanopb libnanopb-dev python3-protobuf").toBe(true);
  });

  it("committed generated files match bridge.proto (make check-gen)", { timeout: 60_000 }, async () => {
    expect(await make("check-gen")).toMatch(/check-gen: generated files match/);
  });

  it("core tests pass with the table and the bitwise CRC (make test)", { timeout: 180_000 }, async () => {
    const out = await make("test");
    expect(out).toMatch(/ok: \d+ checks, 0 failures \(CRC table\)/);
    expect(out).toMatch(/ok: \d+ checks, 0 failures \(CRC bitwise\)/);
    if (existsSync("drivers/bridge/golden.json")) expect(out).not.toMatch(/golden frames: skipped/);
  });

  it("ebp-host over a socat pty: handshake, readings acked once each, a command read back, clean SIGTERM (make smoke)", { timeout: 120_000 }, async () => {
    const out = await make("smoke");
    expect(out).not.toMatch(/^FAIL/m);
    expect(out).toMatch(/ok {3}readings 1\.\.90 each once/);
  });
});
