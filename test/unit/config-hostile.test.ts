/**
 * Config files written to hurt: whatever a file holds, the loader answers with error lines that
 * name the place, never an exception, and what a file can cost (size, nesting, aliases, keys) is
 * bounded.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type ConfigResult, checkConfigFile, parseConfigText } from "../../src/agent/config.js";
import { aliasBomb, minimalConfig } from "../helpers/hostile-yaml.js";
import { tempDir } from "../helpers/tmp.js";

const minimal = minimalConfig;

function errorsOf(r: ConfigResult): string[] {
  if (r.ok) throw new Error("expected errors");
  return r.errors;
}
const errors = (text: string) => errorsOf(parseConfigText(text, "/etc/edge-agent"));

describe("hostile YAML", () => {
  it("an alias bomb is one error at the alias that goes too far, not an exception", () => {
    const e = errors(aliasBomb());
    expect(e).toHaveLength(1);
    expect(e[0]).toMatch(/^line 9, column \d+: \*a\d expands the aliases of this file past 100000 values/);
  });

  it("an alias to an anchor that is not set (or set only after it) names the alias", () => {
    expect(errors(`${minimal}store: *nope\n`)).toEqual(["line 4, column 8: alias *nope has no anchor &nope before it"]);
    expect(errors(`${minimal}store: *later\nlog: &later { level: info }\n`)).toEqual(["line 4, column 8: alias *later has no anchor &later before it"]);
  });

  it("an alias inside its own anchor (a loop) is refused", () => {
    expect(errors(`${minimal}store: &s { path: *s }\n`)).toEqual(["line 4, column 19: alias *s is inside its own anchor &s (a loop)"]);
  });

  it("ordinary aliases still work, also many uses of one anchor", () => {
    const uses = Array.from({ length: 150 }, (_, i) => `          - { name: p${i}, table: holding, address: ${i}, unit: *u }`).join("\n");
    const r = parseConfigText(`${minimal}x-unit: &u V
sources:
  - type: modbus
    name: line
    tcp: { host: 10.0.0.2 }
    devices:
      - name: d1
        unit: 1
        points:
${uses}
`);
    // The only complaint is the helper key: the 150 aliases resolved.
    expect(errorsOf(r)).toEqual(["x-unit: unknown key"]);
  });

  it("custom and language tags are refused with their place", () => {
    expect(errors(`${minimal}store: { path: !!js/function "function () {}" }\n`)).toEqual([
      "line 4, column 16: tag !!js/function is not allowed: a config holds plain values, lists and mappings",
    ]);
    expect(errors(`${minimal}store: !!binary aGVsbG8=\n`)[0]).toMatch(/^line 4, column 8: tag !!binary is not allowed/);
    expect(errors(`${minimal}store: !custom { path: x }\n`)[0]).toMatch(/^line 4, column 8: tag !custom is not allowed/);
    expect(errors(`${minimal}store: { path: !!set { a } }\n`)[0]).toMatch(/^line 4, column 16: tag !!set is not allowed/);
    // The core tags are plain YAML and stay allowed.
    expect(parseConfigText(`${minimal}store: !!map { path: !!str 123 }\n`).ok).toBe(true);
  });

  it("a number too large (or not a number) is named, not read as Infinity or a rounded value", () => {
    const e = errors(`${minimal}metrics: { port: 1e999 }\nlive_feed: { port: .inf }\nx: [.nan, 99999999999999999999999, -1e400]\n`);
    expect(e).toEqual([
      "line 4, column 18: 1e999 is out of range: numbers must lie within ±9007199254740991",
      "line 5, column 20: .inf is out of range: numbers must lie within ±9007199254740991",
      "line 6, column 5: .nan is out of range: numbers must lie within ±9007199254740991",
      "line 6, column 11: 99999999999999999999999 is out of range: numbers must lie within ±9007199254740991",
      "line 6, column 36: -1e400 is out of range: numbers must lie within ±9007199254740991",
    ]);
  });

  it("__proto__ and other inherited names are unknown keys, and pollute nothing", () => {
    const e = errors(`${minimal}__proto__: { polluted: 1 }\nconstructor: { prototype: { polluted: 1 } }\nstore: { __proto__: { path: /tmp/x }, toString: 1 }\n`);
    expect(e).toEqual(expect.arrayContaining(["__proto__: unknown key", "constructor: unknown key", "store.__proto__: unknown key", "store.toString: unknown key"]));
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("merge keys (<<) are refused with their place, also under %YAML 1.1", () => {
    const text = `base: &b { url: "mqtt://h" }\nsite: s\ngateway: g\nuplink: { <<: *b }\n`;
    expect(errors(text)).toEqual(["line 4, column 11: merge keys (<<) are not supported: write the keys out"]);
    expect(errors(`%YAML 1.1\n---\n${text}`)).toEqual(["line 6, column 11: merge keys (<<) are not supported: write the keys out"]);
  });

  it("duplicate keys name both places, and many keys cost linear time", () => {
    expect(errors(`${minimal}store: { path: a, quota: 1MB, path: b }\n`)).toEqual(["line 4, column 31: duplicate key 'path' (keys must be unique; first at line 4, column 10)"]);
    expect(errors("site: a\nsite: b\n")[0]).toMatch(/^line 2, column 1: duplicate key 'site' .*unique/);
    // 20,000 keys in one mapping: the old check compared every key with every other (seconds);
    // now one pass.
    const many = Array.from({ length: 20_000 }, (_, i) => `  k${i}: ${i}`).join("\n");
    const start = performance.now();
    expect(errors(`${minimal}x:\n${many}\n`)).toEqual(["x: unknown key"]);
    expect(performance.now() - start).toBeLessThan(3000);
  });

  it("a list or a mapping as a key is refused", () => {
    expect(errors(`${minimal}? [a, b]\n: 1\n`)).toEqual(["line 4, column 3: a key must be a plain name, not a list or a mapping"]);
  });

  it("a file that is not a mapping, or has nothing in it, says so in one line", () => {
    expect(errors("")).toEqual(["(top level): the file has no settings; a config needs site:, gateway: and uplink: at least"]);
    expect(errors("# only a comment\n")).toEqual(["(top level): the file has no settings; a config needs site:, gateway: and uplink: at least"]);
    expect(errors("- site: s\n- gateway: g\n")).toEqual(["line 1, column 1: expected a mapping (site:, gateway:, uplink:, …), found a list"]);
    expect(errors("hello\n")).toEqual(["line 1, column 1: expected a mapping (site:, gateway:, uplink:, …), found a value"]);
  });

  it("nesting is bounded before it costs memory", () => {
    const n = 100_000;
    const e = errors(`${minimal}x: ${"[".repeat(n)}${"]".repeat(n)}\n`);
    expect(e).toEqual([expect.stringMatching(/^line 4, column \d+: nested more than 64 levels deep$/)]);
  });

  it("a second document is refused", () => {
    expect(errors(`${minimal}---\nsite: other\n`)).toEqual(["line 4, column 1: more than one YAML document (---); a config is one document"]);
  });
});

describe("hostile files", () => {
  it("bytes that are not UTF-8 are refused with their place", () => {
    const dir = tempDir();
    const file = join(dir, "latin1.yaml");
    writeFileSync(file, Buffer.concat([Buffer.from(`${minimal}store: { path: "caf`), Buffer.from([0xe9]), Buffer.from('.db" }\n')]));
    expect(checkConfigFile(file)).toEqual({ ok: false, errors: ["line 4, column 20: not UTF-8 (byte 0xe9); save the file as UTF-8"] });
    const utf16 = join(dir, "utf16.yaml");
    writeFileSync(utf16, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(minimal, "utf16le")]));
    expect(checkConfigFile(utf16)).toEqual({ ok: false, errors: ["line 1, column 1: not UTF-8 (byte 0xff); save the file as UTF-8"] });
    // A UTF-8 byte order mark is fine.
    const bom = join(dir, "bom.yaml");
    writeFileSync(bom, `\ufeff${minimal}`);
    expect(checkConfigFile(bom).ok).toBe(true);
  });

  it("a file above 256 KB is refused before it is parsed", () => {
    const dir = tempDir();
    const file = join(dir, "big.yaml");
    writeFileSync(file, `${minimal}# ${"x".repeat(300_000)}\n`);
    expect(checkConfigFile(file)).toEqual({ ok: false, errors: [`cannot read ${file}: larger than 256 KB, the most a config may have`] });
    // A device that never ends is read no further than the limit.
    expect(checkConfigFile("/dev/zero")).toEqual({ ok: false, errors: ["cannot read /dev/zero: larger than 256 KB, the most a config may have"] });
  });

  it("nothing the loader is given throws: every answer is a list of error lines", () => {
    const piece = fc.constantFrom(
      "site: s\n", "gateway: g\n", 'uplink: { url: "mqtt://h" }\n', "&a ", "*a ", "*b ", "&b ", "<<: ", "[", "]", "{", "}", ", ", ": ", "- ", "\n  ",
      "!!js/function ", "!tag ", "1e999", ".nan", "__proto__: ", "? ", "|\n  ", '"\\u', "'", "%YAML 1.1\n---\n", "---\n", "\t", "\u0000", "x",
    );
    fc.assert(
      fc.property(fc.array(fc.oneof(piece, fc.string({ maxLength: 4 })), { maxLength: 40 }), (parts) => {
        const r = parseConfigText(parts.join(""));
        if (!r.ok) for (const e of r.errors) expect(typeof e).toBe("string");
      }),
      { numRuns: 2000 },
    );
  });
});
