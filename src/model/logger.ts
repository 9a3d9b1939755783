/**
 * The logger every part is handed (pino's interface): a type only, so that no room needs the
 * ops room to log. src/ops/logger.ts makes the real one.
 */
export type { Logger } from "pino";
