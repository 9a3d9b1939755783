/**
 * `edge-agent bridge …`: the boards on the firmware bridge, for the technician. `list`, `info`,
 * `read`, `log` and `send` ask the running agent (it owns the ports); `probe` opens free ports
 * itself and asks whoever is there for a hello (the agent must not be running on them);
 * `schema` prints the schema hash a board's firmware must be built with.
 */
import type { Command } from "commander";
import { BoardSession, type HelloInfo } from "../bridge/board-session.js";
import { formatSchemaHash, protoPath, SCHEMA_HASH } from "../bridge/schema.js";
import { SerialLink } from "../buses/serial/serial-link.js";
import { UserError } from "../model/errors.js";
import type { AgentStatus, BoardStatus } from "../model/status.js";
import { candidatePorts } from "../sources/bridge/finder.js";
import { registerBridgeUpdate } from "./bridge-update.js";
import { sendCommand } from "./control.js";
import { formatAge, parseDuration, printJson, table } from "./output.js";
import { agentStatus, boardLine } from "./status.js";

interface BoardEntry {
  name: string;
  online: boolean;
  board: BoardStatus;
  health: Record<string, unknown>;
}

function boards(s: AgentStatus): BoardEntry[] {
  const out: BoardEntry[] = [];
  for (const [name, src] of Object.entries(s.sources)) {
    if (src.type !== "bridge") continue;
    const dev = src.devices[0];
    if (!dev?.board) continue;
    out.push({ name, online: dev.online, board: dev.board, health: (src.health ?? {}) as Record<string, unknown> });
  }
  return out;
}

async function board(config: string, name: string): Promise<BoardEntry> {
  const all = boards(await agentStatus(config));
  const b = all.find((x) => x.name === name);
  if (!b) throw new UserError(`no board '${name}' in the running agent${all.length ? ` (boards: ${all.map((x) => x.name).join(", ")})` : " (it has no bridge sources)"}`);
  return b;
}

/** A value as typed on the command line: true/false, a number, or text. */
export function parseValue(text: string): number | boolean | string {
  if (text === "true" || text === "on") return true;
  if (text === "false" || text === "off") return false;
  if (text.trim() !== "" && Number.isFinite(Number(text))) return Number(text);
  return text;
}

export function registerBridge(program: Command): void {
  const bridge = program
    .command("bridge")
    .description("custom boards on the firmware bridge (docs/firmware-bridge.md): which are connected, their values, logs and link figures")
    .addHelpText(
      "after",
      `
With the agent running (it owns the boards' ports):
  edge-agent bridge list -c agent.yaml           every board: port, id, firmware, link quality
  edge-agent bridge info room-node -c agent.yaml one board: identity, points, link figures
  edge-agent bridge read room-node -c agent.yaml its last values
  edge-agent bridge log room-node -c agent.yaml  its last log lines
  edge-agent bridge send room-node setpoint 21 -c agent.yaml
  edge-agent bridge update room-node --image fw.bin --manifest fw.json -c agent.yaml
  edge-agent bridge images room-node -c agent.yaml its firmware slots and last updates
For the firmware engineer:
  edge-agent bridge keygen --out release.pem    a signing key (public part for updates.keys)
  edge-agent bridge sign --key release.pem --image fw.bin --hardware room-node/rev-c --out fw.json
With the agent stopped:
  edge-agent bridge probe                        who answers on /dev/ttyACM*, /dev/ttyUSB*…`,
    );

  bridge
    .command("list")
    .description("the boards of the running agent: state, port, id, hardware, firmware, last reset, link quality")
    .requiredOption("-c, --config <file>", "the agent's configuration file")
    .option("--json", "print as JSON")
    .action(async (o: { config: string; json?: boolean }) => {
      const all = boards(await agentStatus(o.config));
      if (o.json) return printJson(all.map(({ name, online, board }) => ({ name, online, ...board })));
      if (all.length === 0) return void process.stdout.write("no bridge sources in this agent's config\n");
      const rows: Array<[string, string]> = all.map((b) => [
        b.name,
        [b.online ? "online" : b.board.state.toUpperCase(), b.board.id ? `id ${b.board.id}` : "", b.board.hardware ?? "", b.board.resetReason ? `reset: ${b.board.resetReason}` : "", boardLine(b.board)]
          .filter(Boolean)
          .join(" · "),
      ]);
      process.stdout.write(`${table(rows)}\n`);
    });

  bridge
    .command("info")
    .description("one board: identity, points (with bounds and whether writable), children, link figures")
    .argument("<board>", "the board's name in the config")
    .requiredOption("-c, --config <file>", "the agent's configuration file")
    .option("--json", "print as JSON")
    .action(async (name: string, o: { config: string; json?: boolean }) => {
      const b = await board(o.config, name);
      if (o.json) return printJson({ name: b.name, online: b.online, ...b.board, points: b.health.points ?? [], link: b.health.link ?? null });
      const s = b.board;
      const rows: Array<[string, string]> = [
        ["state", `${b.online ? "online" : s.state}${s.refusedReason ? ` — ${s.refusedReason}` : ""}`],
        ["port", s.port ?? "—"],
        ["id", s.id ?? "—"],
        ["hardware", s.hardware ?? "—"],
        ["firmware", s.firmware ?? "—"],
        ["boot", `${s.bootId ?? "—"}${s.resetReason ? ` (reset: ${s.resetReason})` : ""} · ${s.sessions} sessions`],
        ["frames", `${s.framesIn} in · ${s.framesOut} out · ${s.retransmits} resent · ${s.crcErrors} crc errors · ${s.garbage} resyncs · ${s.oversized} oversized · ${s.unknownChannel} unknown channel`],
        ["round trip", s.rttMs === null ? "—" : `${s.rttMs} ms`],
        ["clock", s.bootedAt === null ? "not synchronised yet" : `booted ${new Date(s.bootedAt).toISOString()} · placed within ±${s.clockErrorMs} ms · drift ${s.clockDriftPpm} ppm`],
        ["board buffer", s.boardBuffered === null ? "—" : `${s.boardBuffered} waiting · ${s.boardDropped} overwritten`],
        ["duplicates", `${s.duplicates} readings resent and recognised`],
      ];
      if (s.children.length) rows.push(["children", s.children.join(", ")]);
      const points = (b.health.points ?? []) as Array<{ name: string; unit: string; type: string; writable: boolean; min: number | null; max: number | null }>;
      for (const p of points) {
        const bounds = p.min !== null || p.max !== null ? ` ${p.min ?? "−∞"}…${p.max ?? "∞"}` : "";
        rows.push([`  ${p.name}`, `${p.type}${p.unit ? ` ${p.unit}` : ""}${p.writable ? ` · writable${bounds}` : ""}`]);
      }
      process.stdout.write(`${table(rows)}\n`);
    });

  bridge
    .command("read")
    .description("a board's last values, as the agent received them")
    .argument("<board>", "the board's name in the config")
    .requiredOption("-c, --config <file>", "the agent's configuration file")
    .option("--json", "print as JSON")
    .action(async (name: string, o: { config: string; json?: boolean }) => {
      const b = await board(o.config, name);
      const values = (b.health.values ?? []) as Array<{ point: string; ts: number; value: unknown; quality: string }>;
      if (o.json) return printJson(values);
      const now = Date.now();
      const rows: Array<[string, string]> = values.map((v) => [v.point, `${JSON.stringify(v.value)}${v.quality !== "good" ? ` (${v.quality})` : ""} · ${formatAge(now - v.ts)} ago`]);
      process.stdout.write(rows.length ? `${table(rows)}\n` : `no values from ${name} yet (${b.board.state})\n`);
    });

  bridge
    .command("log")
    .description("a board's last log lines (framed on its log channel)")
    .argument("<board>", "the board's name in the config")
    .requiredOption("-c, --config <file>", "the agent's configuration file")
    .option("-n, --lines <n>", "how many", "50")
    .option("--json", "print as JSON")
    .action(async (name: string, o: { config: string; lines: string; json?: boolean }) => {
      const n = Number(o.lines);
      if (!Number.isInteger(n) || n < 1) throw new UserError(`--lines: expected a positive whole number, got '${o.lines}'`);
      const b = await board(o.config, name);
      const lines = ((b.health.logs ?? []) as Array<{ ts: number; level: string; text: string }>).slice(-n);
      if (o.json) return printJson(lines);
      for (const l of lines) process.stdout.write(`${new Date(l.ts).toISOString()} ${l.level.padEnd(5)} ${l.text}\n`);
    });

  bridge
    .command("send")
    .description("write a board's point through the command path (the config's writable list and bounds apply; read back)")
    .argument("<board>", "the board's name in the config")
    .argument("<point>", "a writable point, e.g. setpoint or sensor-a/interval")
    .argument("<value>", "true/false, a number, or text")
    .requiredOption("-c, --config <file>", "the agent's configuration file")
    .option("--json", "print the result as JSON")
    .action(async (name: string, point: string, value: string, o: { config: string; json?: boolean }) => {
      const result = await sendCommand(o.config, name, "write", { point, value: parseValue(value) });
      if (o.json) printJson(result);
      else process.stdout.write(`${result.target} ${point}: ${result.status}${result.reason ? ` — ${result.reason}` : ""}${result.state ? ` ${JSON.stringify(result.state)}` : ""}\n`);
      if (result.status === "rejected") process.exitCode = 2;
      else if (result.status === "error") process.exitCode = 1;
    });

  registerBridgeUpdate(bridge);

  bridge
    .command("probe")
    .description("ask every free serial port for a board's hello (run it with the agent stopped: the agent owns its boards' ports)")
    .option("--port <pattern...>", "ports to probe (globs)", ["/dev/serial/by-id/*", "/dev/ttyACM*", "/dev/ttyUSB*"])
    .option("--baud <n>", "line speed", "115200")
    .option("--wait <duration>", "how long to wait for a hello on each port (boards that reset on open need their boot time)", "3s")
    .option("--json", "print as JSON")
    .action(async (o: { port: string[]; baud: string; wait: string; json?: boolean }) => {
      const baud = Number(o.baud);
      if (!Number.isInteger(baud) || baud < 1200) throw new UserError(`--baud: expected a line speed like 115200, got '${o.baud}'`);
      const wait = parseDuration(o.wait, ["ms", "s"], { max: 60_000, flag: "--wait" });
      if (wait === undefined) throw new UserError(`--wait: expected a duration like 3s, got '${o.wait}'`);
      const found: Array<Record<string, unknown>> = [];
      for (const path of candidatePorts(o.port, () => false)) found.push({ port: path, ...(await probePort(path, baud, wait)) });
      if (o.json) return printJson(found);
      if (found.length === 0) return void process.stdout.write(`no ports match ${o.port.join(", ")}\n`);
      process.stdout.write(`${table(found.map((f) => [String(f.port), f.id ? `board ${f.id} · ${f.hardware} · fw ${f.firmware} · reset: ${f.resetReason}${f.schemaOk ? "" : " · OTHER SCHEMA"}` : String(f.error)]))}\n`);
    });

  bridge
    .command("schema")
    .description("the schema hash boards must be built with (their hello carries it; another one is refused)")
    .option("--json", "print as JSON")
    .action((o: { json?: boolean }) => {
      if (o.json) return printJson({ schemaHash: formatSchemaHash(SCHEMA_HASH), proto: protoPath() });
      process.stdout.write(`${formatSchemaHash(SCHEMA_HASH)}  ${protoPath()}\n`);
    });
}

/** Opens one port, asks for a hello, and says who answered (or why nobody). */
async function probePort(path: string, baud: number, waitMs: number): Promise<Record<string, unknown>> {
  const link = new SerialLink({ path, baudRate: baud });
  try {
    await link.open();
  } catch (err) {
    return { error: (err as Error).message };
  }
  let seen: HelloInfo | null = null;
  const silent = { child: () => silent, info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined } as never;
  const session = new BoardSession(
    {
      name: "probe",
      expectId: null,
      heartbeatMs: 1000,
      offlineAfterMs: waitMs,
      timeSyncMs: 60_000,
      commandTimeoutMs: 1000,
      maxPending: 100,
      writable: [],
      limits: new Map(),
      log: silent,
      cursor: () => undefined,
      // Heard, never answered: a probe takes no board over.
      heard: (info) => {
        seen = info;
        return false;
      },
    },
    (bytes) => void link.write(bytes),
  );
  link.onData((c) => session.receive(c));
  session.start();
  const deadline = Date.now() + waitMs;
  while (!seen && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  session.stop();
  await link.close();
  const stats = session.details().link as { garbage: number; crcErrors: number; framesIn: number };
  if (seen) return { ...(seen as HelloInfo) };
  return { error: stats.framesIn > 0 || stats.garbage > 0 ? `bytes but no hello (${stats.garbage} garbage chunks, ${stats.crcErrors} crc errors: another protocol, or the wrong baud?)` : "no answer" };
}
