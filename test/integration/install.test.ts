import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { tempDir } from "../helpers/tmp.js";

const INSTALL = "scripts/install.sh";
const UNIT = "systemd/edge-agent.service";

function bash(args: string[], opts: { cwd?: string; path?: string } = {}) {
  const env = { ...process.env, ...(opts.path ? { PATH: `${opts.path}:${process.env.PATH ?? ""}` } : {}) };
  const r = spawnSync("bash", args, { cwd: opts.cwd ?? process.cwd(), env, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function write(file: string, text: string, mode?: number): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
  if (mode !== undefined) chmodSync(file, mode);
}

/** Every file and directory under dir, relative, sorted. */
function tree(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).sort();
}

/** The unit file as section → key → values (keys may repeat). */
function parseUnit(text: string): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      out[section] ??= {};
      continue;
    }
    const eq = line.indexOf("=");
    expect(eq, `not key=value in [${section}]: ${line}`).toBeGreaterThan(0);
    ((out[section] ??= {})[line.slice(0, eq)] ??= []).push(line.slice(eq + 1));
  }
  return out;
}

const SYSTEM_PATHS = ["/opt/edge-agent", "/etc/edge-agent", "/var/lib/edge-agent", "/etc/systemd/system/edge-agent.service", "/usr/local/bin/edge-agent"];

describe("scripts/install.sh", () => {
  it("--dry-run --prefix prints the planned steps and creates nothing", () => {
    const prefix = tempDir();
    const before = SYSTEM_PATHS.map(existsSync);
    const r = bash([INSTALL, "--dry-run", "--prefix", prefix]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toBe(`edge-agent install from ${process.cwd()} into ${prefix}, dry run: nothing is changed`);
    expect(lines).toContain("[user]    skipped under --prefix: system user edge-agent, groups dialout i2c gpio");
    for (const item of ["dist", "drivers", "configs", "package.json", "package-lock.json"]) {
      expect(lines).toContain(`[app]     would copy ${item} to ${prefix}/opt/edge-agent/`);
    }
    expect(r.stdout).toContain(`[deps]    would install runtime dependencies in ${prefix}/opt/edge-agent: npm ci --omit=dev`);
    expect(r.stdout).toContain(`[config]  would install the example config as ${prefix}/etc/edge-agent/edge-agent.yaml`);
    expect(r.stdout).toContain(`[unit]    would install ${prefix}/etc/systemd/system/edge-agent.service`);
    expect(lines.at(-1)).toMatch(/^dry run: \d+ changes planned, none made$/);
    expect(tree(prefix)).toEqual([]);
    expect(SYSTEM_PATHS.map(existsSync)).toEqual(before);
  });

  it("--help exits 0 with the usage", () => {
    const r = bash([INSTALL, "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: install\.sh/);
    for (const flag of ["--start", "--uninstall", "--purge", "--prefix DIR", "--dry-run"]) expect(r.stdout).toContain(flag);
  });

  it("an unknown flag, or --purge without --uninstall, exits 2 with one line", () => {
    for (const [args, message] of [
      [["--frobnicate"], "install.sh: unknown option '--frobnicate' (see --help)\n"],
      [["--purge", "--dry-run"], "install.sh: --purge only goes with --uninstall (see --help)\n"],
      [["--dry-run", "--prefix"], "install.sh: --prefix needs a directory (see --help)\n"],
    ] as const) {
      const r = bash([INSTALL, ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(message);
      expect(r.stdout).toBe("");
    }
  });

  it("installs into a prefix, changes nothing on a second run, keeps the config, and uninstalls", () => {
    // A release tree with the real script and unit, and an npm that only records its calls.
    const dir = tempDir();
    const src = join(dir, "src");
    const root = join(dir, "root");
    const npmLog = join(dir, "npm.log");
    write(join(src, "scripts/install.sh"), readFileSync(INSTALL, "utf8"));
    write(join(src, "systemd/edge-agent.service"), readFileSync(UNIT, "utf8"));
    write(join(src, "configs/gateway.example.yaml"), readFileSync("configs/gateway.example.yaml", "utf8"));
    write(join(src, "dist/src/cli/main.js"), "// v1\n");
    write(join(src, "drivers/README.md"), "drivers\n");
    write(join(src, "package.json"), '{ "name": "edge-agent" }\n');
    write(join(src, "package-lock.json"), '{ "lockfileVersion": 3 }\n');
    write(join(dir, "bin/npm"), `#!/bin/sh\necho "npm $*" >> "${npmLog}"\n[ "$1" = ci ] && mkdir -p node_modules\nexit 0\n`, 0o755);
    const run = (...args: string[]) => bash([join(src, "scripts/install.sh"), "--prefix", root, ...args], { path: join(dir, "bin") });

    const first = run();
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/done: \d+ changes\n$/);
    expect(readFileSync(npmLog, "utf8")).toBe("npm ci --omit=dev --ignore-scripts --no-audit --no-fund\nnpm rebuild\n");
    expect(readFileSync(join(root, "etc/edge-agent/edge-agent.yaml"), "utf8")).toBe(readFileSync("configs/gateway.example.yaml", "utf8"));
    const node = spawnSync("bash", ["-c", "command -v node"], { encoding: "utf8" }).stdout.trim();
    const exec = /^ExecStart=(.*)$/m.exec(readFileSync(join(root, "etc/systemd/system/edge-agent.service"), "utf8"))?.[1];
    const shipped = /^ExecStart=(.*)$/m.exec(readFileSync(UNIT, "utf8"))![1]!;
    expect(exec).toBe(shipped.replace(/^\/usr\/bin\/node /, `${node} `));
    expect(readFileSync(join(root, "usr/local/bin/edge-agent"), "utf8")).toMatch(/^exec \S+ \/opt\/edge-agent\/dist\/src\/cli\/main\.js "\$@"$/m);
    expect(existsSync(join(root, "var/lib/edge-agent"))).toBe(true);
    const installed = tree(root);

    write(join(root, "etc/edge-agent/edge-agent.yaml"), "site: mine\n");
    const second = run();
    expect(second.code).toBe(0);
    expect(second.stdout).toContain("kept (never overwritten)");
    expect(second.stdout).not.toMatch(/^\[\w+\]\s+(copy|install|create)/m);
    expect(second.stdout).toMatch(/edge-agent is installed and up to date: nothing changed\n$/);
    expect(readFileSync(npmLog, "utf8").split("\n")).toHaveLength(3); // npm not run again
    expect(readFileSync(join(root, "etc/edge-agent/edge-agent.yaml"), "utf8")).toBe("site: mine\n");
    expect(tree(root)).toEqual(installed);

    // A new release: only what changed is copied.
    write(join(src, "dist/src/cli/main.js"), "// v2\n");
    const update = run();
    expect(update.stdout.match(/^\[app\]\s+copy .*$/gm)).toEqual([`[app]     copy dist to ${root}/opt/edge-agent/`]);
    expect(update.stdout).toMatch(/done: 1 changes\n$/);
    expect(readFileSync(join(root, "opt/edge-agent/dist/src/cli/main.js"), "utf8")).toBe("// v2\n");

    write(join(root, "var/lib/edge-agent/outbox.db"), "readings");
    const uninstall = run("--uninstall");
    expect(uninstall.code).toBe(0);
    expect(uninstall.stdout).toContain(`kept ${root}/etc/edge-agent (config), ${root}/var/lib/edge-agent (data)`);
    expect(readFileSync(join(root, "etc/edge-agent/edge-agent.yaml"), "utf8")).toBe("site: mine\n");
    expect(readFileSync(join(root, "var/lib/edge-agent/outbox.db"), "utf8")).toBe("readings");
    for (const gone of ["opt/edge-agent", "etc/systemd/system/edge-agent.service", "usr/local/bin/edge-agent"]) {
      expect(existsSync(join(root, gone)), gone).toBe(false);
    }
    expect(run("--uninstall").stdout).toMatch(/edge-agent is not installed: nothing to remove\n$/);

    const purge = run("--uninstall", "--purge");
    expect(purge.code).toBe(0);
    expect(existsSync(join(root, "etc/edge-agent"))).toBe(false);
    expect(existsSync(join(root, "var/lib/edge-agent"))).toBe(false);
  });

  it("refuses a Node.js older than 20 and says where to get a newer one", () => {
    const dir = tempDir();
    write(join(dir, "bin/node"), '#!/bin/sh\ncase "$1" in --version) echo v18.19.0 ;; *) echo 18 ;; esac\n', 0o755);
    const r = bash([INSTALL, "--dry-run", "--prefix", join(dir, "root")], { path: join(dir, "bin") });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("Node.js >= 20 is needed");
    expect(r.stderr).toContain("v18.19.0");
    expect(r.stderr).toContain("deb.nodesource.com");
    expect(existsSync(join(dir, "root"))).toBe(false);
  });
});

describe("systemd/edge-agent.service", () => {
  const text = readFileSync(UNIT, "utf8");
  const unit = parseUnit(text);
  const service = unit.Service ?? {};
  const one = (key: string) => {
    expect(service[key], key).toHaveLength(1);
    return service[key]![0];
  };

  it("has the keys a supervised, hardened gateway service needs", () => {
    expect(one("Type")).toBe("notify");
    expect(one("NotifyAccess")).toBe("all");
    expect(one("WatchdogSec")).toBe("30");
    expect(one("Restart")).toBe("always");
    expect(one("User")).toBe("edge-agent");
    expect(one("Group")).toBe("edge-agent");
    expect(one("SupplementaryGroups").split(" ")).toEqual(["dialout", "i2c", "gpio"]);
    expect(one("NoNewPrivileges")).toBe("yes");
    expect(one("ProtectSystem")).toBe("strict");
    expect(one("ProtectHome")).toBe("yes");
    expect(one("PrivateTmp")).toBe("yes");
    expect(one("CapabilityBoundingSet")).toBe("");
    expect(one("DevicePolicy")).toBe("closed");
    expect(service.DeviceAllow).toEqual(expect.arrayContaining(["char-ttyUSB rw", "char-ttyACM rw", "char-ttyAMA rw", "char-i2c rw", "char-gpiochip rw"]));
    expect(one("Environment").split(" ")).toEqual(expect.arrayContaining(["UV_USE_IO_URING=0", "NODE_ENV=production"]));
    expect(one("TimeoutStopSec")).toBe("30");
    // V8's JIT needs writable+executable memory.
    expect(service.MemoryDenyWriteExecute).toBeUndefined();
    expect(service.PrivateDevices).toBeUndefined();
    expect(unit.Install?.WantedBy).toEqual(["multi-user.target"]);
  });

  it("runs what the install script installs, with its data where the example config puts it", () => {
    expect(one("ExecStart")).toMatch(/^\/usr\/bin\/node (--\S+ )*\/opt\/edge-agent\/dist\/src\/cli\/main\.js run --config \/etc\/edge-agent\/edge-agent\.yaml$/);
  });

  it("gives node flags that this Node accepts, without a warning (a Node upgrade that drops one fails here)", () => {
    const flags = one("ExecStart").split(" ").slice(1, -4);
    expect(flags).toEqual(expect.arrayContaining(["--max-semi-space-size=1", "--no-opt"]));
    const r = spawnSync(process.execPath, [...flags, "-e", "process.stdout.write('ok')"], { encoding: "utf8" });
    expect({ code: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 0, stdout: "ok", stderr: "" });
    expect(existsSync("src/cli/main.ts")).toBe(true); // compiled to dist/src/cli/main.js
    const script = readFileSync(INSTALL, "utf8");
    expect(script).toContain("readonly APP_PATH=/opt/$NAME ETC_PATH=/etc/$NAME DATA_PATH=/var/lib/$NAME");
    expect(script).toContain('"$ETC/$NAME.yaml"');
    expect(one("StateDirectory")).toBe("edge-agent");
    const example = parse(readFileSync("configs/gateway.example.yaml", "utf8")) as { store: { path: string } };
    expect(example.store.path.startsWith("/var/lib/edge-agent/")).toBe(true);
  });

  const analyze = spawnSync("systemd-analyze", ["--version"], { encoding: "utf8" });
  it.skipIf(analyze.error !== undefined)("passes systemd-analyze verify", () => {
    // A copy whose ExecStart names this machine's node, so only the unit itself is judged.
    const dir = tempDir();
    const copy = join(dir, "edge-agent.service");
    writeFileSync(copy, text.replace(/^ExecStart=\/usr\/bin\/node /m, `ExecStart=${process.execPath} `));
    const r = spawnSync("systemd-analyze", ["verify", copy], { encoding: "utf8", cwd: dir });
    // verify exits 0 on unknown keys and bad values too: its messages are what fail the unit.
    const ours = `${r.stdout}${r.stderr}`.split("\n").filter((l) => l.includes("edge-agent"));
    expect(ours).toEqual([]);
    expect(r.status).toBe(0);
  });

  it.skipIf(analyze.error !== undefined)("keeps its systemd-analyze security exposure low", () => {
    const r = spawnSync("systemd-analyze", ["security", "--offline=true", UNIT], { encoding: "utf8" });
    if (/unrecognized option|unknown option/i.test(r.stderr)) return; // systemd < 250 has no --offline
    const m = /Overall exposure level for edge-agent\.service: (\d+\.\d)/.exec(r.stdout);
    expect(m, r.stderr).not.toBeNull();
    expect(Number(m![1])).toBeLessThanOrEqual(2.5);
  });
});
