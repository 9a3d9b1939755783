/**
 * An error the user can cause (bad config, bad flag, unreachable file). The CLI prints its
 * message as one line, without a stack trace, and exits with `exitCode`.
 */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode: 1 | 2 = 2,
    readonly details: readonly string[] = [],
  ) {
    super(message);
    this.name = "UserError";
  }
}
