import type { Dispatcher } from 'undici';
import { cacheKeyOf, objectKeyOf, rawPathOf } from '../contract/cache-key.js';
import { decideAtHeaders } from '../contract/cacheability.js';

// Warming the bucket: each path of a list is requested through the proxy (so signing, coalescing,
// the dedup rule, the hand-off and the uploaders work as for users), then confirmed in the bucket.
// Paths stored already are skipped, so a rerun after an interruption does only what is left.
// Bounded by a concurrency and an optional rate, and it backs off while the proxy answers 503/429
// or says it skips images (backlog full, Redis away), so that warming never starves live traffic.

/** One line of the list: a request target as clients send it (path and query). */
export type WarmLine = { target: string } | { problem: string };

/** A path as clients request it, or a full URL (its path and query are what is requested). */
export function parseWarmLine(line: string): WarmLine | undefined {
  const text = line.trim();
  if (text === '' || text.startsWith('#')) return undefined;
  if (text.startsWith('/')) return /\s/.test(text) ? { problem: `"${text}" holds a space: one path per line` } : { target: text };
  if (/^https?:\/\//i.test(text)) {
    try {
      const url = new URL(text);
      return { target: `${url.pathname}${url.search}` };
    } catch {
      return { problem: `"${text}" is not a URL` };
    }
  }
  return { problem: `"${text}" is neither a path (starting with /) nor an http(s) URL` };
}

export type Outcome =
  | { path: string; result: 'rendered' } // requested and now in the bucket
  | { path: string; result: 'stored' } // in the bucket before: not requested
  | { path: string; result: 'failed'; reason: string };

export interface WarmBucket {
  /** whether the object is there; undefined when the bucket did not answer */
  exists(key: string): Promise<boolean | undefined>;
  /**
   * Every key under the folder (a listing: 1000 keys a request, where a HEAD asks for one), or
   * undefined once it would take more than `maxPages` requests (a folder far larger than the list).
   */
  keys(prefix: string, maxPages: number): Promise<Set<string> | undefined>;
}

export interface WarmOptions {
  targets: readonly string[];
  /** the proxy's origin */
  proxy: Dispatcher;
  bucket: WarmBucket;
  folder: string;
  concurrency: number;
  /** requests started per second, at most */
  rate?: number;
  /** list the folder once instead of a HEAD per path, unless the folder is far larger than the list */
  list: boolean;
  /** how long an image may take to appear in the bucket after its response */
  landTimeoutMs: number;
  /** CACHE_MAX_BYTES, for the cacheability rule */
  maxBytes: number;
  /** the proxy's /metrics: its skipped hand-offs make warming pause */
  skipped?: () => Promise<number | undefined>;
  /** stops taking new paths (those in flight finish) */
  signal?: AbortSignal;
  onOutcome?: (outcome: Outcome) => void;
  now?: () => number;
}

export interface WarmSummary {
  outcomes: Outcome[];
  /** paths not started (interrupted) */
  notStarted: number;
  elapsedMs: number;
}

/** Answers that mean "not now": the path is tried again after a pause. */
const BUSY = new Set([429, 503]);
const MAX_BUSY_TRIES = 5;
const PAUSE_MS = [500, 1_000, 2_000, 4_000, 8_000];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function warm(options: WarmOptions): Promise<WarmSummary> {
  const now = options.now ?? Date.now;
  const started = now();
  const outcomes: Outcome[] = [];
  const done = (outcome: Outcome) => {
    outcomes.push(outcome);
    options.onOutcome?.(outcome);
  };
  const keyOf = (target: string) => objectKeyOf(options.folder, cacheKeyOf(rawPathOf(target)));
  // a listing is worth it while it takes at most one request per 100 paths
  const listed = options.list ? await options.bucket.keys(options.folder, Math.ceil(options.targets.length / 100)) : undefined;

  const queue = options.targets.map((target) => ({ target, busyTries: 0 }));
  let next = 0;
  let pausedUntil = 0;
  let pauses = 0;
  let lastStart = 0;
  const gap = options.rate ? 1000 / options.rate : 0;
  // pauses while the proxy says it skips hand-offs (backlog full, Redis away)
  let skippedBefore = (await options.skipped?.()) ?? 0;
  const watchSkips = async () => {
    const skipped = await options.skipped?.();
    if (skipped === undefined) return;
    if (skipped > skippedBefore) pause();
    skippedBefore = skipped;
  };
  const pause = () => {
    pausedUntil = Math.max(pausedUntil, now() + PAUSE_MS[Math.min(pauses, PAUSE_MS.length - 1)]!);
    pauses += 1;
  };

  /** Waits until a request may start: after a pause, and `gap` after the one before. */
  const mayStart = async () => {
    for (;;) {
      const wait = Math.max(pausedUntil - now(), lastStart + gap - now());
      if (wait <= 0) break;
      await sleep(Math.min(wait, 250));
      if (options.signal?.aborted) return false;
    }
    lastStart = now();
    return !options.signal?.aborted;
  };

  const landed = async (key: string) => {
    const deadline = now() + options.landTimeoutMs;
    for (let delay = 100; ; delay = Math.min(delay * 2, 1_000)) {
      if (await options.bucket.exists(key)) return true;
      if (now() >= deadline) return false;
      await sleep(delay);
    }
  };

  const one = async (item: { target: string; busyTries: number }): Promise<void> => {
    const { target } = item;
    const key = keyOf(target);
    if (listed ? listed.has(key) : await options.bucket.exists(key)) return done({ path: target, result: 'stored' });
    if (!(await mayStart())) return; // interrupted before it started: counted as not started
    let status: number;
    let headers: Record<string, string | string[] | undefined>;
    try {
      const res = await options.proxy.request({ method: 'GET', path: target, headersTimeout: 120_000, bodyTimeout: 120_000 });
      status = res.statusCode;
      headers = res.headers;
      await res.body.arrayBuffer();
    } catch (error) {
      return done({ path: target, result: 'failed', reason: `the proxy did not answer: ${(error as Error).message}` });
    }
    if (BUSY.has(status) && item.busyTries < MAX_BUSY_TRIES) {
      item.busyTries += 1;
      pause();
      queue.push(item);
      return;
    }
    if (status !== 200) return done({ path: target, result: 'failed', reason: `imgproxy answered ${status}` });
    const decision = decideAtHeaders({ method: 'GET', path: rawPathOf(target), status, headers, maxBytes: options.maxBytes });
    if (!decision.cache) return done({ path: target, result: 'failed', reason: `not cacheable (${decision.reason})` });
    pauses = 0;
    if (await landed(key)) return done({ path: target, result: 'rendered' });
    done({
      path: target,
      result: 'failed',
      reason: `not in the bucket ${Math.round(options.landTimeoutMs / 1000)} s after its response (the proxy's cache_decisions_total says why: backlog-full, redis-down, ...)`,
    });
  };

  const skipWatch = options.skipped ? setInterval(() => void watchSkips().catch(() => undefined), 1_000) : undefined;
  try {
    await Promise.all(
      Array.from({ length: Math.max(1, options.concurrency) }, async () => {
        while (next < queue.length && !options.signal?.aborted) await one(queue[next++]!);
      }),
    );
  } finally {
    clearInterval(skipWatch);
  }
  return { outcomes, notStarted: options.targets.length - outcomes.length, elapsedMs: now() - started };
}
