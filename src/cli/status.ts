/** `edge-agent status`: how the running agent is doing, asked over its local control socket. */
import type { Command } from "commander";
import type { AgentStatus } from "../agent/agent.js";
import { droppedTotal } from "../store/drops.js";
import { askRunningAgent } from "./agent-socket.js";
import { formatAge, formatBytes, printJson, table } from "./output.js";

export async function agentStatus(configFile: string): Promise<AgentStatus> {
  return (await askRunningAgent(configFile, { op: "status" })) as AgentStatus;
}

interface DeviceHealthLike {
  online?: boolean;
  lastError?: string | null;
  requestsPerPoll?: number;
  bus?: { name: string; open: boolean; lastError: string | null };
}

export function printStatus(s: AgentStatus): void {
  const o = s.outbox;
  const d = o.dropped;
  const rows: Array<[string, string]> = [
    ["uplink", `${s.uplink.state} (${s.uplink.broker})${s.uplink.state !== "online" && s.uplink.lastError ? ` — ${s.uplink.lastError}` : ""}`],
    ["sent", `${s.uplink.readingsAcked} readings in ${s.uplink.messagesAcked} messages${s.uplink.backlogRemaining ? ` · backlog ${s.uplink.backlogRemaining}` : ""}`],
    ["outbox", `${o.depth} pending · oldest ${formatAge(o.oldestAgeMs)} · ${formatBytes(o.fileBytes)} of ${formatBytes(o.quota)}`],
    ["dropped", `${droppedTotal(d)}${droppedTotal(d) ? ` (${d.quota_oldest} oldest, ${d.quota_newest} newest, ${d.max_age} too old)` : ""}`],
  ];
  const buses = new Map<string, NonNullable<DeviceHealthLike["bus"]>>();
  for (const src of Object.values(s.sources)) {
    const bus = (src.health as DeviceHealthLike | undefined)?.bus;
    if (bus) buses.set(bus.name, bus);
  }
  for (const [name, bus] of buses) rows.push([`bus ${name}`, `${bus.open ? "open" : "closed"}${bus.lastError ? ` · last error: ${bus.lastError}` : ""}`]);
  for (const [name, src] of Object.entries(s.sources)) {
    const h = src.health as DeviceHealthLike | undefined;
    const state = h?.online === undefined ? `${src.polls} polls` : h.online ? "online" : "OFFLINE";
    const extra = [h?.requestsPerPoll !== undefined ? `${h.requestsPerPoll} req/poll` : "", src.overruns ? `${src.overruns} overruns` : "", h?.lastError ? `last error: ${h.lastError}` : src.lastError ? `last error: ${src.lastError}` : ""].filter(Boolean);
    rows.push([`  ${name}`, `${state}${extra.length ? ` · ${extra.join(" · ")}` : ""}`]);
  }
  for (const [name, state] of Object.entries(s.actuators)) rows.push([`  ${name}`, JSON.stringify(state)]);
  for (const c of s.commands.slice(-5)) {
    rows.push(["  command", `${new Date(c.ts).toISOString().slice(11, 19)} ${c.target} ${c.action ?? "?"} → ${c.status}${c.reason ? ` (${c.reason})` : ""}`]);
  }
  process.stdout.write(`${table(rows)}\n`);
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
