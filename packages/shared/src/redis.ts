import { Redis } from 'ioredis';

export type { Redis };

export interface RedisOptions {
  /** called (rate-limit it yourself) for connection errors; ioredis reconnects by itself */
  onError?: (error: Error) => void;
}

/** What ioredis connects to for a URL: `unix:///run/redis.sock` is the socket's path. */
export function redisTarget(url: string): string {
  return url.startsWith('unix:') ? decodeURIComponent(new URL(url).pathname) : url;
}

/** Reconnect forever, a little slower each time, never slower than every 2 s. */
const retryStrategy = (times: number): number => Math.min(times * 100, 2000);

/**
 * For the proxy: a command either runs now or fails now. With the offline queue off, nothing waits
 * for a Redis that is down, so a Redis outage costs a client nothing; ioredis keeps reconnecting
 * in the background and caching resumes by itself.
 */
export function createProducerRedis(url: string, options: RedisOptions = {}): Redis {
  const redis = new Redis(redisTarget(url), {
    enableOfflineQueue: false,
    // Auto-pipelining copies every command once more to join the writes of one tick; at the rates
    // users run there is rarely a second command to join (bench/PROFILE.md).
    enableAutoPipelining: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    retryStrategy,
    lazyConnect: false,
  });
  redis.on('error', (error: Error) => options.onError?.(error));
  return redis;
}

/** For BullMQ workers, which block on Redis and require `maxRetriesPerRequest: null`. */
export function createWorkerRedis(url: string, options: RedisOptions = {}): Redis {
  const redis = new Redis(redisTarget(url), {
    maxRetriesPerRequest: null,
    connectTimeout: 5000,
    retryStrategy,
  });
  redis.on('error', (error: Error) => options.onError?.(error));
  return redis;
}

/**
 * One line naming what is wrong with a Redis's eviction policy for what it holds, or undefined.
 * The queue's Redis must never evict (BullMQ loses jobs); a separate payload Redis may evict keys
 * with a TTL (payloads, staged bytes), never the backlog counter, which has none.
 */
export async function evictionProblem(redis: Redis, holds: 'queue' | 'payloads', variable: string): Promise<string | undefined> {
  const policy = /^maxmemory_policy:(\S+)/m.exec(await redis.info('memory'))?.[1];
  if (policy === undefined) return undefined; // a server that does not say (some managed ones)
  if (holds === 'queue' && policy !== 'noeviction') {
    return `${variable} points at a Redis with maxmemory-policy ${policy}, which loses queued uploads when memory fills: run it with maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, and in its configuration)`;
  }
  if (holds === 'payloads' && policy.startsWith('allkeys-')) {
    return `${variable} points at a Redis with maxmemory-policy ${policy}, which may evict the upload backlog counter: run it with volatile-lru (or noeviction)`;
  }
  return undefined;
}
