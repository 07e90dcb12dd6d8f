import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { cacheKeyOf, createLogger, purgeChannel } from '@imgproxy-cache/shared';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { type RunningProxy, startProxy } from '../apps/proxy/src/server/start-proxy.js';
import { etagOf } from '../apps/proxy/src/stored/memory-tier.js';
import { S3RVER_CREDENTIALS } from './support/s3.js';
import { counter, rendered, type Stack } from './support/stack.js';
import { useStack } from './support/use-stack.js';
import { waitFor } from './support/wait.js';

// The memory tier (CACHE_MEMORY_BYTES): stored images served from the proxy's memory, without a
// bucket read. The bucket is s3rver behind the recording tap, imgproxy the stand-in.

const proxies: RunningProxy[] = [];
const TOKEN = 'purge-secret';
const { start } = useStack({
  defaults: { env: { CACHE_READ_THROUGH: 'true', UPLOAD_GATHER_MS: '0', ADMIN_TOKEN: TOKEN } },
  beforeStop: () => Promise.all(proxies.splice(0).map((p) => p.close(2_000))),
});
/** Another proxy on the same Redis and bucket, with a memory of its own. */
const another = async (s: Stack, proxy: Partial<Stack['config']['proxy']> = {}) => {
  const other = await startProxy({ ...s.config, proxy: { ...s.config.proxy, ...proxy } }, createLogger('proxy', 'silent'), {
    s3Credentials: S3RVER_CREDENTIALS,
  });
  proxies.push(other);
  return other;
};
const getFrom = async (proxy: RunningProxy, path: string, headers: Record<string, string> = {}) => {
  const res = await request(`http://127.0.0.1:${proxy.port}${path}`, { headers });
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
};
/** Bucket GETs of `path`'s key, as `status`. */
const bucketGets = (s: Stack, path: string) =>
  s.tap.requests.filter((r) => r.method === 'GET' && r.url.split('?')[0]!.endsWith(`/${cacheKeyOf(path)}`)).map((r) => r.status);
const gauge = async (proxy: RunningProxy, name: 'memoryBytes' | 'memoryEntries') => (await proxy.metrics[name].get()).values[0]?.value ?? 0;
/** An object written into the bucket by hand, with the headers given. */
const store = (s: Stack, path: string, body: Buffer, cacheControl?: string) =>
  s.s3.send(new PutObjectCommand({ Bucket: s.bucket, Key: s.keyFor(path), Body: body, ContentType: 'image/png', CacheControl: cacheControl }));

describe('the memory tier (CACHE_MEMORY_BYTES)', () => {
  it.each([3, 4] as const)(
    "serves an image it handed off from memory: byte-exact, imgproxy %s's headers and validators, 304 and HEAD, no bucket read",
    async (version) => {
      const s = await start({ stub: { version } });
      const path = '/sig/plain/https://example.com/hot.jpg@png';
      const miss = await s.get(path);
      expect(miss.headers['x-cache']).toBe('MISS');
      expect(await s.outcomeOf(path)).toBe('queued');
      const image = s.stub.imageFor(path);
      const etag = s.stub.etagFor(path);

      const hit = await s.get(path);
      expect(hit.status).toBe(200);
      expect(hit.body.equals(image)).toBe(true);
      expect(hit.headers).toMatchObject({
        'x-cache': 'HIT',
        'content-type': 'image/png',
        'cache-control': 'max-age=31536000, public',
        'content-disposition': miss.headers['content-disposition'],
        'content-length': String(image.length),
        etag,
      });
      const notModified = await s.get(path, { headers: { 'if-none-match': etag } });
      expect(notModified.status).toBe(304);
      expect(notModified.body.length).toBe(0);
      expect(notModified.headers).toMatchObject({ etag, 'x-cache': 'HIT', 'cache-control': 'max-age=31536000, public' });
      expect((await s.get(path, { headers: { 'if-none-match': '"other"' } })).status).toBe(200);
      // Last-Modified: imgproxy's, when it sent one (4 does; 3 without IMGPROXY_USE_LAST_MODIFIED does not)
      expect(hit.headers['last-modified']).toBe(miss.headers['last-modified']);
      if (version === 4) expect((await s.get(path, { headers: { 'if-modified-since': String(miss.headers['last-modified']) } })).status).toBe(304);
      expect((await s.get(path, { headers: { 'if-modified-since': 'Thu, 01 Jan 2015 00:00:00 GMT' } })).status).toBe(200);
      const head = await s.get(path, { method: 'HEAD' });
      expect(head).toMatchObject({ status: 200, body: Buffer.alloc(0) });
      expect(head.headers).toMatchObject({ 'x-cache': 'HIT', etag, 'content-length': String(image.length) });

      expect(rendered(s, path)).toBe(1);
      expect(bucketGets(s, path)).toEqual([404]); // only the read of the first request
      expect(await counter(s.proxy, 'hits', 'memory')).toBe(version === 4 ? 6 : 5);
      expect(await counter(s.proxy, 'hits', 'bucket')).toBe(0);
      expect(await gauge(s.proxy, 'memoryEntries')).toBe(1);
      expect(await gauge(s.proxy, 'memoryBytes')).toBeGreaterThanOrEqual(image.length);
      // the object keeps imgproxy's ETag, so a client's copy stays current when the image is read from there
      await s.waitForObject(path);
      const stored = await s.s3.send(new HeadObjectCommand({ Bucket: s.bucket, Key: s.keyFor(path) }));
      expect(stored.Metadata?.etag).toBe(etag);
      expect(stored.ETag).toBe(etagOf(image));
      const other = await another(s);
      expect((await getFrom(other, path)).headers).toMatchObject({ 'x-cache': 'HIT', etag });
    },
  );

  it('keeps what a bucket read found; concurrent reads of one image share one GET', async () => {
    const s = await start();
    const path = '/sig/plain/https://example.com/shared-read.jpg@png';
    await s.get(path);
    await s.waitForObject(path);
    await s.drained();
    const other = await another(s);

    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    s.tap.fault = (r) => (r.method === 'GET' && r.url.includes(cacheKeyOf(path)) ? { kind: 'hold', until: held } : undefined);
    // requests that differ in a header imgproxy may answer differently are not coalesced as one
    // response: each reads the bucket, and those reads are shared
    const replies = [1, 2, 3, 4].map((n) => getFrom(other, path, { 'if-none-match': `"not-${n}"` }));
    await waitFor(async () => (await counter(other, 'bucketReadsShared')) === 3, { what: 'three requests to share the first one’s bucket read' });
    release();
    for (const reply of await Promise.all(replies)) {
      expect(reply.status).toBe(200);
      expect(reply.headers['x-cache']).toBe('HIT');
      expect(reply.body.equals(s.stub.imageFor(path))).toBe(true);
    }
    s.tap.fault = undefined;
    const before = bucketGets(s, path).length;
    expect((await getFrom(other, path)).headers['x-cache']).toBe('HIT');
    expect(bucketGets(s, path).length).toBe(before); // from memory now
    expect(bucketGets(s, path).slice(1)).toEqual([200]); // the other proxy read it once
    expect(await counter(other, 'hits', 'memory')).toBe(1);
    expect(await counter(other, 'hits', 'bucket')).toBe(4);
    expect(rendered(s, path)).toBe(1);
  });

  it('a purge removes the image from every proxy’s memory: the next request renders it anew', async () => {
    const s = await start();
    const path = '/sig/plain/https://example.com/purged-hot.jpg@png';
    await s.get(path);
    await s.waitForObject(path);
    await s.drained();
    const other = await another(s);
    await getFrom(other, path); // read from the bucket, kept
    await waitFor(async () => {
      const [, listeners] = (await s.redis.call('PUBSUB', 'NUMSUB', purgeChannel(s.config.queue.name))) as [string, number];
      return listeners === 2;
    });
    const reads = bucketGets(s, path).length;
    expect((await s.get(path)).headers['x-cache']).toBe('HIT');
    expect((await getFrom(other, path)).headers['x-cache']).toBe('HIT');
    expect(bucketGets(s, path).length).toBe(reads); // both from memory

    const res = await request(`http://127.0.0.1:${s.proxy.admin!.port}/cache${path}`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.statusCode).toBe(200);
    await res.body.arrayBuffer();
    for (const proxy of [s.proxy, other])
      await waitFor(async () => (await counter(proxy, 'memoryEvictions', 'purged')) === 1, { what: 'the purge to reach both proxies' });

    const renders = rendered(s, path);
    expect((await getFrom(other, path)).headers['x-cache']).toBe('MISS');
    expect(rendered(s, path)).toBe(renders + 1);
    expect(await gauge(other, 'memoryEntries')).toBe(0);
  });

  it('keeps nothing its stored Cache-Control forbids a shared cache, and reads again once max-age has run out', async () => {
    const s = await start();
    const body = Buffer.from('stored by hand');
    for (const cacheControl of ['private, max-age=600', 'no-cache', 'no-store']) {
      const path = `/sig/plain/https://example.com/${cacheControl.replace(/\W+/g, '-')}.jpg@png`;
      await store(s, path, body, cacheControl);
      for (const _ of [1, 2]) expect((await s.get(path)).headers).toMatchObject({ 'x-cache': 'HIT', 'cache-control': cacheControl });
      expect(bucketGets(s, path)).toEqual([200, 200]);
    }
    expect(await gauge(s.proxy, 'memoryEntries')).toBe(0);

    const path = '/sig/plain/https://example.com/short-lived.jpg@png';
    await store(s, path, body, 'max-age=1');
    await s.get(path);
    await s.get(path);
    expect(bucketGets(s, path)).toEqual([200]); // the second from memory
    await waitFor(async () => (await s.get(path)).headers['x-cache'] === 'HIT' && bucketGets(s, path).length === 2, {
      what: 'the entry to expire and the image to be read again',
    });
    expect(await counter(s.proxy, 'memoryEvictions', 'expired')).toBe(1);
  });

  it('holds at most CACHE_MEMORY_BYTES, least recently used out first', async () => {
    const image = Buffer.alloc(10_000, 7);
    // room for two of them, with what each entry is counted for beyond its body
    const s = await start({ env: { CACHE_MEMORY_BYTES: String(2 * (image.length + 512)) } });
    const [a, b, c] = ['a', 'b', 'c'].map((n) => `/sig/plain/https://example.com/bounded-${n}.jpg@png`) as [string, string, string];
    for (const path of [a, b, c]) await store(s, path, image, 'max-age=3600');
    for (const path of [a, b, c]) await s.get(path);
    expect(await gauge(s.proxy, 'memoryEntries')).toBe(2);
    expect(await gauge(s.proxy, 'memoryBytes')).toBeLessThanOrEqual(2 * (image.length + 512));
    expect(await counter(s.proxy, 'memoryEvictions', 'space')).toBe(1);
    await s.get(c);
    expect(bucketGets(s, c)).toEqual([200]); // still held
    await s.get(a);
    expect(bucketGets(s, a)).toEqual([200, 200]); // let go for c, read again
  });

  it('CACHE_MEMORY_BYTES=0 turns it off: every hit is a bucket read', async () => {
    const s = await start({ env: { CACHE_MEMORY_BYTES: '0' } });
    const path = '/sig/plain/https://example.com/no-memory.jpg@png';
    await store(s, path, Buffer.from('stored'), 'max-age=3600');
    for (const _ of [1, 2, 3]) expect((await s.get(path)).headers['x-cache']).toBe('HIT');
    expect(bucketGets(s, path)).toEqual([200, 200, 200]);
    expect(await counter(s.proxy, 'hits', 'memory')).toBe(0);
  });

  it('read-through off: keeps no image it hands off (no hit is served), only what stale answers read', async () => {
    const s = await start({ env: { CACHE_READ_THROUGH: 'false' } });
    const path = '/sig/plain/https://example.com/stale-from-memory.jpg@png';
    await s.get(path);
    expect(await s.outcomeOf(path)).toBe('queued');
    await s.waitForObject(path);
    expect(await gauge(s.proxy, 'memoryEntries')).toBe(0);
    await s.stub.close();
    for (const _ of [1, 2, 3]) {
      const stale = await s.get(path);
      expect(stale.status).toBe(200);
      expect(stale.headers['x-cache']).toBe('STALE');
      expect(stale.body.equals(s.stub.imageFor(path))).toBe(true);
    }
    expect(bucketGets(s, path)).toEqual([200]); // the first stale answer's read; the others from memory
    expect(await counter(s.proxy, 'hits', 'memory')).toBe(2);
  });

  it('serves no image from memory whose format imgproxy negotiates, once it has seen it do so', async () => {
    const s = await start({ stub: { vary: 'Accept' } });
    // stored before imgproxy negotiated (by an older setup, or by hand), and read into memory
    const formatless = '/sig/rs:fit:10:10/plain/https://example.com/kept.jpg';
    await store(s, formatless, Buffer.from('stored earlier'), 'max-age=3600');
    expect((await s.get(formatless)).headers['x-cache']).toBe('HIT');
    expect(await gauge(s.proxy, 'memoryEntries')).toBe(1);
    await s.get('/sig/rs:fit:10:10/plain/https://example.com/other.jpg'); // imgproxy says Vary: Accept
    const renders = rendered(s, formatless);
    const reply = await s.get(formatless);
    expect(reply.headers['x-cache']).toBeUndefined(); // imgproxy's answer, as for every such path
    expect(rendered(s, formatless)).toBe(renders + 1);
  });

  it('splits CACHE_MEMORY_BYTES between PROXY_WORKERS', async () => {
    const { loadConfig } = await import('@imgproxy-cache/shared');
    const env = { IMGPROXY_URL: 'http://127.0.0.1:1', CACHE_MEMORY_BYTES: '90000000' };
    expect(loadConfig({ ...env, PROXY_WORKERS: '3' }, 'proxy').proxy.memoryBytes).toBe(30_000_000);
    expect(loadConfig(env, 'proxy').proxy.memoryBytes).toBe(90_000_000);
    expect(loadConfig({ IMGPROXY_URL: 'http://127.0.0.1:1' }, 'proxy').proxy.memoryBytes).toBe(64 * 2 ** 20);
  });
});
