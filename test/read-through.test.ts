import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { cacheKeyOf } from '@imgproxy-cache/shared';
import { request } from 'undici';
import { beforeAll, describe, expect, it } from 'vitest';
import { rendered, type Stack } from './support/stack.js';
import { useStack } from './support/use-stack.js';
import { waitFor } from './support/wait.js';

// The proxy as a whole cache: a stored image served from the bucket before imgproxy is asked
// (CACHE_READ_THROUGH), and instead of imgproxy's failure (stale). The bucket is s3rver behind the
// recording tap, imgproxy the stand-in.

/** The imgproxy stand-in's generation for the suite (3.x and 4.x headers: see imgproxy-stub.ts). */
let version: 3 | 4 = 3;
const { start } = useStack({ defaults: () => ({ stub: { version } }) });
const READ_THROUGH = { CACHE_READ_THROUGH: 'true', CACHE_RECENT_KEYS: '0', UPLOAD_GATHER_MS: '0' };

/** Requests for `path` the stand-in has received. */
/** Reads of the bucket for `path` (GET or HEAD of its key). */
const reads = (s: Stack, path: string) => s.tap.requests.filter((r) => r.method !== 'PUT' && r.url.split('?')[0]!.endsWith(`/${cacheKeyOf(path)}`));

// the suites depend on imgproxy's headers: they run against both generations
describe.each([3, 4] as const)('imgproxy %s', (generation) => {
  beforeAll(() => {
    version = generation;
  });

  describe('read-through (CACHE_READ_THROUGH=true)', () => {
    it('serves a stored image byte-exact with its stored headers and X-Cache: HIT, without asking imgproxy', async () => {
      // from the bucket: memory-tier.test.ts has the memory in front of it
      const s = await start({ env: { ...READ_THROUGH, CACHE_MEMORY_BYTES: '0' } });
      const path = '/sig/plain/https://example.com/stored.jpg@png';
      const first = await s.get(path);
      expect(first.headers['x-cache']).toBe('MISS');
      expect(await s.outcomeOf(path)).toBe('queued');
      await s.waitForObject(path);
      await s.drained();

      const hit = await s.get(path);
      expect(hit.status).toBe(200);
      expect(hit.body.equals(s.stub.imageFor(path))).toBe(true);
      expect(hit.headers).toMatchObject({
        'x-cache': 'HIT',
        'content-type': 'image/png',
        'cache-control': 'max-age=31536000, public',
        'content-disposition': first.headers['content-disposition'],
        'content-length': String(s.stub.imageFor(path).length),
        etag: s.stub.etagFor(path), // imgproxy's, as the MISS had it
      });
      expect(rendered(s, path)).toBe(1);
      expect(await s.outcomeOf(path, 2)).toBe('hit');
      // a miss and a hit: one bucket read each (a GET, never a HEAD then a GET)
      expect(reads(s, path).map((r) => `${r.method} ${r.status}`)).toEqual(['GET 404', 'GET 200']);
    });

    it('answers a matching If-None-Match with 304, and HEAD with the stored headers and no body', async () => {
      const s = await start({ env: READ_THROUGH });
      const path = '/sig/plain/https://example.com/conditional.jpg@png';
      await s.get(path);
      await s.waitForObject(path);
      const { headers } = await s.get(path);
      const etag = String(headers.etag);

      const notModified = await s.get(path, { headers: { 'if-none-match': etag } });
      expect(notModified.status).toBe(304);
      expect(notModified.body.length).toBe(0);
      expect(notModified.headers).toMatchObject({ etag, 'x-cache': 'HIT', 'cache-control': 'max-age=31536000, public' });
      expect((await s.get(path, { headers: { 'if-none-match': '"something-else"' } })).status).toBe(200);

      const head = await s.get(path, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.body.length).toBe(0);
      expect(head.headers).toMatchObject({ 'x-cache': 'HIT', etag, 'content-length': String(s.stub.imageFor(path).length) });
      expect(rendered(s, path)).toBe(1);
    });

    it('serves a stored image while imgproxy is stopped', async () => {
      const s = await start({ env: READ_THROUGH });
      const path = '/sig/plain/https://example.com/while-down.jpg@png';
      await s.get(path);
      await s.waitForObject(path);
      await s.stub.close();
      const hit = await s.get(path);
      expect(hit.status).toBe(200);
      expect(hit.headers['x-cache']).toBe('HIT');
      expect(hit.body.equals(s.stub.imageFor(path))).toBe(true);
    });

    it('sends requests on to imgproxy when the bucket hangs, after S3_READ_TIMEOUT_MS', async () => {
      const s = await start({ env: { ...READ_THROUGH, S3_READ_TIMEOUT_MS: '200' } });
      const path = '/sig/plain/https://example.com/hanging-bucket.jpg@png';
      let release!: () => void;
      const never = new Promise<void>((resolve) => (release = resolve));
      s.tap.fault = (r) => (r.method === 'GET' ? { kind: 'hold', until: never } : undefined);
      try {
        const reply = await s.get(path); // would hang with the bucket without the deadline
        expect(reply.status).toBe(200);
        expect(reply.headers['x-cache']).toBe('MISS');
        expect(reply.body.equals(s.stub.imageFor(path))).toBe(true);
        expect(rendered(s, path)).toBe(1);
      } finally {
        release();
      }
    });

    it('renders and stores again an image the bucket removed (a lifecycle rule, by hand)', async () => {
      // without the memory, which holds an image until a purge or its Cache-Control lets it go
      const s = await start({ env: { ...READ_THROUGH, CACHE_RECENT_KEYS: '100', CACHE_MEMORY_BYTES: '0' } });
      const path = '/sig/plain/https://example.com/expired.jpg@png';
      await s.get(path);
      await s.waitForObject(path);
      await s.drained();
      expect((await s.get(path)).headers['x-cache']).toBe('HIT');
      await s.s3.send(new DeleteObjectCommand({ Bucket: s.bucket, Key: s.keyFor(path) }));

      const miss = await s.get(path);
      expect(miss.headers['x-cache']).toBe('MISS');
      expect(miss.body.equals(s.stub.imageFor(path))).toBe(true);
      // the image was marked uploaded, and would be skipped: the miss says otherwise
      expect(await s.outcomeOf(path, 3)).toBe('queued');
      expect((await s.waitForObject(path)).body.equals(s.stub.imageFor(path))).toBe(true);
    });

    it('does not look in the bucket for an image whose format imgproxy negotiates (never stored)', async () => {
      const s = await start({ env: READ_THROUGH, stub: { vary: 'Accept' } });
      const negotiated = '/sig/rs:fit:10:10/plain/https://example.com/auto.jpg';
      await s.get(negotiated); // imgproxy says Vary: Accept
      expect(await s.outcomeOf(negotiated)).toBe('vary-accept-no-format');
      await s.get(negotiated);
      expect(reads(s, negotiated)).toHaveLength(1); // only the first, before imgproxy had said so
    });
  });

  describe('concurrent requests for one stored image', () => {
    it.each([
      ['a hit (read-through)', { CACHE_READ_THROUGH: 'true' }, 'HIT'],
      ['a stale answer (imgproxy down)', { CACHE_READ_THROUGH: 'false' }, 'STALE'],
    ])('each get the whole image from one bucket read: %s', async (_name, env, xCache) => {
      // the bucket's reads: the memory in front of it would answer all but the first
      const s = await start({ env: { ...env, CACHE_MEMORY_BYTES: '0', CACHE_RECENT_KEYS: '0', UPLOAD_GATHER_MS: '0' } });
      const path = '/sig/plain/https://example.com/concurrent-hit.jpg@png';
      await s.get(path);
      await s.waitForObject(path);
      await s.drained();
      if (xCache === 'STALE') await s.stub.close();
      const before = reads(s, path).length;
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      s.tap.fault = (r) => (r.method === 'GET' ? { kind: 'hold', until: held } : undefined);
      const replies = [1, 2, 3, 4, 5].map(() => s.get(path));
      // the first one reads the bucket; the others wait to share its answer
      await waitFor(() => s.proxy.waitingFollowers() === 4 && reads(s, path).length === before + 1, { what: 'four requests waiting on the first one’s read' });
      release();
      for (const reply of await Promise.all(replies)) {
        expect(reply.status).toBe(200);
        expect(reply.headers['x-cache']).toBe(xCache);
        expect(reply.body.equals(s.stub.imageFor(path))).toBe(true);
      }
      expect(reads(s, path)).toHaveLength(before + 1); // the five shared one
    });
  });

  describe('stale answers (read-through on or off)', () => {
    it.each([
      ['unreachable', (s: Stack) => s.stub.close()],
      ['answering 503', (s: Stack) => s.stub.on('/sig/', () => ({ status: 503, headers: { 'content-type': 'text/plain' }, body: Buffer.from('busy') }))],
      [
        'answering 502',
        (s: Stack) => s.stub.on('/sig/', () => ({ status: 502, headers: { 'content-type': 'text/plain' }, body: Buffer.from('source failed') })),
      ],
    ])('serves the stored image with X-Cache: STALE when imgproxy is %s', async (_name, fail) => {
      const s = await start({ env: { CACHE_RECENT_KEYS: '0', UPLOAD_GATHER_MS: '0' } });
      const path = '/sig/plain/https://example.com/stale.jpg@png';
      const fresh = await s.get(path);
      expect(fresh.headers['x-cache']).toBeUndefined(); // read-through is off
      await s.waitForObject(path);
      await fail(s);
      const stale = await s.get(path);
      expect(stale.status).toBe(200);
      expect(stale.headers).toMatchObject({ 'x-cache': 'STALE', 'content-type': 'image/png' });
      expect(stale.body.equals(s.stub.imageFor(path))).toBe(true);
      expect(await s.outcomeOf(path, 2)).toBe('stale');

      // an image the bucket does not hold: imgproxy's own failure
      const unknown = await s.get('/sig/plain/https://example.com/never-stored.jpg@png');
      expect(unknown.status).toBeGreaterThanOrEqual(500);
      expect(unknown.headers['x-cache']).toBeUndefined();
    });

    it('keeps /readyz honest: imgproxy down is not ready, stored images or not', async () => {
      const s = await start({ env: { UPLOAD_GATHER_MS: '0' } });
      const path = '/sig/plain/https://example.com/ready.jpg@png';
      await s.get(path);
      await s.waitForObject(path);
      await s.stub.close();
      expect((await s.get(path)).headers['x-cache']).toBe('STALE');
      const readyz = await request(`http://127.0.0.1:${s.proxy.admin!.port}/readyz`);
      expect(readyz.statusCode).toBe(503);
      expect(await readyz.body.json()).toMatchObject({ checks: { imgproxy: false } });
    });
  });
});
