/**
 * Time warp for benchmarks: preloaded into a process (`node --import dist/scripts/time-warp.js`),
 * it makes that process's clock run EDGE_TIME_WARP times faster (default 30): Date.now,
 * performance.now, and the delays of setTimeout and setInterval. So `bench:compact` records an
 * hour of the demo's devices (their timers, their reading times) in two minutes of real time.
 * Only for benchmarks; the agent never loads it by itself.
 */
import { performance } from "node:perf_hooks";

const factor = Number(process.env.EDGE_TIME_WARP ?? "30");
if (!(factor >= 1)) throw new Error(`EDGE_TIME_WARP: expected a factor ≥ 1, got '${process.env.EDGE_TIME_WARP}'`);

const realNow = Date.now.bind(Date);
const realPerf = performance.now.bind(performance);
const startWall = realNow();
const startPerf = realPerf();
Date.now = () => Math.floor(startWall + (realNow() - startWall) * factor);
performance.now = () => startPerf + (realPerf() - startPerf) * factor;

const realSetTimeout = globalThis.setTimeout;
const realSetInterval = globalThis.setInterval;
const scale = (ms: unknown) => (typeof ms === "number" && ms > 0 ? ms / factor : ms);
globalThis.setTimeout = ((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => realSetTimeout(fn, scale(ms) as number, ...args)) as typeof setTimeout;
globalThis.setInterval = ((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => realSetInterval(fn, scale(ms) as number, ...args)) as typeof setInterval;
