/**
 * A config file's bytes to plain data. Every problem comes back as a line naming its place
 * (`line 4, column 8: …`), never as an exception, and what a file can cost is bounded
 * (CONFIG_LIMITS): nesting is checked while parsing, aliases before they are expanded, keys in
 * one pass. A config holds plain values, lists and mappings; anything else YAML can express (tags,
 * merge keys, aliases that loop, numbers a double cannot hold) is refused with its place.
 */
import { Composer, type CST, type Document, isAlias, isCollection, isMap, isNode, isPair, isScalar, isSeq, Lexer, LineCounter, type Node, Parser } from "yaml";
import { CONFIG_LIMITS } from "./limits.js";

export type YamlResult = { ok: true; value: unknown } | { ok: false; errors: string[] };

// Keys are checked for duplicates here, in one pass (yaml's own check compares every pair: a
// file of 20,000 keys took minutes); tags are checked here too, with their place.
const OPTIONS = { uniqueKeys: false, resolveKnownTags: false, logLevel: "error", prettyErrors: false } as const;
const CORE = "tag:yaml.org,2002:";
const ALLOWED_TAGS = new Set(["!", ...["str", "int", "float", "bool", "null", "map", "seq"].map((t) => CORE + t)]);
const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** The text of a config file's bytes, or the place of the first byte that is not UTF-8. */
export function decodeUtf8(bytes: Uint8Array): { ok: true; text: string } | { ok: false; errors: string[] } {
  try {
    return { ok: true, text: UTF8.decode(bytes) };
  } catch {
    const at = firstInvalidByte(bytes);
    const lineStart = at === 0 ? 0 : bytes.lastIndexOf(0x0a, at - 1) + 1;
    let line = 1;
    for (let i = 0; i < lineStart; i++) if (bytes[i] === 0x0a) line++;
    const column = UTF8.decode(bytes.subarray(lineStart, at)).length + 1;
    return { ok: false, errors: [`line ${line}, column ${column}: not UTF-8 (byte 0x${bytes[at]!.toString(16)}); save the file as UTF-8`] };
  }
}

function firstInvalidByte(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const c = bytes[i]!;
    const length = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (length === 0) return i;
    if (length > 1) {
      // The decoder knows the finer rules (overlong forms, surrogates): it judges each character.
      try {
        UTF8.decode(bytes.subarray(i, i + length));
      } catch {
        return i;
      }
    }
    i += length;
  }
  return bytes.length - 1;
}

class TooDeep extends Error {
  constructor(readonly offset: number) {
    super("nested too deep");
  }
}

/** The parser's tokens, refusing to nest deeper than the limit: deep nesting costs memory (~1 KB a level) before anything else could look at it. */
function* boundedTokens(text: string, lineCounter: LineCounter): Generator<CST.Token, void> {
  const parser = new Parser(lineCounter.addNewLine);
  lineCounter.addNewLine(0);
  for (const lexeme of new Lexer().lex(text)) {
    yield* parser.next(lexeme);
    // The stack holds the document, then one entry per open collection (and the node being read).
    if (parser.stack.length - 1 > CONFIG_LIMITS.depth) throw new TooDeep(parser.offset);
  }
  yield* parser.end();
}

/** Parses YAML text into plain data (objects, arrays, strings, numbers, booleans, null). */
export function readYaml(text: string): YamlResult {
  const lineCounter = new LineCounter();
  const at = (offset: number) => {
    const pos = lineCounter.linePos(offset);
    return `line ${pos.line}, column ${pos.col}`;
  };
  const composer = new Composer(OPTIONS);
  let doc: Document.Parsed | undefined;
  try {
    for (const next of composer.compose(boundedTokens(text, lineCounter), true, text.length)) {
      if (!doc) doc = next;
      else return { ok: false, errors: [`${at(next.range[0])}: more than one YAML document (---); a config is one document`] };
    }
  } catch (err) {
    if (err instanceof TooDeep) return { ok: false, errors: [`${at(err.offset)}: nested more than ${CONFIG_LIMITS.depth} levels deep`] };
    throw err;
  }
  if (!doc) return { ok: false, errors: ["(top level): the file could not be read as YAML"] };
  const syntax = [...doc.errors, ...doc.warnings.filter((w) => w.code !== "TAG_RESOLVE_FAILED")];
  if (syntax.length > 0) return { ok: false, errors: syntax.map((e) => `${at(e.pos[0])}: ${e.message.split("\n")[0]}`) };
  const problems = inspect(doc, text, at);
  if (problems.length > 0) return { ok: false, errors: problems };
  // The aliases were counted above; yaml's own bound (a product of uses and nesting) stays as a
  // second line and is never the tighter one.
  const value: unknown = doc.toJS({ maxAliasCount: CONFIG_LIMITS.aliasedValues });
  const top = doc.contents;
  if (value === null || value === undefined) {
    return { ok: false, errors: ["(top level): the file has no settings; a config needs site:, gateway: and uplink: at least"] };
  }
  if (typeof value !== "object" || Array.isArray(value)) {
    const found = Array.isArray(value) ? "a list" : "a value";
    return { ok: false, errors: [`${at(top?.range[0] ?? 0)}: expected a mapping (site:, gateway:, uplink:, …), found ${found}`] };
  }
  return { ok: true, value };
}

/**
 * One pass over the document before it becomes data: aliases (anchor set before, no loop, the
 * expanded total bounded), tags, numbers, keys (no duplicates, no merge keys, no lists as keys).
 */
function inspect(doc: Document.Parsed, text: string, at: (offset: number) => string): string[] {
  const errors: string[] = [];
  const anchors = new Map<string, Node>();
  const sizes = new Map<Node, number>();
  const open = new Set<Node>();
  let aliased = 0;
  let bomb = false;
  const place = (node: Node) => at(node.range?.[0] ?? 0);

  const checkKey = (key: unknown, seen: Map<string, Node>) => {
    if (!isNode(key)) return;
    if (isCollection(key) || isAlias(key)) {
      errors.push(`${place(key)}: a key must be a plain name, not a ${isAlias(key) ? "alias" : "list or a mapping"}`);
      return;
    }
    if (!isScalar(key)) return;
    // With %YAML 1.1 the parser turns << into a merge marker (a symbol); under 1.2 it is text.
    if (key.value === "<<" || typeof key.value === "symbol") {
      errors.push(`${place(key)}: merge keys (<<) are not supported: write the keys out`);
      return;
    }
    const name = String(key.value);
    const first = seen.get(name);
    if (first) errors.push(`${place(key)}: duplicate key '${name}' (keys must be unique; first at ${place(first)})`);
    else seen.set(name, key);
  };

  /** The number of values `node` stands for once its aliases are expanded. */
  const walk = (node: unknown): number => {
    if (bomb || !isNode(node)) return 0;
    if (isAlias(node)) {
      const target = anchors.get(node.source);
      if (!target) {
        errors.push(`${place(node)}: alias *${node.source} has no anchor &${node.source} before it`);
        return 1;
      }
      if (open.has(target)) {
        errors.push(`${place(node)}: alias *${node.source} is inside its own anchor &${node.source} (a loop)`);
        return 1;
      }
      const size = sizes.get(target) ?? 1;
      aliased += size;
      if (aliased > CONFIG_LIMITS.aliasedValues) {
        bomb = true;
        errors.push(`${place(node)}: *${node.source} expands the aliases of this file past ${CONFIG_LIMITS.aliasedValues} values, too many for a config (an alias bomb?)`);
      }
      return size;
    }
    // The last anchor of a name before an alias is the one it means, as in yaml's own resolution.
    if (node.anchor) anchors.set(node.anchor, node);
    if (node.tag && !ALLOWED_TAGS.has(node.tag)) {
      const written = node.tag.startsWith(CORE) ? `!!${node.tag.slice(CORE.length)}` : node.tag;
      const start = node.range?.[0] ?? 0;
      const tagAt = text.lastIndexOf(written, start);
      errors.push(`${at(tagAt >= 0 ? tagAt : start)}: tag ${written} is not allowed: a config holds plain values, lists and mappings`);
    }
    let size = 1;
    if (isScalar(node)) {
      if (typeof node.value === "number" && !(Math.abs(node.value) <= Number.MAX_SAFE_INTEGER)) {
        const written = node.range ? text.slice(node.range[0], node.range[1]) : String(node.value);
        errors.push(`${place(node)}: ${written.length > 30 ? `${written.slice(0, 30)}…` : written} is out of range: numbers must lie within ±${Number.MAX_SAFE_INTEGER}`);
      }
    } else if (isMap(node) || isSeq(node)) {
      open.add(node);
      const keys = new Map<string, Node>();
      for (const item of node.items) {
        if (isPair(item)) {
          checkKey(item.key, keys);
          size += walk(item.key) + walk(item.value);
        } else size += walk(item);
      }
      open.delete(node);
    }
    if (node.anchor) sizes.set(node, size);
    return size;
  };

  walk(doc.contents);
  return errors;
}
