import { describe, expect, it } from 'vitest';
import { ShardWatchdog, type WatchedWorker } from './shard-watchdog.js';

/** A worker as the watchdog sees it, each trait set by the test. */
function worker(name: string) {
  const w = { name, activity: 0, free: true, queued: 0 };
  const watched: WatchedWorker = { name, lastActivity: () => w.activity, canTake: () => w.free, waiting: async () => w.queued };
  return { w, watched };
}

describe('ShardWatchdog', () => {
  it('restarts a worker that takes none of its waiting jobs for stuckMs, and reports it stuck until the new one takes a job', async () => {
    let now = 10_000;
    const a = worker('q-0');
    const workers = new Map([['q-0', a.watched]]);
    const restarted: string[] = [];
    let stuckDuringRestart: readonly string[] = [];
    const dog = new ShardWatchdog(() => workers.values(), {
      stuckMs: 3_000,
      intervalMs: 1_000,
      now: () => now,
      onStuck: (name) => {
        stuckDuringRestart = dog.stuckWorkers;
        restarted.push(name);
        const fresh = worker(name); // the new worker: nothing taken yet, two jobs waiting
        fresh.w.activity = now;
        fresh.w.queued = 2;
        workers.set(name, fresh.watched);
        Object.assign(a, fresh);
      },
    });
    a.w.queued = 2;
    await dog.check(); // first seen waiting
    now += 2_000;
    await dog.check();
    expect(restarted).toEqual([]);
    now += 1_500; // 3.5 s without taking one
    await dog.check();
    expect(restarted).toEqual(['q-0']);
    expect(stuckDuringRestart).toEqual(['q-0']);
    expect(dog.stuckWorkers).toEqual(['q-0']); // /readyz: not ready until the new worker takes a job
    now += 500;
    await dog.check();
    expect(dog.stuckWorkers).toEqual(['q-0']);
    a.w.activity = now + 1; // it took one
    now += 1_000;
    await dog.check();
    expect(dog.stuckWorkers).toEqual([]);
    expect(restarted).toEqual(['q-0']);
  });

  it('leaves alone a worker that is busy, paused, throttled, has nothing waiting, or took a job meanwhile', async () => {
    let now = 10_000;
    const restarted: string[] = [];
    const busy = worker('busy');
    const empty = worker('empty');
    const taking = worker('taking');
    for (const { w } of [busy, taking]) w.queued = 5;
    busy.w.free = false;
    const dog = new ShardWatchdog(() => [busy.watched, empty.watched, taking.watched], {
      stuckMs: 3_000,
      intervalMs: 1_000,
      now: () => now,
      onStuck: (name) => void restarted.push(name),
    });
    for (let i = 0; i < 10; i++) {
      await dog.check();
      now += 1_000;
      taking.w.activity = now - 10; // takes a job every second
    }
    expect(restarted).toEqual([]);
    expect(dog.stuckWorkers).toEqual([]);
  });

  it('asks Redis nothing about a worker that has just been active, and goes on when Redis does not answer', async () => {
    let now = 10_000;
    let asked = 0;
    const hanging: WatchedWorker = { name: 'h', lastActivity: () => 0, canTake: () => true, waiting: () => new Promise(() => undefined) };
    const active: WatchedWorker = {
      name: 'a',
      lastActivity: () => now,
      canTake: () => true,
      waiting: async () => {
        asked += 1;
        return 1;
      },
    };
    const dog = new ShardWatchdog(() => [hanging, active], { stuckMs: 100, intervalMs: 10, now: () => now, onStuck: () => undefined });
    await dog.check(); // the hanging worker's question times out; the look goes on
    now += 5;
    await dog.check();
    expect(asked).toBe(0);
  });
});
