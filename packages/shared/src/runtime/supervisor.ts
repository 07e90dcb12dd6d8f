// The one supervision story, for `npm start` (its services, in child processes or in its own) and
// for PROXY_WORKERS (copies of the proxy): units run until one ends on its own, then the policy
// says whether another takes its place or everything stops; SIGTERM and SIGINT stop every unit
// with that signal, each finishing what it has in flight; the supervisor's exit code comes once
// every unit has ended and its last work (its Redis, its admin port) is done.

/** How a unit ended. */
export interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Something supervised: a child process, a cluster worker, or services in this process. */
export interface Unit {
  readonly name: string;
  /** settles once, when the unit has ended */
  readonly ended: Promise<Ended>;
  /** asks it to stop, finishing what it has in flight */
  stop(signal: NodeJS.Signals): void;
  /** ends it at once */
  kill(): void;
}

export interface SupervisorPolicy {
  /** A unit ended while nothing was stopping: a unit in its place, or the exit code to stop everything with. */
  ended(unit: Unit, how: Ended): Unit | number;
  /** A unit ended while stopping: an exit code that replaces the one being stopped with, if it should. */
  endedWhileStopping?(unit: Unit, how: Ended): number | undefined;
  /** Work after every unit ended (a Redis of its own, an admin port), before the exit code is given. */
  afterAll?(): Promise<void>;
  /** A unit still running this long after it was asked to stop is killed (each bounds its own shutdown; this is for one that hangs); never when unset. */
  killAfterMs?: number;
}

export class Supervisor {
  private readonly units = new Set<Unit>();
  private code: number | undefined;
  private finish!: (code: number) => void;
  /** the exit code, once every unit has ended and afterAll ran */
  readonly finished = new Promise<number>((resolve) => (this.finish = resolve));

  constructor(private readonly policy: SupervisorPolicy) {}

  get stopping(): boolean {
    return this.code !== undefined;
  }

  /** the units running now */
  get running(): ReadonlySet<Unit> {
    return this.units;
  }

  add(unit: Unit): void {
    this.units.add(unit);
    void unit.ended.then((how) => this.onEnded(unit, how));
  }

  /** Stops every unit with `signal`; the exit code is `code` unless a unit's end says otherwise. */
  stop(code: number, signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.stopping) return;
    this.code = code;
    if (this.units.size === 0) {
      void this.done();
      return;
    }
    for (const unit of this.units) unit.stop(signal);
    if (this.policy.killAfterMs === undefined) return;
    setTimeout(() => {
      for (const unit of this.units) unit.kill();
    }, this.policy.killAfterMs).unref();
  }

  /** SIGTERM and SIGINT stop everything with exit code 0; `onSignal` hears of the first. */
  stopOnSignals(onSignal?: (signal: NodeJS.Signals) => void): void {
    const handle = (signal: NodeJS.Signals) => {
      if (this.stopping) return;
      onSignal?.(signal);
      this.stop(0, signal);
    };
    // `on`: a second signal must not kill the supervisor mid-shutdown (Node's default action)
    process.on('SIGTERM', handle);
    process.on('SIGINT', handle);
  }

  private onEnded(unit: Unit, how: Ended): void {
    this.units.delete(unit);
    if (this.stopping) {
      const code = this.policy.endedWhileStopping?.(unit, how);
      if (code !== undefined) this.code = code;
      if (this.units.size === 0) void this.done();
      return;
    }
    const next = this.policy.ended(unit, how);
    if (typeof next === 'number') this.stop(next);
    else this.add(next);
  }

  private async done(): Promise<void> {
    await this.policy.afterAll?.();
    this.finish(this.code ?? 0);
  }
}
