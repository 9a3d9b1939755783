/** Config files written to hurt, shared by the loader's unit tests and the CLI and reload tests. */

export const minimalConfig = 'site: s1\ngateway: gw1\nuplink: { url: "mqtt://127.0.0.1:1883" }\n';

/** Ten anchors, each a list of ten aliases of the one before: 10^9 values once expanded. */
export function aliasBomb(base = minimalConfig): string {
  const lines = ["  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"];
  for (let i = 1; i < 10; i++) lines.push(`  a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(", ")}]`);
  return `${base}x:\n${lines.join("\n")}\n`;
}
