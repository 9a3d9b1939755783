/**
 * The command envelope's schema and the wording of a command's first problem. zod is loaded only
 * with these: the router (commands.ts) imports this module at its first command, so a gateway
 * that is never commanded does not carry the validator (issue 12, footprint).
 */
import { z } from "zod";
import { COMMAND_ID } from "../model/command.js";
import { describeIssue } from "../model/issues.js";

export const envelope = z.strictObject({
  id: z.string().min(1).max(64).regex(COMMAND_ID, { error: "expected 1–64 letters, digits, '_', '.', ':' or '-'" }),
  action: z.string().min(1).max(32),
  // Checked for its shape only: the action's schema validates the object as it came (own keys).
  args: z.record(z.string(), z.unknown()).optional(),
  expires: z.number().int().positive().optional(),
});

/** The first problem of a failed parse, as one line (`args.on: expected a boolean, got …`). */
export function firstProblem(error: z.ZodError, at: readonly PropertyKey[]): string {
  const issue = error.issues[0];
  const line = issue ? describeIssue(issue, at)[0] : undefined;
  if (!line) return "invalid";
  return line.startsWith("(top level): ") ? line.slice("(top level): ".length) : line;
}
