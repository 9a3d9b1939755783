/**
 * Appending to the outbox versus a raw better-sqlite3 batched insert, in the same run.
 * Usage: npm run bench:outbox [-- --readings 200000 --batch 1000 --runs 5]
 * Prints the median readings/s of each and their ratio, for synchronous FULL and NORMAL.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Database } from "../src/store/sqlite.js";
import { Outbox } from "../src/store/outbox.js";
import { fmt, median, meterReadings } from "./bench-util.js";

const { values } = parseArgs({
  options: { readings: { type: "string", default: "200000" }, batch: { type: "string", default: "1000" }, runs: { type: "string", default: "5" } },
});
const total = Number(values.readings);
const batch = Number(values.batch);
const runs = Number(values.runs);

function rawInsert(dir: string, sync: string): number {
  const db = new Database(join(dir, `raw-${sync}.db`));
  db.pragma("journal_mode = WAL");
  db.pragma(`synchronous = ${sync}`);
  db.exec("CREATE TABLE r (seq INTEGER PRIMARY KEY, point TEXT, ts INTEGER, v ANY, q INTEGER)");
  const ins = db.prepare("INSERT INTO r VALUES (?, ?, ?, ?, ?)");
  const rows = meterReadings(batch, Date.now());
  let seq = 0;
  const tx = db.transaction(() => {
    for (const r of rows) ins.run(++seq, r.point, r.ts, r.value as number, 0);
  });
  const t0 = process.hrtime.bigint();
  for (let n = 0; n < total; n += batch) tx();
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  db.close();
  return total / secs;
}

function outboxAppend(dir: string, sync: "full" | "normal"): number {
  const box = Outbox.open({ path: join(dir, `outbox-${sync}.db`), quota: 4 * 1024 ** 3, whenFull: "drop-oldest", maxAge: 365 * 86_400_000, sync });
  const rows = meterReadings(batch, Date.now());
  const t0 = process.hrtime.bigint();
  for (let n = 0; n < total; n += batch) box.append(rows);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  box.close();
  return total / secs;
}

console.log(`outbox append: ${fmt(total)} readings in batches of ${fmt(batch)} (one transaction per batch), median of ${runs} runs`);
for (const sync of ["normal", "full"] as const) {
  const raw: number[] = [];
  const ours: number[] = [];
  for (let i = 0; i < runs; i++) {
    const dir = mkdtempSync(join(tmpdir(), "edge-bench-"));
    try {
      raw.push(rawInsert(dir, sync.toUpperCase()));
      ours.push(outboxAppend(dir, sync));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const r = median(raw);
  const o = median(ours);
  console.log(
    `  synchronous=${sync.padEnd(6)}  raw better-sqlite3 ${fmt(r).padStart(10)} readings/s   outbox ${fmt(o).padStart(10)} readings/s   outbox/raw ${(o / r).toFixed(2)}`,
  );
}
