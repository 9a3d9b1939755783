#!/usr/bin/env node
/**
 * The edge-agent command line. Exit codes: 0 ok, 1 failure, 2 usage or configuration error.
 * Only this file sets the exit code.
 */
import { Command, CommanderError } from "commander";
import { UserError } from "../model/errors.js";
import { VERSION } from "../version.js";

type Register = (program: Command) => void;

/**
 * Every top-level command and the module that defines it, in the order `--help` lists them.
 * Only the module of the command asked for is loaded: `run` (the daemon) then carries none of
 * the technicians' tools (progress bars, simulators, scanners), and every command starts faster.
 * Help, `help <cmd>`, no command or a mistyped one load them all (for the list and "did you mean").
 */
const COMMANDS: ReadonlyArray<{ names: readonly string[]; load: () => Promise<Register> }> = [
  { names: ["run"], load: async () => (await import("./run.js")).registerRun },
  { names: ["status"], load: async () => (await import("./status.js")).registerStatus },
  { names: ["config"], load: async () => (await import("./config.js")).registerConfig },
  { names: ["buffer"], load: async () => (await import("./buffer.js")).registerBuffer },
  { names: ["tail"], load: async () => (await import("./tail.js")).registerTail },
  { names: ["modbus"], load: async () => (await import("./modbus.js")).registerModbus },
  { names: ["ports"], load: async () => (await import("./ports.js")).registerPorts },
  { names: ["simulate"], load: async () => (await import("./simulate.js")).registerSimulate },
  { names: ["light", "charger"], load: async () => (await import("./control.js")).registerControl },
  { names: ["i2c"], load: async () => (await import("./i2c.js")).registerI2c },
  { names: ["gpio"], load: async () => (await import("./gpio.js")).registerGpio },
  { names: ["bridge"], load: async () => (await import("./bridge.js")).registerBridge },
  { names: ["opcua"], load: async () => (await import("./opcua.js")).registerOpcua },
  { names: ["ingest"], load: async () => (await import("./ingest.js")).registerIngest },
];

/** The modules to load for these arguments: the one naming the command, else all. */
export function commandsFor(args: readonly string[]): typeof COMMANDS {
  // The program itself takes no option with a value, so the first word is the command.
  const word = args.find((a) => !a.startsWith("-"));
  const one = COMMANDS.find((c) => word !== undefined && c.names.includes(word));
  return one ? [one] : COMMANDS;
}

/** The program with the commands these arguments need (argv without node and the script). */
export async function buildProgram(args: readonly string[] = []): Promise<Command> {
  const program = new Command("edge-agent")
    .description("Field gateway agent: reads meters and sensors, keeps every reading in a local outbox, and delivers it over MQTT.")
    .addHelpText(
      "after",
      `
First steps on a gateway:
  edge-agent config check /etc/edge-agent/edge-agent.yaml   every config error, with its place
  edge-agent run -c /etc/edge-agent/edge-agent.yaml         run (Ctrl-C flushes and stops)
  edge-agent buffer stats -c /etc/edge-agent/edge-agent.yaml  what is waiting to be sent
  edge-agent tail -b mqtt://broker:1883 --verify            what the platform receives

Exit codes: 0 ok, 1 failure, 2 usage or configuration error.`,
    )
    .version(VERSION)
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  for (const c of commandsFor(args)) (await c.load())(program);
  const override = (cmd: Command) => {
    cmd.exitOverride();
    cmd.commands.forEach(override);
  };
  override(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await (await buildProgram(argv.slice(2))).parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are not errors; commander already printed its message.
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof UserError) {
      process.stderr.write(`edge-agent: ${err.message}\n`);
      for (const line of err.details) process.stderr.write(`  ${line}\n`);
      return err.exitCode;
    }
    process.stderr.write(`edge-agent: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}

const code = await main(process.argv);
process.exit(code);
