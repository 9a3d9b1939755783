/**
 * The query that turns a table's sequence numbers in `WHERE <where>` into ranges in SQL (gaps and
 * islands: consecutive numbers share seq − row_number), so a million rows never reach JavaScript.
 * The arithmetic on ranges is in model/seq-ranges.ts.
 */
export function rangesSql(table: string, where: string): string {
  return `SELECT min(seq), max(seq) FROM (SELECT seq, seq - row_number() OVER (ORDER BY seq) AS g FROM ${table} WHERE ${where}) GROUP BY g ORDER BY 1`;
}
