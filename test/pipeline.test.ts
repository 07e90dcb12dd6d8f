import { createHash } from 'node:crypto';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { makePngOfSize } from './support/png.mjs';
import { spawnRedisServer } from './support/redis-server.js';
import { settledBucket } from './support/stack.js';
import { useStack } from './support/use-stack.js';
import { waitFor } from './support/wait.js';

// The cache-on-write contract end to end: the client gets imgproxy's response untouched; every
// complete cacheable 200 lands at md5(path), byte-exact with its metadata; nothing else lands.

const { start, stop } = useStack({ logLines: Infinity });

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

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
