/**
 * Runs each task at its interval without drift: ticks fall on multiples of the interval (so
 * readings of different sources line up), a slow task skips the ticks it overran instead of
 * piling them up, and the overruns are counted.
 */
export interface TaskStats {
  runs: number;
  overruns: number;
  lastDurationMs: number;
  /** performance.now() when the last run finished (null before the first): for the watchdog. */
  lastRunEnd: number | null;
}

interface Task {
  name: string;
  interval: number;
  run: (tickTs: number) => Promise<void>;
  timer: NodeJS.Timeout | null;
  running: Promise<void> | null;
  stats: TaskStats;
}

export class Scheduler {
  private readonly tasks: Task[] = [];
  private started = false;

  constructor(private readonly now: () => number = Date.now) {}

  add(name: string, interval: number, run: (tickTs: number) => Promise<void>): void {
    const task: Task = { name, interval, run, timer: null, running: null, stats: { runs: 0, overruns: 0, lastDurationMs: 0, lastRunEnd: null } };
    this.tasks.push(task);
    if (this.started) this.arm(task, this.nextTick(task, this.now()));
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    const now = this.now();
    for (const task of this.tasks) this.arm(task, this.nextTick(task, now));
  }

  /** Cancels future ticks and waits for the ones running (a stuck one at most `waitMs`). */
  async stop(waitMs = 5000): Promise<void> {
    this.started = false;
    for (const task of this.tasks) {
      if (task.timer) clearTimeout(task.timer);
      task.timer = null;
    }
    const running = Promise.all(this.tasks.flatMap((t) => (t.running ? [t.running] : [])));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([running, new Promise<void>((r) => (timer = setTimeout(r, waitMs)))]);
    clearTimeout(timer);
  }

  stats(): Record<string, TaskStats> {
    return Object.fromEntries(this.tasks.map((t) => [t.name, { ...t.stats }]));
  }

  /** Each task's interval and when its last run finished (monotonic clock). */
  health(): Array<{ name: string; interval: number; lastRunEnd: number | null }> {
    return this.tasks.map((t) => ({ name: t.name, interval: t.interval, lastRunEnd: t.stats.lastRunEnd }));
  }

  private nextTick(task: Task, after: number): number {
    return (Math.floor(after / task.interval) + 1) * task.interval;
  }

  private arm(task: Task, at: number): void {
    task.timer = setTimeout(() => this.fire(task, at), Math.max(0, at - this.now()));
  }

  private fire(task: Task, tick: number): void {
    task.timer = null;
    if (!this.started) return;
    const begun = this.now();
    task.running = task
      .run(tick)
      .catch(() => {
        // Tasks report their own errors; a throw must not stop the schedule.
      })
      .finally(() => {
        task.running = null;
        const end = this.now();
        task.stats.runs++;
        task.stats.lastDurationMs = end - begun;
        task.stats.lastRunEnd = performance.now();
        if (!this.started) return;
        let next = tick + task.interval;
        if (next <= end) {
          const skipped = Math.floor((end - next) / task.interval) + 1;
          task.stats.overruns += skipped;
          next += skipped * task.interval;
        }
        this.arm(task, next);
      });
  }
}
