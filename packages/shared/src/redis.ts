import { Redis } from 'ioredis';

export type { Redis };

export interface RedisOptions {
  /** called (rate-limit it yourself) for connection errors; ioredis reconnects by itself */
  onError?: (error: Error) => void;
}

/** Reconnect forever, a little slower each time, never slower than every 2 s. */
const retryStrategy = (times: number): number => Math.min(times * 100, 2000);

/**
 * For the proxy: a command either runs now or fails now. With the offline queue off, nothing waits
 * for a Redis that is down, so a Redis outage costs a client nothing; ioredis keeps reconnecting
 * in the background and caching resumes by itself.
 */
export function createProducerRedis(url: string, options: RedisOptions = {}): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    // commands issued in the same tick (tee, then BullMQ's add, across concurrent responses)
    // go out in one write
    enableAutoPipelining: true,
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
  const redis = new Redis(url, {
    maxRetriesPerRequest: null,
    connectTimeout: 5000,
    retryStrategy,
  });
  redis.on('error', (error: Error) => options.onError?.(error));
  return redis;
}
