import { describe, expect, it, vi } from 'vitest';
import { type Ended, Supervisor, type SupervisorPolicy, type Unit } from './supervisor.js';

// The supervision rules on their own (cluster.test.ts, services.test.ts and own-redis.test.ts run
// them with real processes): units here end when told to, or when the test ends them.

class TestUnit implements Unit {
  readonly stops: NodeJS.Signals[] = [];
  killed = false;
  private end!: (how: Ended) => void;
  readonly ended = new Promise<Ended>((resolve) => (this.end = resolve));
  constructor(
    readonly name: string,
    private readonly endsWhenStopped = true,
  ) {}
  stop(signal: NodeJS.Signals): void {
    this.stops.push(signal);
    if (this.endsWhenStopped) this.exit(0);
  }
  kill(): void {
    this.killed = true;
    this.exit(null, 'SIGKILL');
  }
  exit(code: number | null, signal: NodeJS.Signals | null = null): void {
    this.end({ code, signal });
  }
}

const policy = (overrides: Partial<SupervisorPolicy> = {}): SupervisorPolicy => ({ ended: (_unit, { code }) => code ?? 1, ...overrides });

describe('Supervisor', () => {
  it('stops every other unit when one ends, with the exit code the policy gives', async () => {
    const supervisor = new Supervisor(policy());
    const [a, b] = [new TestUnit('a'), new TestUnit('b')];
    supervisor.add(a);
    supervisor.add(b);
    a.exit(3);
    expect(await supervisor.finished).toBe(3);
    expect(b.stops).toEqual(['SIGTERM']);
    expect(a.stops).toEqual([]);
  });

  it('puts the unit the policy gives in the place of one that ended, and goes on', async () => {
    const replacements: TestUnit[] = [];
    const supervisor = new Supervisor(
      policy({
        ended: () => {
          const unit = new TestUnit('again');
          replacements.push(unit);
          return unit;
        },
      }),
    );
    const first = new TestUnit('first');
    supervisor.add(first);
    first.exit(1);
    await vi.waitFor(() => expect(replacements).toHaveLength(1));
    expect(supervisor.stopping).toBe(false);
    expect(supervisor.running.size).toBe(1);
    supervisor.stop(0, 'SIGINT');
    expect(await supervisor.finished).toBe(0);
    expect(replacements[0]!.stops).toEqual(['SIGINT']);
  });

  it('finishes only once every unit has ended and its last work is done', async () => {
    const order: string[] = [];
    const supervisor = new Supervisor(policy({ afterAll: async () => void order.push('afterAll') }));
    const slow = new TestUnit('slow', false);
    supervisor.add(slow);
    supervisor.stop(0);
    void supervisor.finished.then(() => order.push('finished'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(order).toEqual([]);
    slow.exit(0);
    await supervisor.finished;
    expect(order).toEqual(['afterAll', 'finished']);
  });

  it('lets a unit that ends badly while stopping change the exit code, when the policy says so', async () => {
    const supervisor = new Supervisor(policy({ endedWhileStopping: (_unit, { code }) => (code === 0 ? undefined : 1) }));
    const [good, bad] = [new TestUnit('good'), new TestUnit('bad', false)];
    supervisor.add(good);
    supervisor.add(bad);
    supervisor.stop(0);
    bad.exit(7);
    expect(await supervisor.finished).toBe(1);
  });

  it('kills a unit still running killAfterMs after it was asked to stop, and none without it', async () => {
    vi.useFakeTimers();
    try {
      const bounded = new Supervisor(policy({ killAfterMs: 1_000 }));
      const hung = new TestUnit('hung', false);
      bounded.add(hung);
      bounded.stop(0);
      await vi.advanceTimersByTimeAsync(999);
      expect(hung.killed).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      expect(hung.killed).toBe(true);
      expect(await bounded.finished).toBe(0);

      const unbounded = new Supervisor(policy());
      const waiting = new TestUnit('waiting', false);
      unbounded.add(waiting);
      unbounded.stop(0);
      await vi.advanceTimersByTimeAsync(3_600_000);
      expect(waiting.killed).toBe(false);
      waiting.exit(0);
      expect(await unbounded.finished).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('with no units, a stop finishes at once', async () => {
    const supervisor = new Supervisor(policy());
    supervisor.stop(2);
    expect(await supervisor.finished).toBe(2);
  });
});
