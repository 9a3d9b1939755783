/**
 * `edge-agent gpio read PIN`: the value of a BCM pin, with the sysfs number the running kernel
 * uses for it (Bookworm offsets them by the gpiochip base). Reading never changes the pin's
 * direction, so it is safe on an output that drives a relay.
 */
import { type Command, Option } from "commander";
import { type GpioBackend, GpioError, type PinInfo } from "../buses/gpio/gpio.js";
import { OnoffGpioBackend } from "../buses/gpio/onoff-backend.js";
import { SimGpioBackend } from "../buses/gpio/sim-backend.js";
import { UserError } from "../model/errors.js";
import { printJson } from "./output.js";

export interface GpioReadFlags {
  sim?: boolean;
  json?: boolean;
  /** Another sysfs GPIO root (tests point it at a fake tree). */
  sysfsRoot?: string;
}

export interface GpioReadOutput extends PinInfo {
  backend: string;
}

export function parsePin(text: string): number {
  const n = /^\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isInteger(n) || n > 53) throw new UserError(`PIN: expected a BCM GPIO number 0–53 (GPIO17 is header pin 11), got '${text}'`);
  return n;
}

export async function gpioRead(pinText: string, flags: GpioReadFlags, backend?: GpioBackend): Promise<GpioReadOutput> {
  const pin = parsePin(pinText);
  const b = backend ?? (flags.sim ? new SimGpioBackend() : new OnoffGpioBackend(flags.sysfsRoot ? { root: flags.sysfsRoot } : {}));
  try {
    return { ...(await b.inspect(pin)), backend: b.name };
  } catch (err) {
    if (err instanceof GpioError) throw new UserError(err.message, err.kind === "io" || err.kind === "busy" ? 1 : 2);
    throw err;
  }
}

function printRead(out: GpioReadOutput): void {
  const level = out.value ? "1 (high)" : "0 (low)";
  const inverted = out.activeLow ? ", active low" : "";
  process.stdout.write(`GPIO ${out.pin} (BCM) = sysfs ${out.sysfs} on ${out.chip}, base ${out.base}: ${level}, direction ${out.direction}${inverted}${out.backend === "simulated" ? " (simulated)" : ""}\n`);
}

export function registerGpio(program: Command): void {
  const gpio = program.command("gpio").description("read GPIO pins by their BCM number (presence sensors, contacts)");
  gpio
    .command("read")
    .description("read a pin without changing it; shows the sysfs number the kernel uses for it")
    .argument("<pin>", "BCM GPIO number (GPIO17 is header pin 11)")
    .option("--sim", "use the simulated backend (a Pi 4 on Bookworm: sysfs = 512 + BCM)")
    .option("--json", "print as JSON")
    .addOption(new Option("--sysfs-root <dir>", "sysfs GPIO directory").default(undefined).hideHelp())
    .action(async (pin: string, flags: GpioReadFlags) => {
      const out = await gpioRead(pin, flags);
      if (flags.json) printJson(out);
      else printRead(out);
    });
}
