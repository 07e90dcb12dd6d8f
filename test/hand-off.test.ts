import { createHash } from 'node:crypto';
import { cacheKeyOf, crc32Of, decodePayload, redisKeys } from '@imgproxy-cache/shared';
import { describe, expect, it } from 'vitest';
import { freePort } from './support/free-port.js';
import { makePng } from './support/png.mjs';
import { spawnRedisServer } from './support/redis-server.js';
import { useStack } from './support/use-stack.js';
import { waitFor } from './support/wait.js';

// The hand-off end to end: the proxy tees a cacheable image's bytes into Redis with its job, never
// at the client's expense, whatever Redis does (pipeline.test.ts has the contract itself).

const { start, stop } = useStack({ logLines: Infinity });

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

describe('the hand-off to the uploaders', () => {
  it('tees the bytes and their metadata into a key of their own with a TTL, and makes the job: waiting, with no uploader running', async () => {
    // CACHE_RECENT_KEYS=0: every request reaches Redis, whose dedup is under test here
    const s = await start({ noUploader: true, env: { CACHE_PAYLOAD_TTL_SEC: '3600', UPLOAD_ATTEMPTS: '4', UPLOAD_BACKOFF_MS: '500', CACHE_RECENT_KEYS: '0' } });
    const path = '/sig/plain/https://example.com/tee.jpg@png';
    const image = s.stub.imageFor(path);
    const reply = await s.get(path, { headers: { 'x-request-id': 'req-tee' } });
    expect(reply.body.equals(image)).toBe(true);
    expect(await s.outcomeOf(path)).toBe('queued');
    const key = md5(path);

    // the job exists as soon as the hand-off returns: waiting, metadata only, the proxy's retry settings
    const job = (await s.queue.getJob(key))!;
    expect(await job.getState()).toBe('waiting');
    expect(job.data).toEqual({ cacheKey: key, path, requestId: 'req-tee' });
    expect(job.opts).toMatchObject({ attempts: 4, backoff: { type: 'exponential', delay: 500, jitter: 0.5 } });

    const payload = redisKeys(s.config.queue.name).payload(key);
    const decoded = decodePayload((await s.redis.getBuffer(payload))!);
    expect(decoded).toEqual({
      body: image,
      meta: {
        contentType: 'image/png',
        cacheControl: 'max-age=31536000, public',
        contentDisposition: 'inline; filename="image.png"',
        size: image.length,
        crc32: crc32Of(image),
        receivedAt: expect.any(Number),
        requestId: 'req-tee',
        // imgproxy's other stored headers: its validators, CSP and Vary, here its ETag
        headers: { etag: s.stub.etagFor(path) },
      },
    });
    const ttl = await s.redis.ttl(payload);
    expect(ttl).toBeGreaterThan(3500);
    expect(ttl).toBeLessThanOrEqual(3600);

    // a second request while the job waits tees and enqueues nothing
    await s.get(path);
    expect(await s.outcomeOf(path, 2)).toBe('already-queued');
    expect(await s.queue.getJobCounts('waiting')).toEqual({ waiting: 1 });
    expect(await s.redis.keys(`*:staged:*`)).toEqual([]);
  });

  it('stores new bytes for a waiting job whose bytes expired, and the job uploads them', async () => {
    const s = await start({ noUploader: true, env: { CACHE_RECENT_KEYS: '0' } });
    const path = '/sig/plain/https://example.com/expired.jpg@png';
    await s.get(path);
    expect(await s.outcomeOf(path)).toBe('queued');
    const payload = redisKeys(s.config.queue.name).payload(md5(path));
    await s.redis.del(payload); // as if its TTL ran out (or PAYLOAD_REDIS_URL evicted it)
    await s.get(path);
    expect(await s.outcomeOf(path, 2)).toBe('refilled');
    expect(await s.redis.exists(payload)).toBe(1);
    expect(await s.queue.getJobCounts('waiting')).toEqual({ waiting: 1 }); // the same job
    await s.startUploader();
    expect((await s.waitForObject(path)).body.equals(s.stub.imageFor(path))).toBe(true);
    expect(await s.queue.getJobCounts('failed', 'completed')).toEqual({ failed: 0, completed: 0 });
  });

  it('serves every image at once while Redis is down, and starts caching by itself when Redis appears', async () => {
    const port = await freePort();
    // a Redis away for longer than ENQUEUE_WAIT_MS
    const s = await start({ noUploader: true, env: { REDIS_URL: `redis://127.0.0.1:${port}`, ENQUEUE_WAIT_MS: '200' } });
    const down = '/sig/plain/https://example.com/down.jpg@png';
    const reply = await s.get(down);
    expect(reply.body.equals(s.stub.imageFor(down))).toBe(true);
    expect(await s.outcomeOf(down)).toBe('redis-down');
    expect(s.logs).toContainEqual(expect.objectContaining({ level: 40, outcome: 'redis-down', path: down }));

    const redis = await spawnRedisServer(port);
    try {
      let n = 0;
      await waitFor(
        async () => {
          const path = `/sig/plain/https://example.com/up-${n++}.jpg@png`;
          expect((await s.get(path)).status).toBe(200);
          return (await s.outcomeOf(path)) === 'queued';
        },
        { what: 'caching to resume', intervalMs: 100 },
      );
      // the image whose hand-off failed is not remembered: its next request caches it
      await s.get(down);
      expect(await s.outcomeOf(down, 2)).toBe('queued');
    } finally {
      await redis.stop();
    }
  });

  it('gives up on a Redis that does not answer within ENQUEUE_WAIT_MS, without touching the client', async () => {
    const own = await spawnRedisServer(); // CLIENT PAUSE would stall every other test's Redis
    try {
      const s = await start({ noUploader: true, redisUrl: own.url, env: { ENQUEUE_TIMEOUT_MS: '100', ENQUEUE_WAIT_MS: '300' } });
      const path = '/sig/plain/https://example.com/paused.jpg@png';
      await s.redis.call('CLIENT', 'PAUSE', '1500', 'ALL');
      const reply = await s.get(path);
      expect(reply.body.equals(s.stub.imageFor(path))).toBe(true);
      expect(await s.outcomeOf(path)).toBe('timeout');
      await stop();
    } finally {
      await own.stop();
    }
  });

  it('keeps an image while Redis does not answer, and hands it off once it does (within ENQUEUE_WAIT_MS)', async () => {
    const own = await spawnRedisServer();
    try {
      const s = await start({ noUploader: true, redisUrl: own.url, env: { ENQUEUE_TIMEOUT_MS: '100' } });
      const path = '/sig/plain/https://example.com/paused-kept.jpg@png';
      await s.redis.call('CLIENT', 'PAUSE', '1000', 'ALL');
      expect((await s.get(path)).body.equals(s.stub.imageFor(path))).toBe(true);
      expect(await s.outcomeOf(path)).toBe('queued');
      expect(await s.queue.getJobState(cacheKeyOf(path))).toBe('waiting');
      await stop();
    } finally {
      await own.stop();
    }
  });
  it('holds a bounded amount of image bytes for a Redis that does not answer; past it, new images are skipped at once', async () => {
    const own = await spawnRedisServer();
    try {
      const paths = Array.from({ length: 4 }, (_, i) => `/sig/busy/plain/https://example.com/${i}.jpg@png`);
      const firstTwo = paths.slice(0, 2).reduce((sum, p) => sum + makePng(p, 48, 48).length + 400, 0); // what the stub serves, and a header each
      const s = await start({
        noUploader: true,
        redisUrl: own.url,
        env: { ENQUEUE_TIMEOUT_MS: '100', ENQUEUE_WAIT_MS: '0', CACHE_RECENT_KEYS: '0' },
        enqueuerOptions: { maxPendingBytes: firstTwo }, // room for the first two images
      });
      own.child!.kill('SIGSTOP'); // alive, connected, silent
      try {
        for (const p of paths) expect((await s.get(p)).body.equals(s.stub.imageFor(p))).toBe(true);
        expect(await Promise.all(paths.map((p) => s.outcomeOf(p)))).toEqual(['timeout', 'timeout', 'redis-busy', 'redis-busy']);
        expect(s.logs).toContainEqual(expect.objectContaining({ level: 40, outcome: 'redis-busy', msg: expect.stringMatching(/^Redis is not answering/) }));
      } finally {
        own.child!.kill('SIGCONT');
      }
      // Redis gets the two images sent before it stopped, never the others; then caching resumes
      const keys = redisKeys(s.config.queue.name);
      await waitFor(async () => (await s.redis.exists(keys.payload(md5(paths[0]!)), keys.payload(md5(paths[1]!)))) === 2, { what: 'the two tees' });
      expect(await s.redis.exists(keys.payload(md5(paths[2]!)), keys.payload(md5(paths[3]!)))).toBe(0);
      let n = 0;
      await waitFor(
        async () => {
          const p = `/sig/busy/plain/https://example.com/after-${n++}.jpg@png`;
          await s.get(p);
          return (await s.outcomeOf(p)) === 'queued';
        },
        { what: 'caching to resume' },
      );
      await stop();
    } finally {
      await own.stop();
    }
  });
});
