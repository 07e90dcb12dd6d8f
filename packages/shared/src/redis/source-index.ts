import { sourceOfPath } from '../contract/image-source.js';
import { BULL_PREFIX } from '../contract/redis-keys.js';
import type { Redis } from './connect.js';

// Source → stored keys: a Redis set per source tag, under QUEUE_NAME's hash tag (one slot on a
// cluster), written by the proxy as it hands an image off and read by purge-by-source. Lost with
// Redis; the bucket keeps each object's tag in its metadata, so `npm run reindex` rebuilds it.

export class SourceIndex {
  private readonly prefix: string;

  constructor(
    private readonly redis: Redis,
    base: string,
    private readonly baseUrl = '',
  ) {
    this.prefix = `${BULL_PREFIX}:{${base}}:${base}:source:`;
  }

  key(tag: string): string {
    return `${this.prefix}${tag}`;
  }

  /** Indexes an image under its source; 'encrypted' or 'none' when it has no readable one. */
  add(path: string, cacheKey: string): Promise<'indexed' | 'encrypted' | 'none'> {
    const source = sourceOfPath(path, this.baseUrl);
    if ('encrypted' in source) return Promise.resolve('encrypted');
    if ('problem' in source) return Promise.resolve('none');
    return this.addTag(source.tag, cacheKey).then(() => 'indexed');
  }

  async addTag(tag: string, cacheKey: string): Promise<void> {
    await this.redis.sadd(this.key(tag), cacheKey);
  }

  keys(tag: string): Promise<string[]> {
    return this.redis.smembers(this.key(tag)).then((keys) => keys.sort());
  }

  async remove(tag: string, cacheKeys: readonly string[]): Promise<void> {
    if (cacheKeys.length > 0) await this.redis.srem(this.key(tag), ...cacheKeys);
  }
}
