import { cacheKeyOf, crc32Of, createLogger, createProducerRedis, encodePayload, loadConfig, type Redis, redisKeys } from '@imgproxy-cache/shared';
import { Redis as IORedis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { type EnqueueOutcome, type EnqueueRequest, RedisEnqueuer } from '../apps/proxy/src/handoff/enqueue.js';
import { spawnRedisServer, type TestRedis } from './support/redis-server.js';
import { startTcpTap, type TcpTap } from './support/tcp-tap.js';

// The batched hand-off (ENQUEUE_GATHER_MS) against a real Redis: the images completed within the
// window reach Redis in one round trip for their bytes and dedup checks and one for their jobs,
// and each still gets its own outcome. The trips are counted by a relay between the proxy's
// connection and redis-server.

let redis: TestRedis | undefined;
let tap: TcpTap | undefined;
let client: Redis | undefined;
let enqueuer: RedisEnqueuer | undefined;
afterEach(async () => {
  await enqueuer?.close();
  client?.disconnect();
  await tap?.close();
  await redis?.stop();
  redis = tap = client = enqueuer = undefined;
});

function image(path: string): EnqueueRequest {
  const body = Buffer.from(`the image at ${path}`);
  const payload = encodePayload(
    { contentType: 'image/webp', cacheControl: null, contentDisposition: null, size: body.length, crc32: crc32Of(body), receivedAt: Date.now() },
    [body],
  );
  return { data: { cacheKey: cacheKeyOf(path), path }, payload };
}

/** Round trips the proxy's connection makes to Redis while `work` runs. */
async function tripsOf<T>(work: () => Promise<T>): Promise<{ result: T; trips: number }> {
  const before = tap!.roundTrips;
  const result = await work();
  return { result, trips: tap!.roundTrips - before };
}

async function start(gatherMs: number, env: Record<string, string> = {}) {
  redis = await spawnRedisServer();
  tap = await startTcpTap(redis.port!);
  const loaded = loadConfig({ REDIS_URL: tap.url, ...env }, 'proxy');
  const config = { ...loaded, proxy: { ...loaded.proxy, enqueueGatherMs: gatherMs } };
  client = createProducerRedis(tap.url);
  await new Promise<void>((resolve) => client!.once('ready', () => resolve()));
  enqueuer = new RedisEnqueuer(client, client, config, createLogger('proxy', 'silent'));
  return config;
}

describe('the batched hand-off', () => {
  it('hands off the images completed within ENQUEUE_GATHER_MS in two round trips, each with its own outcome', async () => {
    // a window that ten completions a Redis round trip apart fall well within
    const config = await start(1_000);
    // the first hand-off loads the scripts and readies BullMQ's queue
    expect(await enqueuer!.enqueue(image('/warm-up'))).toBe('queued');
    await client!.set(redisKeys(config.queue.name).uploaded(cacheKeyOf('/img/2')), '1');

    // each image completes a round trip (on a connection of the test's own) after the one before:
    // apart, they would go to Redis apart
    const beside = new IORedis(redis!.url);
    const paths = Array.from({ length: 10 }, (_, i) => `/img/${i}`);
    const { result: outcomes, trips } = await tripsOf(async () => {
      const handOffs: Promise<EnqueueOutcome>[] = [];
      for (const p of paths) {
        handOffs.push(enqueuer!.enqueue(image(p)));
        await beside.ping();
      }
      return Promise.all(handOffs);
    }).finally(() => beside.disconnect());
    // bytes and dedup checks in one pipeline, the new jobs in one addBulk
    expect(trips).toBe(2);
    expect(outcomes).toEqual(paths.map((p) => (p === '/img/2' ? 'uploaded' : 'queued')));
    const prefix = `bull:{${config.queue.name}}:${config.queue.name}`;
    for (const p of paths) expect(await client!.exists(`${prefix}:${cacheKeyOf(p)}`)).toBe(p === '/img/2' ? 0 : 1);
    // and an image already queued is found so in a batch, as one by one
    expect(await enqueuer!.enqueue(image('/img/0'))).toBe('already-queued');
  });

  it('without a window, images completed one after another go alone: two round trips each, one for an image uploaded already', async () => {
    const config = await start(0);
    expect(await enqueuer!.enqueue(image('/warm-up'))).toBe('queued');
    await client!.set(redisKeys(config.queue.name).uploaded(cacheKeyOf('/one/2')), '1');
    const paths = Array.from({ length: 10 }, (_, i) => `/one/${i}`);
    const { result: outcomes, trips } = await tripsOf(async () => {
      const each: EnqueueOutcome[] = [];
      for (const p of paths) each.push(await enqueuer!.enqueue(image(p)));
      return each;
    });
    expect(outcomes).toEqual(paths.map((p) => (p === '/one/2' ? 'uploaded' : 'queued')));
    expect(trips).toBe(2 * 9 + 1);
  });

  it('gives an image its window on top of the shortest ENQUEUE_TIMEOUT_MS', async () => {
    // a window twice the timeout: counted against the timeout, the image would time out in it
    await start(2_000, { ENQUEUE_TIMEOUT_MS: '1000', ENQUEUE_WAIT_MS: '0' });
    expect(await enqueuer!.enqueue(image('/short-timeout'))).toBe('queued');
  });

  it('sends a full batch at once, whatever the window', async () => {
    // a window longer than the test's timeout: only a full batch is ever sent
    await start(3_600_000);
    const outcomes = await Promise.all(Array.from({ length: 64 }, (_, i) => enqueuer!.enqueue(image(`/full/${i}`))));
    expect(new Set(outcomes)).toEqual(new Set(['queued']));
  });
});
