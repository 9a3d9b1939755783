#!/usr/bin/env node
/**
 * The edge-agent command line. Exit codes: 0 ok, 1 failure, 2 usage or configuration error.
 * Only this file sets the exit code.
 */
import { Command, CommanderError } from "commander";
import { UserError } from "../model/errors.js";
import { VERSION } from "../version.js";
import { registerBuffer } from "./buffer.js";
import { registerConfig } from "./config.js";
import { registerControl } from "./control.js";
import { registerGpio } from "./gpio.js";
import { registerI2c } from "./i2c.js";
import { registerModbus } from "./modbus.js";
import { registerOpcua } from "./opcua.js";
import { registerPorts } from "./ports.js";
import { registerRun } from "./run.js";
import { registerSimulate } from "./simulate.js";
import { registerStatus } from "./status.js";
import { registerTail } from "./tail.js";

export function buildProgram(): Command {
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
  registerRun(program);
  registerStatus(program);
  registerConfig(program);
  registerBuffer(program);
  registerTail(program);
  registerModbus(program);
  registerPorts(program);
  registerSimulate(program);
  registerControl(program);
  registerI2c(program);
  registerGpio(program);
  registerOpcua(program);
  const override = (cmd: Command) => {
    cmd.exitOverride();
    cmd.commands.forEach(override);
  };
  override(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
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
