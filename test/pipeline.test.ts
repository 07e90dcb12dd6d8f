import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { cacheKeyOf, crc32Of, decodePayload, redisKeys } from '@imgproxy-cache/shared';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { freePort } from './support/free-port.js';
import { makePng, makePngOfSize } from './support/png.mjs';
import { spawnRedisServer } from './support/redis-server.js';
import type { Stack } from './support/stack.js';
import { useStack } from './support/use-stack.js';
import { waitFor } from './support/wait.js';

// The cache-on-write contract end to end: the client gets imgproxy's response untouched; every
// complete cacheable 200 lands at md5(path), byte-exact with its metadata; nothing else lands.

const { start, stop } = useStack({ logLines: Infinity });

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

/** Sends bytes as they are and returns everything the proxy answers until it closes. */
function rawRequest(port: number, text: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(text));
    let data = '';
    socket.on('data', (chunk) => (data += chunk.toString('latin1')));
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
  });
}

/** Waits for the request's cache outcome and for the queue to empty, then returns the bucket. */
async function settledBucket(s: Stack, path: string, expectedOutcome: string): Promise<string[]> {
  expect(await s.outcomeOf(path)).toBe(expectedOutcome);
  await s.drained();
  return s.keys();
}

describe('a cacheable 200', () => {
  it('reaches the client byte-exact and lands at S3_FOLDER/md5(path) with its metadata', async () => {
    const s = await start({ env: { S3_FOLDER: 'processed/' } });
    const path = '/sig123/rs:fit:300:300/plain/https://example.com/cat.jpg@png';
    const reply = await s.get(path);
    expect(reply.status).toBe(200);
    expect(reply.body.equals(s.stub.imageFor(path))).toBe(true);
    expect(reply.headers['content-type']).toBe('image/png');
    expect(reply.headers['cache-control']).toBe('max-age=31536000, public');
    expect(reply.headers['content-disposition']).toBe('inline; filename="image.png"');
    expect(reply.headers['content-length']).toBe(String(s.stub.imageFor(path).length));
    expect(reply.headers.etag).toBeDefined();

    const stored = await s.waitForObject(path);
    expect(stored.body.equals(s.stub.imageFor(path))).toBe(true);
    expect(stored.contentType).toBe('image/png');
    expect(stored.cacheControl).toBe('max-age=31536000, public');
    expect(stored.contentDisposition).toBe('inline; filename="image.png"');
    expect(await s.keys()).toEqual([`processed/${md5(path)}`]);
    // Content-MD5 went with the bytes, so the server could check them.
    const put = s.tap.puts()[0]!;
    expect(put.headers['content-md5']).toBe(createHash('md5').update(stored.body).digest('base64'));
    // S3_CHECKSUM_MODE=WHEN_REQUIRED: no CRC32 trailer that R2, B2 or older MinIO would reject
    expect(Object.keys(put.headers).filter((h) => h.startsWith('x-amz-checksum') || h === 'x-amz-sdk-checksum-algorithm')).toEqual([]);
    // the original tool's log line (written once the upload is recorded, just after the PUT)
    const line = `Uploaded to S3 path=${path} bucket=${s.bucket} key=processed/${md5(path)}`;
    await waitFor(() => s.logs.some((l) => l.msg === line), { what: 'the upload log line' });
  });

  it('is stored under the key the Elixir client computes for its signed path', async () => {
    const s = await start();
    const path = '/Rn0DwoqGtsPB3qvMzrv5R9SuZerzOJ1WlIhcdCX4FtQ/rs:fit:300:300:1/dpr:2/g:ce/aHR0cHM6Ly9leGFtcGxlLmNvbS9pbWFnZXMvY2F0LmpwZw==.webp';
    await s.get(path);
    await s.waitForObject(path);
    expect(await s.keys()).toEqual(['2ae94e83267f73e3bdf6c15bf1b7f30d']);
  });

  it('is keyed by the raw path: percent-encoding kept, query string left out but forwarded', async () => {
    const s = await start();
    const path = '/unsafe/rs:fit:100:100/plain/https%3A%2F%2Fexample.com%2Fa%20b.jpg@webp';
    const reply = await s.get(`${path}?cachebuster=1`);
    expect(reply.status).toBe(200);
    expect(s.stub.requests.at(-1)!.url).toBe(`${path}?cachebuster=1`);
    await s.waitForObject(path);
    expect(await s.keys()).toEqual(['886314a38e0ec43543e3e253d94b3465']);
  });

  it('streams to the client before imgproxy has finished sending', async () => {
    const s = await start();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const image = makePngOfSize('slow', 64 * 1024);
    s.stub.on('/slow/', () => ({
      headers: { 'content-type': 'image/png', 'cache-control': 'max-age=60, public' },
      body: image,
      pieceSize: 1024,
      holdAfterFirstPiece: held,
    }));
    const res = await request(`${s.baseUrl}/slow/plain/x.png@png`);
    expect(res.statusCode).toBe(200);
    const chunks: Buffer[] = [];
    const iterator = res.body[Symbol.asyncIterator]();
    const first = await iterator.next(); // arrives while imgproxy is still holding the rest
    chunks.push(first.value as Buffer);
    expect(Buffer.concat(chunks).length).toBeGreaterThan(0);
    expect(Buffer.concat(chunks).length).toBeLessThan(image.length);
    release();
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) chunks.push(next.value as Buffer);
    expect(Buffer.concat(chunks).equals(image)).toBe(true);
    await s.waitForObject('/slow/plain/x.png@png', image);
  });

  it('is written once for five requests, one after another or all at once', async () => {
    const s = await start();
    const one = '/sig/plain/https://example.com/one.jpg@png';
    for (let i = 0; i < 5; i++) expect((await s.get(one)).status).toBe(200);
    const many = '/sig/plain/https://example.com/many.jpg@png';
    await Promise.all(Array.from({ length: 5 }, () => s.get(many)));
    await s.waitForObject(one);
    await s.waitForObject(many);
    for (let i = 1; i <= 5; i++) {
      await s.outcomeOf(one, i);
      await s.outcomeOf(many, i);
    }
    await s.drained();
    const putsOf = (path: string) => s.tap.puts().filter((r) => r.url.split('?')[0]!.endsWith(`/${md5(path)}`)).length;
    expect(putsOf(one)).toBe(1);
    expect(putsOf(many)).toBe(1);
    // one after another: handed off once. At once: every response that found no job yet stores its
    // bytes and adds the job (BullMQ keeps the first); coalescing makes that one response.
    expect(s.outcomes.filter((o) => o.path === one && o.outcome === 'queued')).toHaveLength(1);
  });

  it('remembers images it handed off: repeated requests skip the copy and Redis', async () => {
    const own = await spawnRedisServer(); // to count the commands the proxy sends
    try {
      const s = await start({ noUploader: true, redisUrl: own.url });
      const commands = async () => [...(await s.redis.info('commandstats')).matchAll(/calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
      const path = '/sig/plain/https://example.com/popular.jpg@png';
      expect((await s.get(path)).body.equals(s.stub.imageFor(path))).toBe(true);
      expect(await s.outcomeOf(path, 1)).toBe('queued');
      const before = await commands();
      for (let i = 2; i <= 3; i++) {
        expect((await s.get(path)).body.equals(s.stub.imageFor(path))).toBe(true);
        expect(await s.outcomeOf(path, i)).toBe('deduped');
      }
      expect(await commands()).toBe(before + 1); // our own INFO only
      await stop();
    } finally {
      await own.stop();
    }
  });

  it('lands for 50 distinct images requested concurrently', async () => {
    const s = await start({ env: { UPLOAD_CONCURRENCY: '8' } });
    const paths = Array.from({ length: 50 }, (_, i) => `/sig/rs:fit:${i}:${i}/plain/https://example.com/${i}.jpg@png`);
    const replies = await Promise.all(paths.map((p) => s.get(p)));
    for (const [i, r] of replies.entries()) expect(r.body.equals(s.stub.imageFor(paths[i]!))).toBe(true);
    for (const p of paths) {
      const stored = await s.waitForObject(p);
      expect(stored.body.equals(s.stub.imageFor(p))).toBe(true);
    }
    expect(await s.keys()).toEqual(paths.map(md5).sort());
  });

  it('stores a Vary: Accept response when the URL names the format and imgproxy answered it', async () => {
    const s = await start({ stub: { vary: 'Accept' } });
    const plain = '/sig/plain/https://example.com/a.jpg@webp';
    const base64 = `/sig/rs:fit:10:10/${Buffer.from('https://example.com/a.jpg').toString('base64url')}.png`;
    await s.get(plain, { headers: { accept: 'image/avif,image/webp,*/*' } });
    await s.get(base64);
    expect((await s.waitForObject(plain)).contentType).toBe('image/webp');
    expect((await s.waitForObject(base64)).contentType).toBe('image/png');
  });
});

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

describe('nothing else lands', () => {
  it('HEAD is forwarded as HEAD and never stored', async () => {
    const s = await start();
    const path = '/sig/plain/https://example.com/head.jpg@png';
    const reply = await s.get(path, { method: 'HEAD' });
    expect(reply.status).toBe(200);
    expect(reply.body.length).toBe(0);
    expect(reply.headers['content-length']).toBe(String(s.stub.imageFor(path).length));
    expect(s.stub.requests.at(-1)!.method).toBe('HEAD');
    expect(await settledBucket(s, path, 'method')).toEqual([]);
    expect(s.logs).toContainEqual(expect.objectContaining({ level: 20, msg: 'Not caching response', path, reason: 'method' }));
  });

  it('OPTIONS is forwarded and never stored', async () => {
    const s = await start();
    const path = '/sig/plain/https://example.com/options.jpg@png';
    expect((await s.get(path, { method: 'OPTIONS' })).status).toBe(200);
    expect(s.stub.requests.at(-1)!.method).toBe('OPTIONS');
    expect(await settledBucket(s, path, 'method')).toEqual([]);
  });

  it('304 Not Modified passes through and is not stored', async () => {
    const s = await start();
    const path = '/sig/plain/https://example.com/etag.jpg@png';
    const etag = s.stub.etagFor(path);
    const reply = await s.get(path, { headers: { 'if-none-match': etag } });
    expect(reply.status).toBe(304);
    expect(s.stub.requests.at(-1)!.headers['if-none-match']).toBe(etag);
    expect(await settledBucket(s, path, 'status')).toEqual([]);
  });

  it.each([403, 404, 422, 429, 500, 502, 503])('a %i passes through with its body and is not stored', async (status) => {
    const s = await start();
    const path = `/sig/status/${status}`;
    s.stub.on(path, () => ({ status, headers: { 'content-type': 'text/plain' }, body: Buffer.from(`imgproxy says ${status}`) }));
    const reply = await s.get(path);
    expect(reply.status).toBe(status);
    expect(reply.body.toString()).toBe(`imgproxy says ${status}`);
    expect(await settledBucket(s, path, 'status')).toEqual([]);
    expect(s.logs).toContainEqual(expect.objectContaining({ level: 20, msg: 'Not caching response', path, reason: 'status', status }));
  });

  it('an image served with 4xx (fallback image with IMGPROXY_FALLBACK_IMAGE_HTTP_CODE) is not stored', async () => {
    const s = await start();
    const path = '/sig/fallback404';
    s.stub.on(path, () => ({ status: 404, headers: { 'content-type': 'image/png' }, body: s.stub.imageFor('x') }));
    expect((await s.get(path)).status).toBe(404);
    expect(await settledBucket(s, path, 'status')).toEqual([]);
  });

  it('a fallback image served with 200 (Fallback-Image: 1) is not stored', async () => {
    const s = await start();
    const path = '/sig/fallback200';
    s.stub.on(path, () => ({
      headers: { 'content-type': 'image/png', 'cache-control': 'max-age=60, public', 'fallback-image': '1' },
      body: s.stub.imageFor('x'),
    }));
    expect((await s.get(path)).status).toBe(200);
    expect(await settledBucket(s, path, 'fallback-image')).toEqual([]);
  });

  it.each([
    ['with Content-Length', false],
    ['chunked', true],
  ])('a body cut short by imgproxy (%s) fails the client response and is not stored', async (_name, chunked) => {
    const s = await start();
    const path = '/sig/cut/plain/x.jpg@png';
    const image = makePngOfSize('cut', 100_000);
    s.stub.on(path, () => ({ headers: { 'content-type': 'image/png' }, body: image, chunked, pieceSize: 16_384, cutAfter: 40_000 }));
    await expect(s.get(path)).rejects.toThrow();
    expect(await settledBucket(s, path, 'incomplete')).toEqual([]);
  });

  it.each([
    ['with Content-Length', false, 'too-large'],
    ['chunked', true, 'too-large'],
  ])('a body over CACHE_MAX_BYTES (%s) streams in full and is not stored', async (_name, chunked, outcome) => {
    const s = await start({ env: { CACHE_MAX_BYTES: '50000' } });
    const path = '/sig/large/plain/x.jpg@png';
    const image = makePngOfSize('large', 80_000);
    s.stub.on(path, () => ({ headers: { 'content-type': 'image/png', 'cache-control': 'max-age=60' }, body: image, chunked, pieceSize: 8192 }));
    const reply = await s.get(path);
    expect(reply.body.equals(image)).toBe(true);
    expect(await settledBucket(s, path, outcome)).toEqual([]);
  });

  it('a response imgproxy marks no-cache (IMGPROXY_TTL=0) is not stored, and the skip is logged at debug', async () => {
    const s = await start({ stub: { ttl: 0 } });
    const path = '/sig/plain/https://example.com/ttl0.jpg@png';
    const reply = await s.get(path);
    expect(reply.headers['cache-control']).toBe('no-cache');
    expect(await settledBucket(s, path, 'cache-control')).toEqual([]);
    expect(s.logs).toContainEqual(expect.objectContaining({ level: 20, msg: 'Not caching response', path, reason: 'cache-control' }));
  });

  it('Vary: Accept with no format in the URL is not stored (AUTO_WEBP picks per client)', async () => {
    const s = await start({ stub: { vary: 'Accept' } });
    const path = '/sig/rs:fit:10:10/plain/https://example.com/auto.jpg';
    expect((await s.get(path, { headers: { accept: 'image/webp' } })).status).toBe(200);
    expect(await settledBucket(s, path, 'vary-accept-no-format')).toEqual([]);
  });

  it('Vary: Accept where ENFORCE_WEBP answered WebP for a .png URL is not stored', async () => {
    const s = await start({ stub: { vary: 'Accept', enforceFormat: 'webp' } });
    const path = '/sig/plain/https://example.com/enforce.jpg@png';
    expect((await s.get(path)).headers['content-type']).toBe('image/webp');
    expect(await settledBucket(s, path, 'vary-accept-format-mismatch')).toEqual([]);
  });

  it('a response varying on client hints is not stored', async () => {
    const s = await start({ stub: { vary: 'Accept, Sec-CH-DPR, DPR, Sec-CH-Width, Width' } });
    const path = '/sig/plain/https://example.com/hints.jpg@png';
    await s.get(path, { headers: { dpr: '2' } });
    expect(await settledBucket(s, path, 'vary')).toEqual([]);
  });
});

describe('the proxy in between', () => {
  it('passes the request headers imgproxy uses, adds X-Forwarded-For, strips hop-by-hop', async () => {
    const s = await start();
    const path = '/sig/plain/https://example.com/headers.jpg@png';
    await s.get(path, {
      headers: {
        accept: 'image/avif,image/webp',
        authorization: 'Bearer imgproxy-secret',
        'if-modified-since': 'Wed, 21 Oct 2015 07:28:00 GMT',
        'x-request-id': 'req-42',
        'sec-ch-dpr': '2',
        dpr: '2',
        'x-forwarded-for': '203.0.113.7',
      },
    });
    const seen = s.stub.requests.at(-1)!.headers;
    expect(seen.accept).toBe('image/avif,image/webp');
    expect(seen.authorization).toBe('Bearer imgproxy-secret');
    expect(seen['if-modified-since']).toBe('Wed, 21 Oct 2015 07:28:00 GMT');
    expect(seen['x-request-id']).toBe('req-42');
    expect(seen['sec-ch-dpr']).toBe('2');
    expect(seen.dpr).toBe('2');
    expect(seen['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');

    // Connection and the headers it names describe one hop (undici's client would rewrite them).
    const raw = await rawRequest(s.proxy.port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close, x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\n`);
    expect(raw).toMatch(/^HTTP\/1\.1 200 /);
    const hop = s.stub.requests.at(-1)!.headers;
    expect(hop['x-hop']).toBeUndefined();
    expect(hop['keep-alive']).toBeUndefined();
    expect(hop.connection).not.toMatch(/x-hop/);
  });

  it('strips hop-by-hop headers from the response', async () => {
    const s = await start();
    const path = '/sig/hop';
    s.stub.on(path, () => ({
      headers: { 'content-type': 'image/png', connection: 'x-upstream-hop', 'x-upstream-hop': '1', 'x-kept': 'yes' },
      body: s.stub.imageFor(path),
    }));
    const reply = await s.get(path);
    expect(reply.headers['x-upstream-hop']).toBeUndefined();
    expect(reply.headers['x-kept']).toBe('yes');
  });

  it.each(['POST', 'PUT', 'DELETE', 'PATCH'])('answers %s with 405 without calling imgproxy', async (method) => {
    const s = await start();
    const reply = await s.get('/sig/plain/x.jpg@png', { method });
    expect(reply.status).toBe(405);
    expect(reply.headers.allow).toBe('GET, HEAD, OPTIONS');
    expect(reply.body.toString()).toMatch(/not allowed/);
    expect(s.stub.requests).toHaveLength(0);
  });

  it('refuses an absolute-form request target (never forwards to another host)', async () => {
    const s = await start();
    const raw = await rawRequest(s.proxy.port, 'GET http://evil.example/sig/plain/x.jpg@png HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n');
    expect(raw).toMatch(/^HTTP\/1\.1 400 /);
    expect(s.stub.requests).toHaveLength(0);
  });

  it('prepends the path of IMGPROXY_URL to what it forwards; the key stays the client’s path', async () => {
    const s = await start({ imgproxyPath: '/imgproxy/' });
    const path = '/sig/plain/https://example.com/prefixed.jpg@png';
    s.stub.on('/imgproxy/sig/', (req) => ({ headers: { 'content-type': 'image/png' }, body: s.stub.imageFor(req.url!) }));
    const reply = await s.get(path);
    expect(s.stub.requests.at(-1)!.url).toBe(`/imgproxy${path}`);
    expect(reply.body.equals(s.stub.imageFor(`/imgproxy${path}`))).toBe(true);
    await s.waitForObject(path, s.stub.imageFor(`/imgproxy${path}`));
    expect(await s.keys()).toEqual([md5(path)]);
  });

  it('answers 502 with a reason when imgproxy is down', async () => {
    const s = await start();
    await s.stub.close();
    const reply = await s.get('/sig/plain/x.jpg@png');
    expect(reply.status).toBe(502);
    expect(reply.body.toString()).toMatch(/imgproxy is unreachable/);
  });

  it('passes GET /health through to imgproxy', async () => {
    const s = await start();
    const ok = await s.get('/health');
    expect(ok.status).toBe(200);
    expect(ok.body.toString()).toBe('imgproxy is running');
    s.stub.healthy = false;
    expect((await s.get('/health')).status).toBe(500);
    expect(await settledBucket(s, '/health', 'cache-control')).toEqual([]);
  });
});
