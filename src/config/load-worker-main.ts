/** The worker thread of load-worker.ts: checks one file and posts the result back. */
import { parentPort, workerData } from "node:worker_threads";
import { checkConfigFile } from "./load.js";

const { file } = workerData as { file: string };
parentPort!.postMessage(checkConfigFile(file));
