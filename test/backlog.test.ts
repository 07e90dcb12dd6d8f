import {
  BucketClient,
  cacheKeyOf,
  crc32Of,
  createLogger,
  decodePayload,
  encodePayload,
  loadConfig,
  PayloadStore,
  queuePrefix,
  redisKeys,
} from '@imgproxy-cache/shared';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { S3ObjectStore } from '../apps/uploader/src/s3-store.js';
import { type RunningUploader, startUploader } from '../apps/uploader/src/uploader.js';
import { spawnRedisServer, type TestRedis } from './support/redis-server.js';
import { S3RVER_CREDENTIALS } from './support/s3.js';
import { type Stack, startStack } from './support/stack.js';

// Teed bytes waiting for upload are bounded (CACHE_BACKLOG_MAX_BYTES), so that a long S3 outage
// can never fill Redis and take the queue down with it; and they can live in a Redis of their own.

let stack: Stack | undefined;
let uploader: RunningUploader | undefined;
let extraRedis: TestRedis | undefined;
afterEach(async (ctx) => {
  if (ctx.task.result?.state === 'fail' && stack) console.log('logs', JSON.stringify(stack.logs), 'outcomes', stack.outcomes);
  await uploader?.close(2_000);
  await stack?.stop();
  await extraRedis?.stop();
  stack = uploader = extraRedis = undefined;
});

function lateUploader(s: Stack, env: Record<string, string> = {}): Promise<RunningUploader> {
  const config = loadConfig({ ...Object.fromEntries(Object.entries(process.env)), ...stackEnv(s), ...env }, 'uploader');
  return startUploader({
    config,
    store: new S3ObjectStore(new BucketClient(config.s3, { credentials: async () => S3RVER_CREDENTIALS }), config.s3.folder),
    logger: createLogger('uploader', 'silent'),
  });
}

function stackEnv(s: Stack): Record<string, string> {
  return {
    REDIS_URL: s.config.redisUrl,
    ...(s.config.payloadRedisUrl ? { PAYLOAD_REDIS_URL: s.config.payloadRedisUrl } : {}),
    QUEUE_NAME: s.config.queue.name,
    S3_BUCKET: s.bucket,
    S3_ENDPOINT: s.tap.endpoint,
    S3_REGION: 'us-east-1',
    METRICS_BIND: 'off',
  };
}

function payloadOf(bytes: Buffer): Buffer {
  return encodePayload({ contentType: 'image/png', cacheControl: null, contentDisposition: null, size: bytes.length, crc32: crc32Of(bytes), receivedAt: 1 }, [
    bytes,
  ]);
}

/** The body of a stored payload. */
function bodyOf(stored: Buffer | null): Buffer | undefined {
  const decoded = stored ? decodePayload(stored) : undefined;
  return decoded && 'body' in decoded ? decoded.body : undefined;
}

describe('the backlog bound', () => {
  it('stops teeing past CACHE_BACKLOG_MAX_BYTES, says so once, and resumes when uploads drain it', async () => {
    let clock = 1_000_000;
    stack = await startStack({
      noUploader: true,
      env: { CACHE_MAX_BYTES: '10000', CACHE_BACKLOG_MAX_BYTES: '25000' },
      enqueuerOptions: { backlogRecheckMs: 100, now: () => clock },
    });
    const s = stack;
    const paths = Array.from({ length: 6 }, (_, i) => `/sig/backlog/plain/https://example.com/${i}.jpg@png`);
    const size = s.stub.imageFor(paths[0]!).length + 250; // about 7 KB with its header: three fit
    expect(size * 3).toBeLessThanOrEqual(25_000);
    expect(size * 4).toBeGreaterThan(25_000);
    for (const p of paths) {
      expect((await s.get(p)).body.equals(s.stub.imageFor(p))).toBe(true);
      await s.outcomeOf(p);
    }
    expect(s.outcomes.map((o) => o.outcome)).toEqual(['queued', 'queued', 'queued', 'backlog-full', 'backlog-full', 'backlog-full']);
    expect(s.logs.filter((l) => String(l.msg).startsWith('Upload backlog is full'))).toHaveLength(1);
    const keys = redisKeys(s.config.queue.name);
    const payloadSize = (p: string) => s.redis.strlen(keys.payload(cacheKeyOf(p)));
    expect(Number(await s.redis.get(keys.backlogBytes()))).toBe(
      (await payloadSize(paths[0]!)) + (await payloadSize(paths[1]!)) + (await payloadSize(paths[2]!)),
    );

    uploader = await lateUploader(s);
    for (const p of paths.slice(0, 3)) await s.waitForObject(p);
    await s.drained();
    expect(Number(await s.redis.get(keys.backlogBytes()))).toBe(0);
    clock += 100; // the proxy asks Redis again
    await s.get(paths[3]!);
    expect(await s.outcomeOf(paths[3]!, 2)).toBe('queued');
    expect(s.logs.filter((l) => l.msg === 'Upload backlog has room again: caching resumed')).toHaveLength(1);
    await s.waitForObject(paths[3]!);
  });

  it('while full, sheds new images without copying them or asking Redis, except one per recheck interval', async () => {
    // a Redis of its own, to count the commands the proxy sends
    extraRedis = await spawnRedisServer();
    let clock = 1_000_000;
    stack = await startStack({
      noUploader: true,
      redisUrl: extraRedis.url,
      env: { CACHE_MAX_BYTES: '10000', CACHE_BACKLOG_MAX_BYTES: '10000' },
      enqueuerOptions: { backlogRecheckMs: 100, now: () => clock },
    });
    const s = stack;
    const sets = async () => Number(/cmdstat_set:calls=(\d+)/.exec(await s.redis.info('commandstats'))?.[1] ?? 0);
    const paths = Array.from({ length: 8 }, (_, i) => `/sig/shed/plain/https://example.com/${i}.jpg@png`);
    const get = async (i: number) => {
      expect((await s.get(paths[i]!)).body.equals(s.stub.imageFor(paths[i]!))).toBe(true);
      return s.outcomeOf(paths[i]!);
    };
    expect(await get(0)).toBe('queued');
    expect(await get(1)).toBe('backlog-full'); // Redis says so
    const before = await sets();
    expect(await get(2)).toBe('backlog-full');
    expect(await get(3)).toBe('backlog-full');
    expect(await sets()).toBe(before); // shed in the proxy

    clock += 100; // one image asks again, the next ones are shed again
    expect(await get(4)).toBe('backlog-full');
    expect(await sets()).toBe(before + 1);
    expect(await get(5)).toBe('backlog-full');
    expect(await sets()).toBe(before + 1);

    // room for one image again: the next image that asks is cached, and the one after it asks Redis
    await new PayloadStore(s.redis, redisKeys(s.config.queue.name)).drop(cacheKeyOf(paths[0]!));
    clock += 100;
    expect(await get(6)).toBe('queued');
    expect(await get(7)).toBe('backlog-full');
    expect(await sets()).toBe(before + 3);
  });

  it('uncounts payloads that expired before anyone uploaded them', async () => {
    stack = await startStack({ noUploader: true });
    const s = stack;
    const keys = redisKeys(s.config.queue.name);
    // a payload counted as 5000 bytes that expired long ago
    await s.redis.multi().incrby(keys.backlogBytes(), 5000).hset(keys.backlogSizes(), 'gone', 5000).zadd(keys.backlogExpiry(), 1, 'gone').exec();
    const p = '/sig/plain/https://example.com/sweep.jpg@png';
    await s.get(p);
    expect(await s.outcomeOf(p)).toBe('queued');
    expect(Number(await s.redis.get(keys.backlogBytes()))).toBe(await s.redis.strlen(keys.payload(cacheKeyOf(p))));
    expect(await s.redis.hexists(keys.backlogSizes(), 'gone')).toBe(0);
  });
});

describe('PAYLOAD_REDIS_URL', () => {
  it('keeps the bytes in the second Redis and the queue in the first; images land', async () => {
    extraRedis = await spawnRedisServer();
    stack = await startStack({ noUploader: true, env: { PAYLOAD_REDIS_URL: extraRedis.url, CACHE_RECENT_KEYS: '0' } });
    const s = stack;
    const p = '/sig/plain/https://example.com/second.jpg@png';
    await s.get(p);
    expect(await s.outcomeOf(p)).toBe('queued');
    const keys = redisKeys(s.config.queue.name);
    const payloads = new Redis(extraRedis.url);
    try {
      expect(bodyOf(await payloads.getBuffer(keys.payload(cacheKeyOf(p))))!.equals(s.stub.imageFor(p))).toBe(true);
      expect(await s.redis.exists(keys.payload(cacheKeyOf(p)))).toBe(0);
      // the job is in the queue's Redis, and nothing of the queue in the other
      expect(await (await s.queue.getJob(cacheKeyOf(p)))!.getState()).toBe('waiting');
      expect((await payloads.keys(`${queuePrefix(s.config.queue.name)}:*`)).sort()).toEqual(
        [keys.payload(cacheKeyOf(p)), keys.backlogBytes(), keys.backlogSizes(), keys.backlogExpiry()].sort(),
      );
      // a second request while it waits: its job lives and its bytes are there
      await s.get(p);
      expect(await s.outcomeOf(p, 2)).toBe('already-queued');

      uploader = await lateUploader(s);
      await s.waitForObject(p);
      await s.drained();
      expect(await payloads.exists(keys.payload(cacheKeyOf(p)))).toBe(0);
      expect(await s.redis.exists(keys.uploaded(cacheKeyOf(p)))).toBe(1);
      await s.get(p);
      expect(await s.outcomeOf(p, 3)).toBe('uploaded');
    } finally {
      payloads.disconnect();
    }
  });
});

describe('the tee', () => {
  // The bytes travel in a plain SET of a staged key, and the tee script keeps them (RENAME) or
  // drops them: whatever it decides, no staged key is left behind and the count stays exact.
  it('keeps the bytes it needs, drops the rest, and leaves no staged keys', async () => {
    stack = await startStack({ noUploader: true });
    const s = stack;
    const keys = redisKeys(s.config.queue.name);
    const store = new PayloadStore(s.redis, keys);
    const opts = { ttlSec: 600, backlogMaxBytes: 10_000 };
    const staged = () => s.redis.keys(`${queuePrefix(s.config.queue.name)}:*:staged:*`);
    const counted = async () => Number((await s.redis.get(keys.backlogBytes())) ?? 0);

    const a = payloadOf(Buffer.alloc(4_000, 1));
    expect(await store.tee('a', a, opts)).toEqual({ state: 'none', result: 'stored' });
    expect((await s.redis.getBuffer(keys.payload('a')))!.equals(a)).toBe(true);
    const ttl = await s.redis.ttl(keys.payload('a'));
    expect(ttl).toBeGreaterThan(590); // the payload's TTL, not the staged key's
    expect(await counted()).toBe(a.length);

    // uploaded a moment ago: dropped
    await s.redis.set(keys.uploaded('b'), '1');
    const b = payloadOf(Buffer.alloc(4_000, 3));
    expect(await store.tee('b', b, opts)).toEqual({ state: 'uploaded', result: 'skipped' });
    expect(await s.redis.exists(keys.payload('b'))).toBe(0);
    // past the bound: dropped
    const c = payloadOf(Buffer.alloc(7_000, 4));
    expect(await store.tee('c', c, opts)).toEqual({ state: 'none', result: 'backlog-full' });
    expect(await s.redis.exists(keys.payload('c'))).toBe(0);
    // the same image again, no job yet (its producer died before adding it): replaced, counted once
    const a2 = payloadOf(Buffer.alloc(4_100, 2));
    expect(await store.tee('a', a2, opts)).toEqual({ state: 'none', result: 'stored' });
    expect((await s.redis.getBuffer(keys.payload('a')))!.equals(a2)).toBe(true);

    expect(await counted()).toBe(a2.length);
    expect(await staged()).toEqual([]);
  });
});
