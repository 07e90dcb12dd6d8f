import { describe, expect, it } from 'vitest';
import { RecentKeys } from './recent-keys.js';

describe('RecentKeys', () => {
  it('remembers a key until its time is up', () => {
    let now = 1000;
    const keys = new RecentKeys(10, () => now);
    keys.remember('a', 500);
    expect(keys.has('a')).toBe(true);
    now = 1499;
    expect(keys.has('a')).toBe(true);
    now = 1500;
    expect(keys.has('a')).toBe(false);
    expect(keys.size).toBe(0);
  });

  it('forgets the oldest key past its bound', () => {
    const keys = new RecentKeys(2);
    keys.remember('a', 60_000);
    keys.remember('b', 60_000);
    keys.remember('a', 60_000); // refreshed: now the youngest
    keys.remember('c', 60_000);
    expect([keys.has('a'), keys.has('b'), keys.has('c')]).toEqual([true, false, true]);
  });

  it('remembers nothing with a bound of 0', () => {
    const keys = new RecentKeys(0);
    keys.remember('a', 60_000);
    expect(keys.has('a')).toBe(false);
  });

  it('knows what became of a key, and forgets it on demand', () => {
    const keys = new RecentKeys(10);
    keys.remember('a', 60_000, 'handing-off');
    expect(keys.state('a')).toBe('handing-off');
    keys.remember('a', 60_000, 'uploaded');
    expect(keys.state('a')).toBe('uploaded');
    keys.remember('b', 60_000);
    expect(keys.state('b')).toBe('queued');
    keys.forget('a');
    expect([keys.state('a'), keys.has('a')]).toEqual([undefined, false]);
  });

  it('forgets what it knew of an upload once the bucket is found without the image, but not a hand-off under way', () => {
    const keys = new RecentKeys(10);
    keys.remember('uploaded', 60_000, 'uploaded');
    keys.remember('queued', 60_000, 'queued');
    keys.remember('busy', 60_000, 'handing-off');
    for (const key of ['uploaded', 'queued', 'busy', 'unknown']) keys.bucketLost(key);
    expect(['uploaded', 'queued', 'busy', 'unknown'].map((k) => keys.state(k))).toEqual([undefined, undefined, 'handing-off', undefined]);
  });
});
