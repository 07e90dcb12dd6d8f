import type { Dispatcher } from 'undici';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseWarmLine, type WarmSummary, warm } from './warm.js';

describe('parseWarmLine (one line of a warm list)', () => {
  it.each([
    ['/sig/rs:fit:300:200/plain/https://example.com/a.jpg@webp', { target: '/sig/rs:fit:300:200/plain/https://example.com/a.jpg@webp' }],
    ['  /sig/plain/a.jpg  ', { target: '/sig/plain/a.jpg' }],
    ['/sig/plain/a.jpg?cb=1', { target: '/sig/plain/a.jpg?cb=1' }],
    ['https://images.example.com/sig/plain/a.jpg@png?x=1', { target: '/sig/plain/a.jpg@png?x=1' }],
    ['', undefined],
    ['   ', undefined],
    ['# a comment', undefined],
    ['ftp://example.com/a.jpg', { problem: '"ftp://example.com/a.jpg" is neither a path (starting with /) nor an http(s) URL' }],
    ['sig/plain/a.jpg', { problem: '"sig/plain/a.jpg" is neither a path (starting with /) nor an http(s) URL' }],
    ['/sig/plain/a.jpg /sig/plain/b.jpg', { problem: '"/sig/plain/a.jpg /sig/plain/b.jpg" holds a space: one path per line' }],
  ])('%j → %j', (line, expected) => {
    expect(parseWarmLine(line)).toEqual(expected);
  });
});

describe('warm: when requests start (--rate), on a fake clock', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  /** Warms `n` paths against a proxy that answers at once; returns when each request started, from the first. */
  async function startTimes(n: number, options: { concurrency: number; rate?: number }): Promise<{ starts: number[]; summary: WarmSummary }> {
    const starts: number[] = [];
    const proxy = {
      request: async () => {
        starts.push(Date.now());
        const headers = { 'content-type': 'image/png', 'cache-control': 'max-age=3600, public', 'content-length': '8' };
        return { statusCode: 200, headers, body: { arrayBuffer: async () => new ArrayBuffer(8) } };
      },
    } as unknown as Dispatcher;
    // not stored before it is requested, stored from then on
    const asked = new Set<string>();
    const bucket = {
      exists: async (key: string) => {
        if (asked.has(key)) return true;
        asked.add(key);
        return false;
      },
      keys: async () => undefined,
    };
    const targets = Array.from({ length: n }, (_, i) => `/sig/rs:fit:${100 + i}:100/plain/https://example.com/paced.jpg@png`);
    let summary: WarmSummary | undefined;
    const run = warm({ targets, proxy, bucket, folder: '', list: false, landTimeoutMs: 60_000, maxBytes: 2 ** 20, ...options }).then((s) => (summary = s));
    // the clock moves only here: each timer fires at its own time, whatever the step
    while (!summary) await vi.advanceTimersByTimeAsync(10);
    await run;
    return { starts: starts.map((t) => t - starts[0]!), summary };
  }

  it.each([
    [4, 250],
    [2.5, 400],
  ])('--rate %s: one start every %s ms, however many requests may run at once', async (rate, gapMs) => {
    const { starts, summary } = await startTimes(12, { concurrency: 8, rate });
    expect(starts).toEqual(Array.from({ length: 12 }, (_, i) => i * gapMs));
    expect(summary.outcomes.map((o) => o.result)).toEqual(Array(12).fill('rendered'));
  });

  it('unpaced, as many start at once as --concurrency lets', async () => {
    const { starts, summary } = await startTimes(12, { concurrency: 12 });
    expect(starts).toEqual(Array(12).fill(0));
    expect(summary.outcomes.map((o) => o.result)).toEqual(Array(12).fill('rendered'));
  });
});
