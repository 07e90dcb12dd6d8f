import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { cacheKeyOf, redisKeys } from '@imgproxy-cache/shared';
import { describe, expect, it } from 'vitest';
import { bucketRequests, counter, rendered, type Stack, xCache } from './support/stack.js';
import { useStack } from './support/use-stack.js';
import { waitFor } from './support/wait.js';

// The bucket stays the truth (CACHE_MEMORY_CONFIRM_MS): what the memory tier serves, the bucket is
// asked about once a window; an image it lost is stored again from memory, without a render. Real
// Redis, s3rver behind the tap (which deletes, replaces and refuses), the imgproxy stand-in
// counting renders.

let release: (() => void) | undefined;
const WINDOW_MS = 300;
const { start } = useStack({
  defaults: { env: { CACHE_READ_THROUGH: 'true', UPLOAD_GATHER_MS: '0', CACHE_MEMORY_CONFIRM_MS: String(WINDOW_MS) } },
  beforeStop: () => {
    release?.();
    release = undefined;
  },
});
/** Waits for a window (CACHE_MEMORY_CONFIRM_MS) to run out since `since`, with a margin (the condition is the time itself). */
const windowPassed = (since: number, windowMs = WINDOW_MS, margin = 1.5) =>
  waitFor(() => Date.now() - since > windowMs * margin, { what: 'the confirmation window to run out' });

/** A new image served, handed off and stored; then confirmed present, so memory knows the bucket has it. */
async function storedAndConfirmed(s: Stack, path: string, replies: string[]): Promise<void> {
  expect(xCache(await s.get(path))).toBe('200 MISS');
  await s.waitForObject(path);
  await s.drained();
  await waitFor(
    async () => {
      replies.push(xCache(await s.get(path)));
      return (await counter(s.proxy, 'memoryConfirmations', 'present')) === 1;
    },
    { what: 'memory to hear from the bucket that it holds the image' },
  );
}

describe('memory trusts the bucket for CACHE_MEMORY_CONFIRM_MS', () => {
  it('an image hot in memory that the bucket lost is stored again from memory: byte-exact, with its headers, no render, every request a hit meanwhile', async () => {
    const s = await start();
    const path = '/sig/rs:fit:300:200/plain/https://example.com/lifecycle.jpg@png';
    const replies: string[] = [];
    await storedAndConfirmed(s, path, replies);
    // the uploaded marker (Redis) and the proxy's memory of the hand-off are both fresh now
    expect(await s.redis.exists(redisKeys(s.config.queue.name).uploaded(cacheKeyOf(path)))).toBe(1);

    await s.s3.send(new DeleteObjectCommand({ Bucket: s.bucket, Key: s.keyFor(path) }));
    expect(await s.object(path)).toBeUndefined();
    await waitFor(
      async () => {
        replies.push(xCache(await s.get(path)));
        return (await s.object(path)) !== undefined;
      },
      { what: 'the image to be back in the bucket' },
    );
    const object = await s.waitForObject(path);
    expect(object).toMatchObject({ contentType: 'image/png', cacheControl: 'max-age=31536000, public', contentDisposition: 'inline; filename="image.png"' });
    expect(replies.every((r) => r === '200 HIT')).toBe(true);
    expect(rendered(s, path)).toBe(1);
    expect(await counter(s.proxy, 'memoryConfirmations', 'missing')).toBe(1);
    expect(await counter(s.proxy, 'memoryRestores')).toBe(1);
    // and the restored object is confirmed in turn
    await waitFor(
      async () => {
        expect(xCache(await s.get(path))).toBe('200 HIT');
        return (await counter(s.proxy, 'memoryConfirmations', 'present')) === 2;
      },
      { what: 'the restored image to be confirmed' },
    );
    expect(await counter(s.proxy, 'memoryRestores')).toBe(1);
  });

  it('50 concurrent hits past the window cause one confirmation, and a window only one', async () => {
    const s = await start({ env: { CACHE_MEMORY_CONFIRM_MS: '2000' } });
    const path = '/sig/plain/https://example.com/popular.jpg@png';
    await s.get(path);
    await s.waitForObject(path);
    await s.drained();
    const handedOff = Date.now();
    const from = s.tap.requests.length;
    await windowPassed(handedOff, 2_000, 1.2);
    const replies = await Promise.all(Array.from({ length: 50 }, () => s.get(path)));
    expect(replies.map(xCache).every((r) => r === '200 HIT')).toBe(true);
    await waitFor(async () => (await counter(s.proxy, 'memoryConfirmations')) === 1, { what: 'the one confirmation' });
    const again = await Promise.all(Array.from({ length: 50 }, () => s.get(path)));
    expect(again.map(xCache).every((r) => r === '200 HIT')).toBe(true);
    // one a window: the second 50 ask nothing within the first's window (a host slow enough to
    // outlast it may ask once per window more, never more often)
    const heads = bucketRequests(s, path, 'HEAD', from);
    const windows = 1 + Math.floor((Date.now() - heads[0]!.at) / 2_000);
    expect(heads.length).toBeLessThanOrEqual(windows);
    expect(bucketRequests(s, path, 'GET', from).length).toBe(0);
    await waitFor(async () => (await counter(s.proxy, 'memoryConfirmations', 'present')) === heads.length, { what: 'every confirmation to find the image' });
  });

  it('a bucket that times out while asked keeps the image served from memory, and nothing is stored again', async () => {
    const s = await start({ env: { S3_READ_TIMEOUT_MS: '200' } });
    const path = '/sig/plain/https://example.com/outage.jpg@png';
    const replies: string[] = [];
    await storedAndConfirmed(s, path, replies);
    const held = new Promise<void>((resolve) => (release = resolve));
    s.tap.fault = (r) => (r.method === 'HEAD' ? { kind: 'hold', until: held } : undefined);
    await waitFor(
      async () => {
        replies.push(xCache(await s.get(path)));
        return (await counter(s.proxy, 'memoryConfirmations', 'error')) >= 2;
      },
      { what: 'two confirmations to time out' },
    );
    expect(replies.every((r) => r === '200 HIT')).toBe(true);
    expect(await counter(s.proxy, 'memoryRestores')).toBe(0);
    expect(await counter(s.proxy, 'memoryEvictions')).toBe(0);
    expect(rendered(s, path)).toBe(1);
    expect(s.outcomes.filter((o) => o.path === path).map((o) => o.outcome)).not.toContain('requeued');
  });

  it('another object at the key: memory lets its copy go and the next request reads the bucket', async () => {
    const s = await start();
    const path = '/sig/plain/https://example.com/replaced.jpg@png';
    await s.get(path);
    await s.waitForObject(path);
    await s.drained();
    const other = Buffer.from('written by another writer');
    await s.s3.send(new PutObjectCommand({ Bucket: s.bucket, Key: s.keyFor(path), Body: other, ContentType: 'image/png', CacheControl: 'max-age=60' }));
    await waitFor(
      async () => {
        const reply = await s.get(path);
        expect(reply.status).toBe(200);
        return reply.body.equals(other);
      },
      { what: 'the other object to be served' },
    );
    expect(await counter(s.proxy, 'memoryConfirmations', 'replaced')).toBe(1);
    expect(await counter(s.proxy, 'memoryEvictions', 'replaced')).toBe(1);
    expect(await counter(s.proxy, 'memoryRestores')).toBe(0);
    expect(rendered(s, path)).toBe(1);
    const again = await s.get(path);
    expect(again.body.equals(other)).toBe(true);
    expect(again.headers['cache-control']).toBe('max-age=60');
  });

  it('an image handed off whose upload failed for good stops being a hit once the bucket says it is missing; its job stays failed, nothing loops', async () => {
    const s = await start({ env: { UPLOAD_ATTEMPTS: '2' } });
    const path = '/sig/plain/https://example.com/refused.jpg@png';
    s.tap.fault = (r) => (r.method === 'PUT' ? { kind: 'status', status: 403, code: 'AccessDenied', message: 'bucket policy' } : undefined);
    expect(xCache(await s.get(path))).toBe('200 MISS');
    const key = cacheKeyOf(path);
    await waitFor(async () => (await s.queue.getJobState(key)) === 'failed', { what: 'the upload to fail for good' });
    expect(xCache(await s.get(path))).toBe('200 HIT'); // within the window: memory still trusts the hand-off

    const replies: string[] = [];
    await waitFor(
      async () => {
        replies.push(xCache(await s.get(path)));
        return replies.at(-1) === '200 MISS';
      },
      { what: 'a request past the window to be a miss' },
    );
    expect(replies.slice(0, -1).every((r) => r === '200 HIT')).toBe(true);
    expect(await counter(s.proxy, 'memoryConfirmations', 'missing')).toBe(1);
    expect(await counter(s.proxy, 'memoryEvictions', 'missing')).toBe(1);
    expect(await counter(s.proxy, 'memoryRestores')).toBe(0);
    expect(rendered(s, path)).toBe(2);
    // the miss's hand-off retried the failed job by the dedup rule; it fails again and stays in the failed set
    const handOffs = () => s.outcomes.filter((o) => o.path === path && o.outcome !== 'hit').map((o) => o.outcome);
    await waitFor(() => handOffs().length === 2, { what: 'the miss to be handed off' });
    expect(handOffs()).toEqual(['queued', 'requeued']);
    await waitFor(async () => (await s.queue.getJobState(key)) === 'failed', { what: 'the retried upload to fail again' });
    expect(await s.queue.getFailedCount()).toBe(1);
    expect(await s.object(path)).toBeUndefined();
  });

  it('stale answers follow the same rule: an image the bucket lost while imgproxy is down is stored again from memory', async () => {
    const s = await start({ env: { CACHE_READ_THROUGH: 'false' } });
    const path = '/sig/plain/https://example.com/stale-lost.jpg@png';
    await s.get(path);
    await s.waitForObject(path);
    await s.drained();
    await s.stub.close();
    const first = await s.get(path); // read from the bucket, kept in memory
    expect(xCache(first)).toBe('200 STALE');
    const readAt = Date.now();
    await s.s3.send(new DeleteObjectCommand({ Bucket: s.bucket, Key: s.keyFor(path) }));
    await windowPassed(readAt);
    const replies: string[] = [];
    await waitFor(
      async () => {
        replies.push(xCache(await s.get(path)));
        return (await s.object(path)) !== undefined;
      },
      { what: 'the image to be back in the bucket' },
    );
    await s.waitForObject(path);
    expect(replies.every((r) => r === '200 STALE')).toBe(true);
    expect(await counter(s.proxy, 'memoryRestores')).toBe(1);
  });

  it('CACHE_MEMORY_CONFIRM_MS=0 never asks: memory is trusted until the image expires', async () => {
    const s = await start({ env: { CACHE_MEMORY_CONFIRM_MS: '0' } });
    const path = '/sig/plain/https://example.com/trusted.jpg@png';
    await s.get(path);
    await s.waitForObject(path);
    const handedOff = Date.now();
    await windowPassed(handedOff);
    for (const _ of [1, 2, 3]) expect(xCache(await s.get(path))).toBe('200 HIT');
    expect(await counter(s.proxy, 'memoryConfirmations')).toBe(0);
  });
});
