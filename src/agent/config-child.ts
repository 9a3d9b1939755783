/** The child process of config-apart.ts: checks the config file it is given and sends back the result. */
import { checkConfigFile, type ConfigResult } from "./config.js";

const file = process.argv[2];
let result: ConfigResult = file === undefined ? { ok: false, errors: ["no config file given"] } : checkConfigFile(file);
try {
  // Structured clone, not JSON: what the schema made (undefined, Infinity) arrives as it was.
  process.send!(result, () => process.disconnect());
} catch (err) {
  result = { ok: false, errors: [`${file}: the checked config could not be passed on (${err instanceof Error ? err.message : String(err)})`] };
  process.send!(result, () => process.disconnect());
}
