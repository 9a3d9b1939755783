/**
 * `run` checks its config in a child process (src/agent/config-apart.ts), so the daemon carries
 * neither the schema nor the YAML parser. What comes back must be what checkConfigFile gives in
 * the process itself: the same config to the last default, or the same errors with their places.
 * Runs the built child (dist/), as `edge-agent run` does.
 */
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { checkConfigFile } from "../../src/agent/config.js";
import { tempDir } from "../helpers/tmp.js";

type Apart = typeof import("../../src/agent/config-apart.js");
const apart = async (): Promise<Apart> => (await import(pathToFileURL(resolve("dist/src/agent/config-apart.js")).href)) as Apart;

describe("the config checked in a child process", () => {
  it.each(["demo.yaml", "gateway.example.yaml", "sala-smart.yaml", "street-cabinet.yaml"])("configs/%s: the same config as checked in the process", async (name) => {
    const file = resolve("configs", name);
    const here = checkConfigFile(file);
    expect(here.ok).toBe(true);
    // toStrictEqual: undefined keys and their absence are told apart too.
    expect(await (await apart()).checkConfigApart(file)).toStrictEqual(here);
  });

  it("the same errors, each with its place; loadConfigApart throws them as loadConfig does", async () => {
    const dir = tempDir();
    const file = join(dir, "bad.yaml");
    writeFileSync(file, "site: s\ngateway: g\nuplink: { url: ftp://x }\nsources:\n  - { type: radar, name: r }\n");
    const here = checkConfigFile(file);
    expect(here.ok).toBe(false);
    const { checkConfigApart, loadConfigApart } = await apart();
    expect(await checkConfigApart(file)).toStrictEqual(here);
    const thrown = await loadConfigApart(file).then(
      () => null,
      (e: unknown) => e as { message: string; exitCode: number; details: string[] },
    );
    expect(thrown).toMatchObject({ message: `${file}: ${here.ok ? 0 : here.errors.length} errors`, exitCode: 2, details: here.ok ? [] : here.errors });
  });

  it("a file that cannot be read is an error with its reason, not a crash", async () => {
    const file = join(tempDir(), "missing.yaml");
    expect(await (await apart()).checkConfigApart(file)).toStrictEqual(checkConfigFile(file));
  });
});
