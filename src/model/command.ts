/** A command's answer, as the platform gets it on `result` and the CLI prints it. */
export type CommandStatus = "ok" | "error" | "rejected";

export interface CommandResult {
  id: string | null;
  target: string;
  action?: string;
  status: CommandStatus;
  reason?: string;
  state?: Record<string, unknown>;
  ts: number;
}
