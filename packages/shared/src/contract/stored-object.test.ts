import { describe, expect, it } from 'vitest';
import type { ObjectInfo } from '../s3/bucket.js';
import { objectFieldsOf, objectFieldsOfPayload, servedHeadersOf } from './stored-object.js';

// imgproxy's headers on their way into an object and back out as a HIT's.

const miss = {
  'content-type': 'image/webp',
  'cache-control': 'max-age=60, public',
  'content-disposition': 'inline; filename="cat.webp"',
  etag: '"abc"',
  'last-modified': 'Wed, 21 Oct 2026 07:28:00 GMT',
  'content-security-policy': "default-src 'none'; sandbox",
  vary: 'Accept',
};

/** What S3 gives back for an object written with `fields` (a HEAD or GET). */
const stored = (fields: ReturnType<typeof objectFieldsOf>, extra: Partial<ObjectInfo> = {}): ObjectInfo => ({
  size: 123,
  etag: '"md5-of-the-bytes"',
  lastModified: new Date('2026-12-01T00:00:00Z'),
  contentType: fields.contentType,
  cacheControl: fields.cacheControl,
  contentDisposition: fields.contentDisposition,
  metadata: fields.metadata,
  ...extra,
});

describe('a stored object', () => {
  it('keeps the representation as the object’s own headers, the rest as metadata, and is served with exactly the MISS’s', () => {
    const fields = objectFieldsOf(miss);
    expect(fields).toEqual({
      contentType: 'image/webp',
      cacheControl: 'max-age=60, public',
      contentDisposition: 'inline; filename="cat.webp"',
      metadata: {
        etag: '"abc"',
        'last-modified': 'Wed, 21 Oct 2026 07:28:00 GMT',
        'content-security-policy': "default-src 'none'; sandbox",
        vary: 'Accept',
        'imgproxy-headers': 'content-type cache-control content-disposition etag last-modified content-security-policy vary',
      },
    });
    expect(servedHeadersOf(stored(fields))).toEqual({ ...miss, 'content-length': '123' });
  });

  it('serves no validator the MISS did not carry (imgproxy 3 without IMGPROXY_USE_ETAG): not S3’s either', () => {
    const { 'content-type': type, 'cache-control': cacheControl } = miss;
    expect(servedHeadersOf(stored(objectFieldsOf({ 'content-type': type, 'cache-control': cacheControl })))).toEqual({
      'content-type': type,
      'cache-control': cacheControl,
      'content-length': '123',
    });
  });

  it('serves an object stored before as then: its three headers, S3’s ETag and Last-Modified', () => {
    const older = stored({ contentType: 'image/png', cacheControl: undefined, contentDisposition: undefined, metadata: { 'source-tag': 't' } });
    expect(servedHeadersOf(older)).toEqual({
      'content-type': 'image/png',
      etag: '"md5-of-the-bytes"',
      'last-modified': 'Tue, 01 Dec 2026 00:00:00 GMT',
      'content-length': '123',
    });
  });

  it('leaves out what S3 metadata cannot carry, or past its 2 KB, validators first: then it is not served either', () => {
    const fields = objectFieldsOf({ ...miss, etag: '"é"', 'content-security-policy': 'x'.repeat(3000) });
    expect(fields.metadata.etag).toBeUndefined();
    expect(fields.metadata['content-security-policy']).toBeUndefined();
    expect(fields.metadata['imgproxy-headers']).toBe('content-type cache-control content-disposition last-modified vary');
    const served = servedHeadersOf(stored(fields));
    expect(served.etag).toBeUndefined();
    expect(served['content-security-policy']).toBeUndefined();
  });

  it('from a payload: one of an earlier proxy keeps its three headers and serves as before; a new one all of them', () => {
    const payload = { contentType: 'image/png', cacheControl: 'max-age=60', contentDisposition: null, size: 1, crc32: '00000000', receivedAt: 0 };
    expect(objectFieldsOfPayload(payload)).toEqual({ contentType: 'image/png', cacheControl: 'max-age=60', contentDisposition: undefined, metadata: {} });
    expect(objectFieldsOfPayload({ ...payload, headers: { etag: '"e"' } })).toEqual({
      contentType: 'image/png',
      cacheControl: 'max-age=60',
      contentDisposition: undefined,
      metadata: { etag: '"e"', 'imgproxy-headers': 'content-type cache-control etag' },
    });
  });
});
