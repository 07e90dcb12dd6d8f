import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { STORED_HEADERS } from '@imgproxy-cache/shared';
import { describe, expect, it } from 'vitest';
import type { Reply, Stack } from './support/stack.js';
import { useStack } from './support/use-stack.js';
import { waitFor } from './support/wait.js';

// A HIT or a STALE answer is the MISS that stored the image, apart from X-Cache: the same
// representation, freshness, validators, Content-Security-Policy and Vary, from memory, from the
// bucket, and while imgproxy fails; conditional requests are answered against the MISS's
// validators. With imgproxy 3's headers (an ETag per variant) and imgproxy 4's (the source's ETag
// and Last-Modified on every variant, a CSP on every answer).

const { start } = useStack({ defaults: { env: { UPLOAD_GATHER_MS: '0', CACHE_RECENT_KEYS: '0' } } });

/** What a client can tell of an answer, X-Cache aside: its status, body, and every stored header with its length. */
function seen(reply: Reply): Record<string, unknown> {
  const headers: Record<string, unknown> = {};
  for (const name of [...STORED_HEADERS, 'content-length']) if (reply.headers[name] !== undefined) headers[name] = reply.headers[name];
  return { status: reply.status, bytes: reply.body.length, headers };
}

/** The MISS that stored `path`, once the bucket has it and the uploaders are done. */
async function miss(s: Stack, path: string): Promise<Reply> {
  const first = await s.get(path);
  expect(first.status).toBe(200);
  await s.waitForObject(path);
  await s.drained();
  return first;
}

/** How each tier is reached: its settings, and what makes it answer. */
const TIERS = {
  'a HIT from memory': { env: { CACHE_READ_THROUGH: 'true' }, xCache: 'HIT', before: async () => undefined },
  'a HIT from the bucket': { env: { CACHE_READ_THROUGH: 'true', CACHE_MEMORY_BYTES: '0' }, xCache: 'HIT', before: async () => undefined },
  'a STALE answer from the bucket': {
    env: { CACHE_READ_THROUGH: 'false', CACHE_MEMORY_BYTES: '0' },
    xCache: 'STALE',
    before: async (s: Stack) => s.stub.on('/sig/', () => ({ status: 502, headers: { 'content-type': 'text/plain' }, body: Buffer.from('source failed') })),
  },
} as const;

describe.each([3, 4] as const)('imgproxy %s', (version) => {
  describe.each(Object.entries(TIERS))('%s', (_tier, tier) => {
    it('answers what the MISS answered: the same bytes, headers and validators, X-Cache aside', async () => {
      // imgproxy 3 varies on nothing here; the URL pins the format, so a Vary: Accept answer is stored too
      const s = await start({ env: tier.env, stub: { version, vary: version === 4 ? 'Accept' : undefined } });
      const path = '/sig/rs:fit:300:300/plain/https://example.com/transparent.jpg@png';
      const first = await miss(s, path);
      expect(first.headers.etag).toBe(s.stub.etagFor(path));
      if (version === 4)
        expect(first.headers).toMatchObject({
          'last-modified': s.stub.sourceOf(path).lastModified,
          vary: 'Accept',
          'content-security-policy': expect.any(String),
        });
      await tier.before(s);

      const again = await s.get(path);
      expect(again.headers['x-cache']).toBe(tier.xCache);
      expect(again.body.equals(first.body)).toBe(true);
      expect(seen(again)).toEqual(seen(first));
    });

    it('answers a conditional request against the MISS’s validators: 304 with the same ETag, a full answer for any other', async () => {
      const s = await start({ env: tier.env, stub: { version } });
      const path = '/sig/rs:fit:200:200/plain/https://example.com/revalidated.jpg@png';
      const first = await miss(s, path);
      await tier.before(s);
      const rendered = s.stub.requests.length;

      const byTag = await s.get(path, { headers: { 'if-none-match': String(first.headers.etag) } });
      expect({ status: byTag.status, xCache: byTag.headers['x-cache'], etag: byTag.headers.etag, bytes: byTag.body.length }).toEqual({
        status: 304,
        xCache: tier.xCache,
        etag: first.headers.etag,
        bytes: 0,
      });
      if (first.headers['content-security-policy']) expect(byTag.headers['content-security-policy']).toBe(first.headers['content-security-policy']);
      if (first.headers['last-modified']) {
        const byDate = await s.get(path, { headers: { 'if-modified-since': String(first.headers['last-modified']) } });
        expect({ status: byDate.status, xCache: byDate.headers['x-cache'] }).toEqual({ status: 304, xCache: tier.xCache });
      }
      const other = await s.get(path, { headers: { 'if-none-match': '"another"' } });
      expect({ status: other.status, xCache: other.headers['x-cache'], same: other.body.equals(first.body) }).toEqual({
        status: 200,
        xCache: tier.xCache,
        same: true,
      });
      // answered by the stored image, not imgproxy (a STALE answer asks it first, and it fails)
      if (tier.xCache === 'HIT') expect(s.stub.requests.length).toBe(rendered);
    });
  });
});

describe('imgproxy 4: every variant of a source carries the source’s ETag and Last-Modified', () => {
  it.each([
    ['from memory', { CACHE_READ_THROUGH: 'true' }],
    ['from the bucket', { CACHE_READ_THROUGH: 'true', CACHE_MEMORY_BYTES: '0' }],
  ])('a HIT %s never answers 304 to a validator only the other variant’s bytes earned', async (_tier, env) => {
    const s = await start({ env, stub: { version: 4 } });
    const small = '/sig/rs:fit:100:100/plain/https://example.com/shared-source.jpg@png';
    const large = '/sig/rs:fit:800:800/plain/https://example.com/shared-source.jpg@png';
    const smallMiss = await miss(s, small);
    // the source changes; the large variant is rendered from the new one
    s.stub.updateSource(large);
    const largeMiss = await miss(s, large);
    expect(largeMiss.headers.etag).not.toBe(smallMiss.headers.etag);
    expect(Date.parse(String(largeMiss.headers['last-modified']))).toBeGreaterThan(Date.parse(String(smallMiss.headers['last-modified'])));

    // the small variant stored its own validators: the large one's earn a full answer of the small bytes
    const earnedByLarge: Record<string, string>[] = [
      { 'if-none-match': String(largeMiss.headers.etag) },
      { 'if-modified-since': String(largeMiss.headers['last-modified']) },
    ];
    for (const headers of earnedByLarge) {
      const reply = await s.get(small, { headers });
      expect({ status: reply.status, xCache: reply.headers['x-cache'], etag: reply.headers.etag, same: reply.body.equals(smallMiss.body) }).toEqual({
        status: 200,
        xCache: 'HIT',
        etag: smallMiss.headers.etag,
        same: true,
      });
    }
    // its own still earn a 304
    expect((await s.get(small, { headers: { 'if-none-match': String(smallMiss.headers.etag) } })).status).toBe(304);
  });
});

describe('the stored object', () => {
  it('keeps imgproxy’s validators, CSP and Vary as metadata, and its representation as the object’s own headers', async () => {
    const s = await start({ env: {}, stub: { version: 4, vary: 'Accept' } });
    const path = '/sig/plain/https://example.com/metadata.jpg@webp';
    const first = await miss(s, path);
    const head = await s.s3.send(new HeadObjectCommand({ Bucket: s.bucket, Key: s.keyFor(path) }));
    expect(head).toMatchObject({
      ContentType: 'image/webp',
      CacheControl: 'max-age=31536000, public',
      ContentDisposition: first.headers['content-disposition'],
    });
    expect(head.Metadata).toMatchObject({
      etag: first.headers.etag,
      'last-modified': first.headers['last-modified'],
      'content-security-policy': first.headers['content-security-policy'],
      vary: 'Accept',
      'imgproxy-headers': 'content-type cache-control content-disposition etag last-modified content-security-policy vary',
    });
  });

  it('stored before imgproxy’s headers were kept: served as before, with S3’s ETag and Last-Modified, 304 to them', async () => {
    const s = await start({ env: { CACHE_READ_THROUGH: 'true' } });
    const path = '/sig/plain/https://example.com/older-object.jpg@png';
    await s.s3.send(
      new PutObjectCommand({ Bucket: s.bucket, Key: s.keyFor(path), Body: s.stub.imageFor(path), ContentType: 'image/png', CacheControl: 'max-age=60' }),
    );
    const head = await s.s3.send(new HeadObjectCommand({ Bucket: s.bucket, Key: s.keyFor(path) }));
    const hit = await s.get(path);
    expect(hit.headers).toMatchObject({ 'x-cache': 'HIT', etag: head.ETag, 'last-modified': head.LastModified!.toUTCString(), 'cache-control': 'max-age=60' });
    expect((await s.get(path, { headers: { 'if-none-match': head.ETag! } })).status).toBe(304);
    expect(s.stub.requests.filter((r) => r.url === path)).toHaveLength(0);
  });
});

describe('one reading of Cache-Control for every reader', () => {
  it('stores and serves from memory a response with max-age=0, s-maxage=600: the bucket and memory are shared caches', async () => {
    const s = await start({ env: { CACHE_READ_THROUGH: 'true' } });
    const path = '/sig/plain/https://example.com/shared-only.jpg@png';
    s.stub.on(path, () => ({
      status: 200,
      headers: { 'content-type': 'image/png', 'cache-control': 'max-age=0, s-maxage=600' },
      body: s.stub.imageFor(path),
    }));
    await miss(s, path);
    expect(await s.outcomeOf(path)).toBe('queued');
    const hit = await s.get(path);
    expect({ xCache: hit.headers['x-cache'], cacheControl: hit.headers['cache-control'] }).toEqual({ xCache: 'HIT', cacheControl: 'max-age=0, s-maxage=600' });
    expect(
      await waitFor(async () => (await s.proxy.metrics.hits.get()).values.find((v) => v.labels.tier === 'memory')?.value, { what: 'a hit from memory' }),
    ).toBe(1);
  });

  it.each([['max-age=60, s-maxage=0'], ['private, max-age=600'], ['no-store']])('stores nothing with %s', async (cacheControl) => {
    const s = await start({ env: { CACHE_READ_THROUGH: 'true' } });
    const path = '/sig/plain/https://example.com/not-shared.jpg@png';
    s.stub.on(path, () => ({ status: 200, headers: { 'content-type': 'image/png', 'cache-control': cacheControl }, body: s.stub.imageFor(path) }));
    await s.get(path);
    expect(await s.outcomeOf(path)).toBe('cache-control');
  });
});
