/** `edge-agent status`: how the running agent is doing, asked over its local control socket. */
import type { Command } from "commander";
import type { AgentStatus } from "../model/status.js";
import { droppedTotal } from "../store/drops.js";
import { askRunningAgent } from "./agent-socket.js";
import { formatAge, formatBytes, printJson, table } from "./output.js";

export async function agentStatus(configFile: string): Promise<AgentStatus> {
  return (await askRunningAgent(configFile, { op: "status" })) as AgentStatus;
}

export function printStatus(s: AgentStatus): void {
  const o = s.outbox;
  const d = o.dropped;
  const rows: Array<[string, string]> = [
    ["uplink", `${s.uplink.state} (${s.uplink.broker})${s.uplink.state !== "online" && s.uplink.lastError ? ` — ${s.uplink.lastError}` : ""}`],
    ["sent", `${s.uplink.readingsAcked} readings in ${s.uplink.messagesAcked} messages${s.uplink.backlogRemaining ? ` · backlog ${s.uplink.backlogRemaining}` : ""}`],
    ...(s.uplink.budget
      ? ([["data budget", `${formatBytes(s.uplink.budget.bytes)} sent in ${s.uplink.budget.month} · forecast ${formatBytes(s.uplink.budget.forecast)} of ${formatBytes(s.uplink.budget.limit)}${s.uplink.budget.saving ? " · OVER: batching longer" : ""}${s.thinned ? ` · ${s.thinned} non-critical readings thinned` : ""}`]] as Array<[string, string]>)
      : []),
    ["outbox", `${o.depth} pending · oldest ${formatAge(o.oldestAgeMs)} · ${formatBytes(o.fileBytes)} of ${formatBytes(o.quota)}`],
    ["dropped", `${droppedTotal(d)}${droppedTotal(d) ? ` (${d.quota_oldest} oldest, ${d.quota_newest} newest, ${d.max_age} too old${d.purged ? `, ${d.purged} purged` : ""})` : ""}`],
  ];
  if (o.deadLetters.count > 0) rows.push(["dead letters", `${o.deadLetters.count} refused by the broker — edge-agent buffer dead-letters`]);
  for (const p of s.parts.filter((p) => p.state === "failed")) rows.push([`part ${p.name}`, `NOT RUNNING: ${p.error ?? "failed to start"}`]);
  const buses = new Map<string, AgentStatus["sources"][string]["buses"][number]>();
  for (const src of Object.values(s.sources)) for (const bus of src.buses) buses.set(bus.name, bus);
  for (const [name, bus] of buses) rows.push([`bus ${name}`, `${bus.open ? "open" : "closed"}${bus.lastError ? ` · last error: ${bus.lastError}` : ""}`]);
  for (const [name, src] of Object.entries(s.sources)) {
    // A source with one device of its own name is that device; otherwise its devices under it.
    const own = src.devices.length === 1 && src.devices[0]!.name === name ? src.devices[0] : undefined;
    const loop = [src.overruns ? `${src.overruns} overruns` : "", src.lastError && !own?.lastError ? `last error: ${src.lastError}` : ""];
    if (own || src.devices.length === 0) {
      const state = own ? (own.online ? "online" : "OFFLINE") : `${src.polls} polls`;
      rows.push([`  ${name}`, [state, ...deviceExtras(own), ...loop].filter(Boolean).join(" · ")]);
      continue;
    }
    rows.push([`  ${name}`, [`${src.polls} polls`, ...loop].filter(Boolean).join(" · ")]);
    for (const dev of src.devices) rows.push([`    ${dev.name.startsWith(`${name}/`) ? dev.name.slice(name.length + 1) : dev.name}`, [dev.online ? "online" : "OFFLINE", ...deviceExtras(dev)].join(" · ")]);
  }
  for (const [name, state] of Object.entries(s.actuators)) rows.push([`  ${name}`, JSON.stringify(state)]);
  for (const c of s.commands.slice(-5)) {
    rows.push(["  command", `${new Date(c.ts).toISOString().slice(11, 19)} ${c.target} ${c.action ?? "?"} → ${c.status}${c.reason ? ` (${c.reason})` : ""}`]);
  }
  process.stdout.write(`${table(rows)}\n`);
}

function deviceExtras(d: AgentStatus["sources"][string]["devices"][number] | undefined): string[] {
  if (!d) return [];
  const b = d.board;
  return [
    b ? boardLine(b) : "",
    d.requestsPerPoll !== undefined ? `${d.requestsPerPoll} req/poll` : "",
    d.excluded?.length ? `not read: ${d.excluded.join(", ")}` : "",
    d.lastError ? `last error: ${d.lastError}` : "",
  ].filter(Boolean);
}

/** A bridged board's link in one line: `on /dev/ttyACM0 · fw 1.2.0 · rtt 4 ms · 0 crc · 2 resent · clock +3.1 ms`. */
export function boardLine(b: NonNullable<AgentStatus["sources"][string]["devices"][number]["board"]>): string {
  const parts = [b.port ? `on ${b.port}` : `${b.state}`];
  if (b.state === "refused" && b.refusedReason) parts.push(`REFUSED: ${b.refusedReason}`);
  if (b.firmware) parts.push(`fw ${b.firmware}`);
  if (b.rttMs !== null) parts.push(`rtt ${b.rttMs} ms`);
  parts.push(`${b.crcErrors} crc`, `${b.retransmits} resent`);
  if (b.garbage) parts.push(`${b.garbage} resyncs`);
  if (b.clockErrorMs !== null) parts.push(`clock ±${b.clockErrorMs} ms, drift ${b.clockDriftPpm} ppm`);
  if (b.children.length) parts.push(`children ${b.children.join(", ")}`);
  return parts.join(" · ");
}

export function registerStatus(program: Command): void {
  program
    .command("status")
    .description("ask the running agent how it is: uplink, outbox, devices, actuators, recent commands")
    .requiredOption("-c, --config <file>", "the agent's configuration file")
    .option("--json", "print as JSON")
    .action(async (opts: { config: string; json?: boolean }) => {
      const s = await agentStatus(opts.config);
      if (opts.json) printJson(s);
      else printStatus(s);
    });
}
