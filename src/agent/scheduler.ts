/**
 * Runs each task at its interval without drift: ticks fall on multiples of the interval (so
 * readings of different sources line up), a slow task skips the ticks it overran instead of
 * piling them up, and the overruns are counted.
 */
export interface TaskStats {
  runs: number;
  overruns: number;
  lastDurationMs: number;
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
    const task: Task = { name, interval, run, timer: null, running: null, stats: { runs: 0, overruns: 0, lastDurationMs: 0 } };
    this.tasks.push(task);
    if (this.started) this.arm(task, this.nextTick(task, this.now()));
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    const now = this.now();
    for (const task of this.tasks) this.arm(task, this.nextTick(task, now));
  }

  /** Cancels future ticks and waits for the ones running. */
  async stop(): Promise<void> {
    this.started = false;
    for (const task of this.tasks) {
      if (task.timer) clearTimeout(task.timer);
      task.timer = null;
    }
    await Promise.all(this.tasks.flatMap((t) => (t.running ? [t.running] : [])));
  }

  stats(): Record<string, TaskStats> {
    return Object.fromEntries(this.tasks.map((t) => [t.name, { ...t.stats }]));
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
