/**
 * Writes an outbox file as this release leaves it on a gateway: readings, events and command
 * results still pending (some already acknowledged, so the numbers do not start at 1), command
 * ids remembered, drops counted. The upgrade test opens it with the current code and checks that
 * every pending item is delivered with its original sequence number and name.
 *
 * Run it once with the code that is about to change the outbox format, and commit both files:
 *   npm run build && node dist/scripts/make-outbox-fixture.js test/fixtures/outbox-format<N>
 * (writes <prefix>.db and <prefix>.json, the items the .db holds, as the test expects them).
 * outbox-0.1.0 was written by release 0.1.0 (format 1); outbox-format3 by the code just before
 * format 4, with a dead letter and a cursor too (what formats 2 and 3 added).
 */
import { rmSync, writeFileSync } from "node:fs";
import { FORMAT, Outbox } from "../src/store/outbox.js";
import type { Reading } from "../src/model/reading.js";
import { VERSION } from "../src/version.js";

const prefix = process.argv[2];
if (!prefix) {
  process.stderr.write("usage: make-outbox-fixture <path prefix, e.g. test/fixtures/outbox-0.1.0>\n");
  process.exit(2);
}
const path = `${prefix}.db`;
for (const suffix of ["", "-wal", "-shm"]) rmSync(path + suffix, { force: true });

// Fixed times: the test opens the file with max_age large enough to keep all of it.
const T0 = 1_763_800_000_000;
const box = Outbox.open({ path, quota: 64 * 1024 * 1024, whenFull: "drop-oldest", maxAge: 3650 * 86_400_000, sync: "full", now: () => T0 + 60_000 });

// A reading too old for this config's max_age: counted as dropped, not pending.
box.append([{ point: "meter-1/power_total", ts: T0 - 3651 * 86_400_000, value: 1, quality: "good" }]);
box.expire();

const telemetry: Reading[] = [];
for (let tick = 0; tick < 40; tick++) {
  const ts = T0 + tick * 1000;
  telemetry.push(
    { point: "meter-1/power_total", ts, value: 1500 + tick * 0.5, quality: "good" },
    { point: "meter-1/online", ts, value: tick % 7 !== 3, quality: "good" },
    { point: "room-101/co2", ts, value: tick % 5 === 0 ? null : 600 + tick, quality: tick % 5 === 0 ? "bad" : "good" },
    { point: "street-3/mode", ts, value: tick % 2 ? "auto" : "override", quality: "uncertain" },
  );
}
// A bridged board's cursor (format 3) is committed with the last batch.
const cursor = ["bridge:room-101:boot-7f3a", 4711] as const;
for (let i = 0; i < telemetry.length; i += 16) box.append(telemetry.slice(i, i + 16), i + 16 >= telemetry.length ? [cursor] : null);
// The first 30 were delivered: the file starts at 32, as a gateway's outbox usually does.
box.ack([[2, 31]]);
// One reading the broker refused, set aside as a dead letter (format 2).
const deadLetter = { stream: "telemetry" as const, seq: 120, reason: "refused by the broker: payload format invalid (0x99)" };
box.deadLetter(deadLetter.stream, deadLetter.seq, deadLetter.seq, deadLetter.reason);
box.stream("events").append([
  { point: "room-101/occupied", ts: T0 + 5000, value: true, quality: "good" },
  { point: "room-101/co2_band", ts: T0 + 9000, value: "fair", quality: "good" },
  { point: "charger-1/session", ts: T0 + 12_000, value: JSON.stringify({ start: T0, end: T0 + 12_000, kwh: 0.6, reason: "kwh-limit" }), quality: "good" },
]);
box.stream("events").ack([[1, 1]]);
const results = [
  { id: "cmd-1", target: "street-3", action: "set", status: "ok", state: { mode: "override", on: true }, ts: T0 + 20_000 },
  { id: "cmd-2", target: "charger-1", action: "start", status: "error", reason: "charger-1 is already charging", ts: T0 + 21_000 },
  { id: null, target: "street-3", status: "rejected", reason: "malformed JSON", ts: T0 + 22_000 },
];
for (const r of results) {
  const json = JSON.stringify(r);
  if (r.id) box.rememberCommand(r.id, r.ts, json);
  box.stream("results").append([{ point: r.target, ts: r.ts, value: json, quality: "good" }]);
}

const pending = {
  version: VERSION,
  format: FORMAT,
  telemetry: box.readAfter(0, 1000),
  events: box.stream("events").readAfter(0, 1000),
  results: box.stream("results").readAfter(0, 1000),
  commands: Object.fromEntries(results.filter((r) => r.id).map((r) => [r.id, box.recallCommand(r.id!)])),
  deadLetters: box.deadLetters(),
  cursors: { [cursor[0]]: box.cursor(cursor[0]) },
  lastSeq: { telemetry: box.lastSeq, events: box.stream("events").lastSeq, results: box.stream("results").lastSeq },
  stats: box.stats(),
};
box.close();
writeFileSync(`${prefix}.json`, `${JSON.stringify(pending, null, 1)}\n`);
process.stdout.write(`wrote ${path} and ${prefix}.json (edge-agent ${VERSION}, format ${FORMAT}): ${pending.telemetry.length} readings, ${pending.events.length} events, ${pending.results.length} results pending\n`);
