import { describe, expect, it } from 'vitest';
import { cacheKeyOf } from './cache-key.js';
import { shardOf, shardQueueName, shardQueueNames } from './shards.js';

describe('queue shards', () => {
  it('name the queue QUEUE_NAME with one shard, QUEUE_NAME-<n> with several', () => {
    expect(shardQueueNames('uploads', 1)).toEqual(['uploads']);
    expect(shardQueueNames('uploads', 3)).toEqual(['uploads-0', 'uploads-1', 'uploads-2']);
    expect(shardQueueName('uploads', 2, 3)).toBe('uploads-2');
  });

  it('put an image by the first 8 hex digits of its key', () => {
    expect(shardOf('0000000aXXXXXXXXXXXXXXXXXXXXXXXX', 3)).toBe(1); // 10 mod 3
    expect(shardOf('ffffffff000000000000000000000000', 7)).toBe(0xffffffff % 7);
    expect(shardOf(cacheKeyOf('/any/path'), 1)).toBe(0);
  });

  it('spread keys over every shard', () => {
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) counts[shardOf(cacheKeyOf(`/image/${i}.png`), 4)]! += 1;
    for (const n of counts) expect(n).toBeGreaterThan(800);
  });
});
