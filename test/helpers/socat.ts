/**
 * A pair of virtual serial ports (pty) joined by socat: what one end writes, the other reads,
 * through the real serialport path. `unplug()` kills socat (both ends vanish, as when a USB
 * adapter is pulled) and `plug()` brings the same names back.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

export class PtyPair {
  private proc: ChildProcess | null = null;
  readonly a: string;
  readonly b: string;

  constructor(dir: string) {
    this.a = join(dir, "ttyA");
    this.b = join(dir, "ttyB");
  }

  async plug(): Promise<void> {
    const proc = spawn("socat", [`pty,raw,echo=0,link=${this.a}`, `pty,raw,echo=0,link=${this.b}`], { stdio: "ignore" });
    this.proc = proc;
    const deadline = Date.now() + 5000;
    while (!(existsSync(this.a) && existsSync(this.b))) {
      if (proc.exitCode !== null) throw new Error("socat exited (is it installed? apt-get install socat)");
      if (Date.now() > deadline) throw new Error("socat did not create the pty pair");
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async unplug(): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (!proc || proc.exitCode !== null) return;
    const gone = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGKILL");
    await gone;
    // socat removes its links on a clean exit only.
    const { rmSync } = await import("node:fs");
    rmSync(this.a, { force: true });
    rmSync(this.b, { force: true });
  }

  static async open(dir: string): Promise<PtyPair> {
    const pair = new PtyPair(dir);
    await pair.plug();
    return pair;
  }
}
