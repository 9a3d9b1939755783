import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

/**
 * test/fixtures/vectors.json is a copy of the shared reference, so the tests also run in a clone
 * without ../shared beside it. Where the reference is there (the team's machines, CI), the copy
 * must not have drifted from it.
 */
describe("reference vectors", () => {
  it("the copy in test/fixtures is the shared reference", () => {
    const copy = JSON.parse(readFileSync("test/fixtures/vectors.json", "utf8")) as Record<string, unknown>;
    expect(Object.keys(copy)).toEqual(expect.arrayContaining(["sensirion_crc8_check", "modbus_rtu_frames", "sensors", "bme280"]));
    const shared = "../shared/reference/vectors.json";
    if (existsSync(shared)) expect(copy).toEqual(JSON.parse(readFileSync(shared, "utf8")));
  });
});
