// An uploader must never stop taking a shard's jobs silently. A shard worker whose queue holds
// waiting jobs it could take, and that has taken none of them for `stuckMs`, is stuck (a blocking
// wait that nothing settles, as after a Redis Cluster failover: ioredis#709): it is reported,
// restarted on a new connection, and /readyz says so meanwhile.

/** What the watchdog needs to know of one shard's worker. */
export interface WatchedWorker {
  readonly name: string;
  /** when it last took, finished or looked for a job and found none (ms since the epoch) */
  lastActivity(): number;
  /** running, not paused (gathering, throttled) and below its concurrency: it would take a job now */
  canTake(): boolean;
  /** jobs waiting in its queue (Redis may be away: then it throws) */
  waiting(): Promise<number>;
}

export interface WatchdogOptions {
  /** how long waiting jobs may go untaken by a worker that could take them */
  stuckMs: number;
  /** how often each worker is looked at */
  intervalMs: number;
  /** a stuck worker: report and restart it */
  onStuck: (name: string, waiting: number) => Promise<void> | void;
  now?: () => number;
}

export class ShardWatchdog {
  /** per worker: since when its queue was seen holding jobs it did not take */
  private readonly untaken = new Map<string, number>();
  /** stuck workers, by when they were restarted: stuck until the new one takes a job */
  private readonly stuck = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  private readonly now: () => number;

  constructor(
    private readonly workers: () => Iterable<WatchedWorker>,
    private readonly options: WatchdogOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  start(): void {
    this.timer = setInterval(() => void this.check(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** the workers found stuck, until their restarted worker has taken a job or their queue is empty */
  get stuckWorkers(): readonly string[] {
    return [...this.stuck.keys()];
  }

  /** Looks at every worker once (the timer calls it; tests too). */
  async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      for (const worker of this.workers()) await this.look(worker);
    } finally {
      this.checking = false;
    }
  }

  private async look(worker: WatchedWorker): Promise<void> {
    const { name } = worker;
    const restarted = this.stuck.get(name);
    if (restarted !== undefined && worker.lastActivity() > restarted) this.stuck.delete(name);
    const since = this.untaken.get(name);
    // busy, paused, or it took something since the jobs were seen: nothing is stuck
    if (!worker.canTake() || (since !== undefined && worker.lastActivity() >= since)) {
      this.untaken.delete(name);
      return;
    }
    const now = this.now();
    // it took or looked a moment ago: nothing to ask Redis
    if (since === undefined && now - worker.lastActivity() < this.options.intervalMs) return;
    let waiting: number;
    let timer: NodeJS.Timeout | undefined;
    try {
      // a Redis that does not answer must not hold up the look at the other workers
      const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no answer')), this.options.intervalMs * 2)));
      waiting = await Promise.race([worker.waiting(), late]);
    } catch {
      return; // Redis away: the connection's own errors say so
    } finally {
      clearTimeout(timer);
    }
    if (waiting === 0) {
      this.untaken.delete(name);
      this.stuck.delete(name);
      return;
    }
    if (since === undefined) {
      this.untaken.set(name, now);
      return;
    }
    if (now - since < this.options.stuckMs) return;
    this.untaken.delete(name);
    this.stuck.set(name, Number.POSITIVE_INFINITY); // stuck while it is restarted
    try {
      await this.options.onStuck(name, waiting);
    } finally {
      this.stuck.set(name, this.now());
    }
  }
}
