/**
 * Which better-sqlite3 to load. Versions up to 12 wrap their objects in node::ObjectWrap, and on
 * Node 24 a statement finalised by the garbage collector can abort the process
 * ("Assertion failed: (env) != nullptr", WiseLibs/better-sqlite3#1515); version 13 uses Node-API
 * and fixes that, but needs Node 22. So: 13 (installed as better-sqlite3-napi, prebuilt) on
 * Node >= 22, 12 on Node 20.
 */
import { createRequire } from "node:module";
import type BetterSqlite3 from "better-sqlite3";

const require = createRequire(import.meta.url);
const major = Number(process.versions.node.split(".")[0]);

function load(): typeof BetterSqlite3 {
  if (major >= 22) {
    try {
      return require("better-sqlite3-napi") as typeof BetterSqlite3;
    } catch {
      // Not installed (an optional dependency): fall back to the classic build.
    }
  }
  return require("better-sqlite3") as typeof BetterSqlite3;
}

export const Database = load();
export type Database = BetterSqlite3.Database;
export type Statement = BetterSqlite3.Statement;
