import { cacheKeyOf, crc32Of, createLogger, createProducerRedis, encodePayload, loadConfig, type Redis, redisKeys } from '@imgproxy-cache/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { type EnqueueRequest, RedisEnqueuer } from '../apps/proxy/src/handoff/enqueue.js';
import { spawnRedisServer, type TestRedis } from './support/redis-server.js';

// The batched hand-off (ENQUEUE_GATHER_MS) against a real Redis: the images completed within the
// window reach Redis in one write for their bytes and dedup checks and one for their jobs, and
// each still gets its own outcome.

let redis: TestRedis | undefined;
let client: Redis | undefined;
let enqueuer: RedisEnqueuer | undefined;
afterEach(async () => {
  await enqueuer?.close();
  client?.disconnect();
  await redis?.stop();
  redis = client = enqueuer = undefined;
});

function image(path: string): EnqueueRequest {
  const body = Buffer.from(`the image at ${path}`);
  const payload = encodePayload(
    { contentType: 'image/webp', cacheControl: null, contentDisposition: null, size: body.length, crc32: crc32Of(body), receivedAt: Date.now() },
    [body],
  );
  return { data: { cacheKey: cacheKeyOf(path), path }, payload };
}

/** Counts the writes ioredis makes on the connection's socket. */
function countWrites(r: Redis): () => number {
  const stream = (r as unknown as { stream: { write: (...args: unknown[]) => boolean } }).stream;
  const write = stream.write.bind(stream);
  let writes = 0;
  stream.write = (...args: unknown[]) => {
    writes += 1;
    return write(...args);
  };
  return () => writes;
}

async function start(gatherMs: number, env: Record<string, string> = {}) {
  redis = await spawnRedisServer();
  const loaded = loadConfig({ REDIS_URL: redis.url, ...env }, 'proxy');
  const config = { ...loaded, proxy: { ...loaded.proxy, enqueueGatherMs: gatherMs } };
  client = createProducerRedis(redis.url);
  await new Promise<void>((resolve) => client!.once('ready', () => resolve()));
  enqueuer = new RedisEnqueuer(client, client, config, createLogger('proxy', 'silent'));
  return config;
}

describe('the batched hand-off', () => {
  it('hands off the images completed within ENQUEUE_GATHER_MS in two writes, each with its own outcome', async () => {
    const config = await start(50);
    // the first hand-off loads the scripts and readies BullMQ's queue
    expect(await enqueuer!.enqueue(image('/warm-up'))).toBe('queued');
    await client!.set(redisKeys(config.queue.name).uploaded(cacheKeyOf('/img/2')), '1');

    const writes = countWrites(client!);
    const paths = Array.from({ length: 10 }, (_, i) => `/img/${i}`);
    const outcomes = await Promise.all(paths.map((p) => enqueuer!.enqueue(image(p))));
    // bytes and dedup checks in one pipeline, the new jobs in one addBulk
    expect(writes()).toBe(2);
    expect(outcomes).toEqual(paths.map((p) => (p === '/img/2' ? 'uploaded' : 'queued')));
    const prefix = `bull:{${config.queue.name}}:${config.queue.name}`;
    for (const p of paths) expect(await client!.exists(`${prefix}:${cacheKeyOf(p)}`)).toBe(p === '/img/2' ? 0 : 1);
    // and an image already queued is found so in a batch, as one by one
    expect(await enqueuer!.enqueue(image('/img/0'))).toBe('already-queued');
  });

  it('gives an image its window on top of the shortest ENQUEUE_TIMEOUT_MS', async () => {
    await start(50, { ENQUEUE_TIMEOUT_MS: '10', ENQUEUE_WAIT_MS: '0' });
    expect(await enqueuer!.enqueue(image('/short-timeout'))).toBe('queued');
  });

  it('sends a full batch at once, whatever the window', async () => {
    // a window longer than the test's timeout: only a full batch is ever sent
    await start(3_600_000);
    const outcomes = await Promise.all(Array.from({ length: 64 }, (_, i) => enqueuer!.enqueue(image(`/full/${i}`))));
    expect(new Set(outcomes)).toEqual(new Set(['queued']));
  });
});
