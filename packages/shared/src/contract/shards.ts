import type { Redis } from '../redis/connect.js';
import { BULL_PREFIX } from './redis-keys.js';

// QUEUE_SHARDS: an image's job and bytes go to one of N queues, each with a hash tag of its own,
// so that on a Redis Cluster they spread over the nodes. The shard depends on the image's key
// only, so that every proxy sends an image to the same queue and the dedup rule holds.

/** The queue name of shard `shard` of `count`: QUEUE_NAME itself when there is one. */
export function shardQueueName(base: string, shard: number, count: number): string {
  return count === 1 ? base : `${base}-${shard}`;
}

/** Every queue name of `count` shards. */
export function shardQueueNames(base: string, count: number): string[] {
  return Array.from({ length: count }, (_, shard) => shardQueueName(base, shard, count));
}

/** The shard of an image: the first 8 hex digits of its cache key, modulo `count`. */
export function shardOf(cacheKey: string, count: number): number {
  return count === 1 ? 0 : Number.parseInt(cacheKey.slice(0, 8), 16) % count;
}

/**
 * The queue names any proxy has sent images to (a set, under QUEUE_NAME's own hash tag), so that
 * uploaders find the queues of an earlier QUEUE_SHARDS and drain them.
 */
export class QueueRegistry {
  private readonly key: string;

  constructor(
    private readonly redis: Redis,
    base: string,
  ) {
    this.key = `${BULL_PREFIX}:{${base}}:${base}:queues`;
  }

  async register(names: readonly string[]): Promise<void> {
    await this.redis.sadd(this.key, ...names);
  }

  async names(): Promise<string[]> {
    return (await this.redis.smembers(this.key)).sort();
  }

  async forget(name: string): Promise<void> {
    await this.redis.srem(this.key, name);
  }
}
