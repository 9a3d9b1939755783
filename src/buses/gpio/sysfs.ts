/**
 * BCM pin numbers → the running kernel's sysfs GPIO numbers. Since kernel 6.6 (Raspberry Pi OS
 * Bookworm) sysfs numbers are offset by the gpiochip's base: 512 on a Pi 4, 571 on a Pi 5
 * (399 on a Pi 5 with kernel 6.1), 0 on older kernels. The base is read from
 * /sys/class/gpio/gpiochipN/base, the chip picked by its label, never hard-coded (devices.md).
 * The sysfs root is a parameter so tests point it at a fake tree.
 */
import { constants } from "node:fs";
import { access as fsAccess, readdir, readFile, writeFile } from "node:fs/promises";
import { GpioError, type Level } from "./gpio.js";

export const SYSFS_GPIO = "/sys/class/gpio";

/** Labels of the controller that drives the 40-pin header, most recent first. */
export const PI_LABELS = ["pinctrl-rp1", "pinctrl-bcm2711", "pinctrl-bcm2835"] as const;

export interface SysfsOptions {
  /** Default /sys/class/gpio. */
  root?: string;
  /** Checks access (injectable: tests run as root, where every check passes). */
  access?: (path: string, mode: number) => Promise<void>;
}

export interface GpioChip {
  /** gpiochip512 */
  name: string;
  base: number;
  ngpio: number;
  label: string;
}

export interface SysfsPin {
  pin: number;
  sysfs: number;
  chip: GpioChip;
  root: string;
}

type ErrnoLike = Error & { code?: string };

const isErrno = (err: unknown, ...codes: string[]) => codes.includes((err as ErrnoLike)?.code ?? "");

export async function listChips(root: string): Promise<GpioChip[]> {
  const names = (await readdir(root)).filter((n) => /^gpiochip\d+$/.test(n));
  const chips: GpioChip[] = [];
  for (const name of names) {
    const read = async (f: string) => (await readFile(`${root}/${name}/${f}`, "utf8")).trim();
    try {
      chips.push({ name, base: Number(await read("base")), ngpio: Number(await read("ngpio")), label: await read("label") });
    } catch {
      // A chip directory without its files is not one we can use.
    }
  }
  return chips.sort((a, b) => a.base - b.base);
}

/** The Raspberry Pi's header controller by label; a board with one controller gets that one. */
export function pickChip(chips: readonly GpioChip[]): GpioChip | null {
  for (const label of PI_LABELS) {
    const chip = chips.find((c) => c.label === label);
    if (chip) return chip;
  }
  return chips.length === 1 ? chips[0]! : null;
}

/** Finds the sysfs number of a BCM pin; every failure names the pin and what to do. */
export async function resolvePin(pin: number, opts: SysfsOptions = {}): Promise<SysfsPin> {
  const root = opts.root ?? SYSFS_GPIO;
  let chips: GpioChip[];
  try {
    chips = await listChips(root);
  } catch (err) {
    if (isErrno(err, "ENOENT", "ENOTDIR")) {
      throw new GpioError("absent", `GPIO ${pin}: sysfs GPIO is not available (${root} does not exist: this kernel has no sysfs GPIO)`, pin);
    }
    if (isErrno(err, "EACCES", "EPERM")) throw new GpioError("permission", `GPIO ${pin}: no permission to read ${root} (add the user to the gpio group)`, pin);
    throw new GpioError("io", `GPIO ${pin}: cannot read ${root}: ${(err as Error).message}`, pin);
  }
  if (chips.length === 0) throw new GpioError("no-chip", `GPIO ${pin}: no gpiochip under ${root}`, pin);
  const chip = pickChip(chips);
  if (!chip) {
    const found = chips.map((c) => `${c.name} (${c.label})`).join(", ");
    throw new GpioError("no-chip", `GPIO ${pin}: no Raspberry Pi GPIO controller (${PI_LABELS.join(", ")}) under ${root}; found ${found}`, pin);
  }
  if (!Number.isInteger(pin) || pin < 0 || pin >= chip.ngpio) {
    throw new GpioError("bad-pin", `GPIO ${pin}: ${chip.label} has BCM GPIOs 0–${chip.ngpio - 1}`, pin);
  }
  return { pin, sysfs: chip.base + pin, chip, root };
}

/** Can this process export pins? Checked first, so the error names the group to join. */
export async function checkExportAccess(p: SysfsPin, opts: SysfsOptions = {}): Promise<void> {
  const access = opts.access ?? fsAccess;
  const exportFile = `${p.root}/export`;
  try {
    await access(exportFile, constants.W_OK);
  } catch (err) {
    if (isErrno(err, "ENOENT")) throw new GpioError("absent", `GPIO ${p.pin}: sysfs GPIO is not available (${exportFile} does not exist)`, p.pin);
    throw new GpioError("permission", `GPIO ${p.pin}: no permission on ${exportFile} (add the user to the gpio group)`, p.pin);
  }
}

/** Maps an error of onoff or of a sysfs file to one that names the pin. */
export function gpioError(p: Pick<SysfsPin, "pin" | "sysfs">, err: unknown): GpioError {
  if (err instanceof GpioError) return err;
  const e = err as ErrnoLike;
  const at = `GPIO ${p.pin} (sysfs ${p.sysfs})`;
  if (isErrno(e, "EACCES", "EPERM")) return new GpioError("permission", `${at}: permission denied (add the user to the gpio group)`, p.pin);
  if (isErrno(e, "EBUSY")) return new GpioError("busy", `${at}: in use by a kernel driver or another program`, p.pin);
  if (isErrno(e, "EINVAL")) return new GpioError("bad-pin", `${at}: the kernel refused this GPIO number (wrong gpiochip base?)`, p.pin);
  if (isErrno(e, "ENOENT")) return new GpioError("absent", `${at}: sysfs GPIO is not available`, p.pin);
  return new GpioError("io", `${at}: ${e?.message ?? String(err)}`, p.pin);
}

/**
 * Reads a pin through sysfs without changing it: an exported pin is read as it is; otherwise
 * it is exported (direction unchanged), read, and unexported again.
 */
export async function inspectPin(pin: number, opts: SysfsOptions = {}): Promise<{ sysfsPin: SysfsPin; value: Level; direction: "in" | "out"; activeLow: boolean }> {
  const p = await resolvePin(pin, opts);
  const dir = `${p.root}/gpio${p.sysfs}`;
  const exported = await fsAccess(dir).then(
    () => true,
    () => false,
  );
  if (!exported) {
    await checkExportAccess(p, opts);
    await writeFile(`${p.root}/export`, String(p.sysfs)).catch((err: unknown) => {
      throw gpioError(p, err);
    });
  }
  try {
    const read = async (f: string) => (await readFile(`${dir}/${f}`, "utf8")).trim();
    const value = (await read("value")) === "1" ? 1 : 0;
    const direction = (await read("direction").catch(() => "in")) === "in" ? "in" : "out";
    const activeLow = (await read("active_low").catch(() => "0")) === "1";
    return { sysfsPin: p, value, direction, activeLow };
  } catch (err) {
    if (isErrno(err, "ENOENT") && !exported) {
      throw new GpioError("io", `GPIO ${pin} (sysfs ${p.sysfs}): exporting did not create ${dir}`, pin);
    }
    throw gpioError(p, err);
  } finally {
    if (!exported) await writeFile(`${p.root}/unexport`, String(p.sysfs)).catch(() => {});
  }
}
