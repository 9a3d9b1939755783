/**
 * `edge-agent light …` and `edge-agent charger …`: the platform's actions, run on site. They go
 * to the running agent over its control socket and take exactly the commands' path (same checks,
 * same limits, same result record), with an id of their own.
 */
import { randomUUID } from "node:crypto";
import type { Command } from "commander";
import type { CommandResult } from "../control/commands.js";
import { UserError } from "../model/errors.js";
import { askRunningAgent } from "./agent-socket.js";
import { parseDuration, printJson } from "./output.js";

export async function sendCommand(configFile: string, target: string, action: string, args: Record<string, unknown>): Promise<CommandResult> {
  const payload = JSON.stringify({ id: `cli-${randomUUID()}`, action, args });
  return (await askRunningAgent(configFile, { op: "command", target, payload })) as CommandResult;
}

function report(result: CommandResult, json: boolean | undefined): void {
  if (json) printJson(result);
  else {
    const state = result.state ? ` ${JSON.stringify(result.state)}` : "";
    process.stdout.write(`${result.target} ${result.action ?? ""}: ${result.status}${result.reason ? ` — ${result.reason}` : ""}${state}\n`);
  }
  if (result.status === "rejected") process.exitCode = 2;
  else if (result.status === "error") process.exitCode = 1;
}

function seconds(flag: string, text: string): number {
  const v = parseDuration(text, ["s", "m", "h"]);
  if (v === undefined) throw new UserError(`${flag}: expected a duration like 30m or 2h, got '${text}'`);
  return Math.round(v / 1000);
}

export function registerControl(program: Command): void {
  const light = program.command("light").description("switch a streetlight by hand (the override expires), or give it back to its schedule");
  light
    .command("set")
    .description("switch a streetlight on or off by hand until --for runs out (then its schedule decides again)")
    .argument("<name>", "the streetlight, as named in the config")
    .option("--on", "switch on")
    .option("--off", "switch off")
    .option("--level <percent>", "dimming level 0–100 (dimmable lamps)")
    .option("--for <duration>", "how long the override holds, e.g. 30m or 2h", "1h")
    .requiredOption("-c, --config <file>", "the agent's configuration file")
    .option("--json", "print the result as JSON")
    .action(async (name: string, o: { on?: boolean; off?: boolean; level?: string; for: string; config: string; json?: boolean }) => {
      if (Boolean(o.on) === Boolean(o.off)) throw new UserError("say --on or --off");
      const args: Record<string, unknown> = { on: Boolean(o.on), duration_s: seconds("--for", o.for) };
      if (o.level !== undefined) args.level = Number(o.level);
      report(await sendCommand(o.config, name, "set", args), o.json);
    });
  light
    .command("auto")
    .argument("<name>", "the streetlight")
    .description("end a manual override: the schedule decides again")
    .requiredOption("-c, --config <file>", "the agent's configuration file")
    .option("--json", "print the result as JSON")
    .action(async (name: string, o: { config: string; json?: boolean }) => report(await sendCommand(o.config, name, "auto", {}), o.json));

  const charger = program.command("charger").description("start or stop a charging session by hand (the point's limits apply)");
  charger
    .command("start")
    .description("start a charging session (ends by itself at the point's limits or yours)")
    .argument("<name>", "the charging point, as named in the config")
    .option("--max-kwh <kwh>", "end the session after this much energy")
    .option("--max-minutes <minutes>", "end the session after this long")
    .requiredOption("-c, --config <file>", "the agent's configuration file")
    .option("--json", "print the result as JSON")
    .action(async (name: string, o: { maxKwh?: string; maxMinutes?: string; config: string; json?: boolean }) => {
      const args: Record<string, unknown> = {};
      if (o.maxKwh !== undefined) args.max_kwh = Number(o.maxKwh);
      if (o.maxMinutes !== undefined) args.max_minutes = Number(o.maxMinutes);
      report(await sendCommand(o.config, name, "start", args), o.json);
    });
  charger
    .command("stop")
    .description("end the charging session now")
    .argument("<name>", "the charging point")
    .requiredOption("-c, --config <file>", "the agent's configuration file")
    .option("--json", "print the result as JSON")
    .action(async (name: string, o: { config: string; json?: boolean }) => report(await sendCommand(o.config, name, "stop", {}), o.json));
}
