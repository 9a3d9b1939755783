/**
 * Zod issues as messages for people: the place, what was expected, and what was found. Shared by
 * config errors (a technician with a YAML file) and command rejections (the platform), so a
 * value of the wrong type is never reported as missing. Parse with `{ reportInput: true }`:
 * without it zod 4 leaves out the value that was found, and a wrong type looks like a missing key.
 */
import { z } from "zod";
import { formatPath } from "./path.js";

/** Found values are quoted up to this many characters: a message is one line, not the input. */
const FOUND_MAX = 40;

const NOUNS: ReadonlyMap<string, string> = new Map([
  ["string", "a string"],
  ["number", "a number"],
  ["int", "an integer"],
  ["bigint", "an integer"],
  ["boolean", "a boolean"],
  ["object", "an object"],
  ["record", "an object"],
  ["map", "an object"],
  ["array", "an array"],
  ["tuple", "an array"],
  ["set", "an array"],
  ["null", "null"],
  ["date", "a date"],
]);

const english = z.locales.en();

/** zod's own wording, to tell it from a message the schema chose (which is kept as it is). */
function isDefaultMessage(issue: z.core.$ZodIssue): boolean {
  const d = english.localeError(issue as never);
  return issue.message === (typeof d === "string" ? d : d?.message);
}

function quote(text: string): string {
  const shown = text.length > FOUND_MAX ? `${text.slice(0, FOUND_MAX)}…` : text;
  return JSON.stringify(shown);
}

/** What was found, in words: `the string "true"`, `an array`, `the number 1.5`, `null`. */
function found(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return value.length === 0 ? "an empty array" : "an array";
  switch (typeof value) {
    case "string":
      return `the string ${quote(value)}`;
    case "number":
      return Number.isFinite(value) ? `the number ${String(value)}` : String(value);
    case "boolean":
      return `the boolean ${String(value)}`;
    case "object":
      return "an object";
    case "bigint":
      return `the number ${quote(String(value))}`;
    default:
      return typeof value;
  }
}

function expected(what: string): string {
  return NOUNS.get(what) ?? what;
}

function literal(value: unknown): string {
  return typeof value === "string" ? value : typeof value === "bigint" ? String(value) : String(JSON.stringify(value));
}

/** The message alone, for one issue at its own place; unions may answer from a deeper place. */
function explain(issue: z.core.$ZodIssue, at: readonly PropertyKey[]): string[] {
  const path = [...at, ...issue.path];
  const line = (message: string) => [`${formatPath(path)}: ${message}`];
  const input = (issue as { input?: unknown }).input;
  switch (issue.code) {
    case "unrecognized_keys":
      return issue.keys.map((key) => `${formatPath([...path, key])}: unknown key`);
    case "invalid_type":
      // Missing wins over any wording: the key is simply not there.
      if (input === undefined) return line("required");
      return line(isDefaultMessage(issue) ? `expected ${expected(issue.expected)}, got ${found(input)}` : issue.message);
    case "invalid_value": {
      if (!isDefaultMessage(issue)) return line(issue.message);
      const values = issue.values.map(literal);
      return line(values.length === 1 ? `expected ${values[0]}` : `expected one of: ${values.join(", ")}`);
    }
    case "invalid_union": {
      if (!isDefaultMessage(issue)) return line(issue.message);
      if (input === undefined) return line("required");
      // The forms that at least had the right type say best what is wrong; if none had, list the types.
      const near = issue.errors.filter((branch) => branch.length > 0 && !branch.some((i) => i.code === "invalid_type" && i.path.length === 0));
      if (near.length === 0) {
        const types = [...new Set(issue.errors.flatMap((branch) => branch.filter((i) => i.code === "invalid_type").map((i) => expected(i.expected))))];
        if (types.length > 0) return line(`expected ${types.join(" or ")}, got ${found(input)}`);
        return line(issue.message);
      }
      const best = near.reduce((a, b) => (b.length < a.length ? b : a));
      return explain(best[0]!, path);
    }
    default:
      return line(issue.message);
  }
}

/**
 * One zod issue as messages `<path>: <what is wrong>` (an unknown-keys issue gives one per key).
 * `at` is the place of the parsed value in a larger whole (`["args"]` for a command's arguments).
 * Messages the schema chose ("expected a duration like 5s") are kept; zod's own generic ones are
 * replaced by what was expected and what was found; an absent key is `required`.
 */
export function describeIssue(issue: z.core.$ZodIssue, at: readonly PropertyKey[] = []): string[] {
  return explain(issue, at);
}
