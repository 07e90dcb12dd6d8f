import { describe, expect, it } from 'vitest';
import { IMGPROXY4_CSP } from './support/imgproxy-stub.js';
import { bucketRequests, rendered } from './support/stack.js';
import { useStack } from './support/use-stack.js';

// imgproxy 4 (the stand-in's `version: 4`, imgproxy-stub.ts) sends the source's ETag and
// Last-Modified on every image and answers a conditional request 304 while the source is unchanged.
// The proxy passes both ways through untouched, stores the complete 200s with their headers, never a
// 304 or an error.

const { start } = useStack({ defaults: { stub: { version: 4 }, env: { CACHE_RECENT_KEYS: '0', UPLOAD_GATHER_MS: '0' } } });

describe('imgproxy 4 (ETag and Last-Modified on by default)', () => {
  it('passes ETag and Last-Modified through and stores the 200 with its Content-Type, Cache-Control and Content-Disposition', async () => {
    const s = await start();
    const path = '/sig/rs:fit:300:300/plain/https://example.com/v4.jpg@png';
    const first = await s.get(path);
    expect(first.status).toBe(200);
    expect(first.headers).toMatchObject({
      etag: s.stub.etagFor(path),
      'last-modified': s.stub.sourceOf(path).lastModified,
      'content-security-policy': IMGPROXY4_CSP,
    });
    expect(await s.outcomeOf(path)).toBe('queued');
    const stored = await s.waitForObject(path);
    expect(stored).toMatchObject({ contentType: 'image/png', cacheControl: 'max-age=31536000, public', contentDisposition: 'inline; filename="v4.png"' });
  });

  it('hands a 304 to the client as it came, and stores nothing for it: the object stays the 200 it was', async () => {
    const s = await start();
    const path = '/sig/rs:fit:300:300/plain/https://example.com/v4-304.jpg@png';
    const first = await s.get(path);
    await s.waitForObject(path);
    await s.drained();
    const etag = String(first.headers.etag);

    const byTag = await s.get(path, { headers: { 'if-none-match': etag } });
    expect(byTag.status).toBe(304);
    expect(byTag.body.length).toBe(0);
    const lastModified = s.stub.sourceOf(path).lastModified;
    expect(byTag.headers).toMatchObject({ etag, 'last-modified': lastModified, 'content-security-policy': IMGPROXY4_CSP });
    const byDate = await s.get(path, { headers: { 'if-modified-since': lastModified } });
    expect(byDate.status).toBe(304);
    expect(await s.outcomeOf(path, 2)).toBe('status');
    expect(await s.outcomeOf(path, 3)).toBe('status');

    // a changed image (another ETag on the client) is a 200 again, and the only PUT stays the first
    const changed = await s.get(path, { headers: { 'if-none-match': '"something-else"' } });
    expect(changed.status).toBe(200);
    expect(changed.body.equals(s.stub.imageFor(path))).toBe(true);
    expect((await s.object(path))?.body.equals(s.stub.imageFor(path))).toBe(true);
    expect(bucketRequests(s, path, 'PUT')).toHaveLength(1);
  });

  it('stores nothing when an image’s first request is conditional (304), and the 200 of the next', async () => {
    const s = await start();
    const path = '/sig/rs:fit:200:200/plain/https://example.com/v4-first-304.jpg@png';
    const conditional = await s.get(path, { headers: { 'if-modified-since': 'Thu, 01 Jan 2099 00:00:00 GMT' } });
    expect(conditional.status).toBe(304);
    expect(await s.outcomeOf(path)).toBe('status');
    await s.drained();
    expect(await s.object(path)).toBeUndefined();
    expect(bucketRequests(s, path, 'PUT')).toHaveLength(0);

    expect((await s.get(path)).status).toBe(200);
    await s.waitForObject(path);
  });

  it('read-through: a stored image answers If-None-Match and If-Modified-Since with 304 itself', async () => {
    const s = await start({ env: { CACHE_READ_THROUGH: 'true' } });
    const path = '/sig/rs:fit:120:120/plain/https://example.com/v4-hit.jpg@png';
    await s.get(path);
    await s.waitForObject(path);
    await s.drained();
    const hit = await s.get(path);
    expect(hit.headers['x-cache']).toBe('HIT');
    const lastModified = String(hit.headers['last-modified']);
    expect(Number.isFinite(Date.parse(lastModified))).toBe(true);
    const before = rendered(s, path);

    const byTag = await s.get(path, { headers: { 'if-none-match': String(hit.headers.etag) } });
    expect({ status: byTag.status, cache: byTag.headers['x-cache'] }).toEqual({ status: 304, cache: 'HIT' });
    const byDate = await s.get(path, { headers: { 'if-modified-since': lastModified } });
    expect({ status: byDate.status, cache: byDate.headers['x-cache'], length: byDate.body.length }).toEqual({ status: 304, cache: 'HIT', length: 0 });
    const older = await s.get(path, { headers: { 'if-modified-since': 'Thu, 01 Jan 2015 00:00:00 GMT' } });
    expect({ status: older.status, same: older.body.equals(s.stub.imageFor(path)) }).toEqual({ status: 200, same: true });
    expect(rendered(s, path)).toBe(before);
  });

  it.each([
    ['a source 404 is passed through', 404, 404],
    ['a source 403 is passed through', 403, 403],
    ['a source 503 is a 502', 503, 502],
  ])('%s, with its CSP and no Cache-Control, and nothing is stored', async (_name, sourceStatus, status) => {
    const s = await start();
    const path = `/sig/plain/https://example.com/v4-source-${sourceStatus}.jpg@png`;
    s.stub.sourceOf(path).status = sourceStatus;
    const reply = await s.get(path);
    expect(reply.status).toBe(status);
    expect(reply.headers['content-security-policy']).toBe(IMGPROXY4_CSP);
    expect(reply.headers['cache-control']).toBeUndefined();
    expect(await s.outcomeOf(path)).toBe('status');
    await s.drained();
    expect(bucketRequests(s, path, 'PUT')).toHaveLength(0);
  });

  it('a stored image answers STALE, with the MISS’s validators and CSP, when the source fails later', async () => {
    const s = await start();
    const path = '/sig/plain/https://example.com/v4-stale.jpg@png';
    const first = await s.get(path);
    await s.waitForObject(path);
    await s.drained();
    s.stub.sourceOf(path).status = 500;
    const stale = await s.get(path);
    expect(stale.status).toBe(200);
    expect(stale.headers).toMatchObject({
      'x-cache': 'STALE',
      etag: first.headers.etag,
      'last-modified': first.headers['last-modified'],
      'content-security-policy': IMGPROXY4_CSP,
    });
    expect(stale.body.equals(first.body)).toBe(true);
  });
});
