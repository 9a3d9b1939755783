/**
 * `config check` and `run` on config files written to hurt: exit 2 and one line per problem naming
 * its place (also with --json), never a stack trace or exit 1.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.js";
import { aliasBomb, minimalConfig as minimal } from "../helpers/hostile-yaml.js";
import { tempDir } from "../helpers/tmp.js";

const noStack = (text: string) => expect(text).not.toMatch(/\n\s+at .*:\d+:\d+|Error:/);

const CASES: Array<[string, string | Buffer, string[]]> = [
  ["an alias bomb", aliasBomb(), ["line 9, column 47: *a3 expands the aliases of this file past 100000 values, too many for a config (an alias bomb?)"]],
  ["an alias without its anchor", `${minimal}store: *nope\n`, ["line 4, column 8: alias *nope has no anchor &nope before it"]],
  ["a language tag", `${minimal}log: !!js/function "function () {}"\n`, ["line 4, column 6: tag !!js/function is not allowed: a config holds plain values, lists and mappings"]],
  ["a number past a double", `${minimal}metrics: { port: 1e999 }\n`, ["line 4, column 18: 1e999 is out of range: numbers must lie within ±9007199254740991"]],
  ["__proto__", `${minimal}__proto__: { site: x }\n`, ["__proto__: unknown key"]],
  ["a merge key", `${minimal}log: { <<: { level: info } }\n`, ["line 4, column 8: merge keys (<<) are not supported: write the keys out"]],
  ["a duplicate key", `${minimal}site: again\n`, ["line 4, column 1: duplicate key 'site' (keys must be unique; first at line 1, column 1)"]],
  ["bytes that are not UTF-8", Buffer.concat([Buffer.from(`${minimal}# caf`), Buffer.from([0xe9]), Buffer.from("\n")]), ["line 4, column 6: not UTF-8 (byte 0xe9); save the file as UTF-8"]],
  ["an empty file", "", ["(top level): the file has no settings; a config needs site:, gateway: and uplink: at least"]],
  ["a list", "- site: s\n", ["line 1, column 1: expected a mapping (site:, gateway:, uplink:, …), found a list"]],
  ["a scalar", "edge-agent\n", ["line 1, column 1: expected a mapping (site:, gateway:, uplink:, …), found a value"]],
  ["deep nesting", `${minimal}x: ${"[".repeat(50_000)}${"]".repeat(50_000)}\n`, ["line 4, column 68: nested more than 64 levels deep"]],
  ["log.status_interval past the timer limit", `${minimal}log: { status_interval: 25d }\n`, ["log.status_interval: must be at most 24h"]],
  ["uplink.health_interval past the timer limit", minimal.replace('1883" }', '1883", health_interval: 25d }'), ["uplink.health_interval: must be at most 24h"]],
  ["uplink.connect_timeout past the timer limit", minimal.replace('1883" }', '1883", connect_timeout: 25d }'), ["uplink.connect_timeout: must be at most 5m"]],
];

describe("config check and run on hostile files", () => {
  it.each(CASES)("%s: exit 2, one line naming the place, JSON with --json", (_what, content, expected) => {
    const dir = tempDir();
    const file = join(dir, "edge.yaml");
    writeFileSync(file, content);
    const n = `${expected.length} error${expected.length === 1 ? "" : "s"}`;

    const check = runCli(["config", "check", file]);
    expect(check.code).toBe(2);
    expect(check.stderr.trimEnd().split("\n")).toEqual([`edge-agent: ${file}: ${n}`, ...expected.map((e) => `  ${e}`)]);
    noStack(check.stderr);

    const json = runCli(["config", "check", file, "--json"]);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toEqual({ ok: false, errors: expected });

    const run = runCli(["run", "-c", file]);
    expect(run.code).toBe(2);
    expect(run.stderr.trimEnd().split("\n")).toEqual([`edge-agent: ${file}: ${n}`, ...expected.map((e) => `  ${e}`)]);
  });

  it("a file above 256 KB: exit 2 in one line, before parsing", () => {
    const dir = tempDir();
    const file = join(dir, "big.yaml");
    writeFileSync(file, `${minimal}# ${"x".repeat(300_000)}\n`);
    const r = runCli(["config", "check", file, "--json"]);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout)).toEqual({ ok: false, errors: [`cannot read ${file}: larger than 256 KB, the most a config may have`] });
  });
});
