import { describe, expect, it } from 'vitest';
import { cacheDirectives, notModified, notModifiedHeaders, sharedLifetimeMs, sharedStorable, storedHeadersOf } from './http-cache.js';

// RFC 9111's rules for a shared cache (the bucket and the memory tier are both one), and RFC 9110's
// conditional requests, as one table each: every reader of a stored image goes through these.

describe('Cache-Control for a shared cache (RFC 9111 §3, §5.2.2)', () => {
  it.each([
    // lifetimes
    ['max-age=3600, public', 3_600_000],
    ['public, max-age=60, s-maxage=10', 10_000], // §5.2.2.10: s-maxage overrides max-age for a shared cache
    ['max-age=0, s-maxage=600', 600_000], // stored for 600 s: sources send it, imgproxy passes it through
    ['s-maxage=600', 600_000],
    ['max-age="30"', 30_000], // a quoted value is read (§5.2: recipients should accept it)
    ['MAX-AGE=30', 30_000], // directive names are case-insensitive
    ['max-age=30, max-age=60', 30_000], // the first of a repeated directive counts
    ['immutable', Number.POSITIVE_INFINITY],
    ['public', Number.POSITIVE_INFINITY],
    [undefined, Number.POSITIVE_INFINITY],
    ['', Number.POSITIVE_INFINITY],
    ['must-revalidate, max-age=60', 60_000],
    ['proxy-revalidate, max-age=60', 60_000],
    // not storable
    ['no-store', undefined], // §5.2.2.5
    ['public, no-store, max-age=600', undefined],
    ['private, max-age=600', undefined], // §5.2.2.7: a shared cache must not store it
    ['private="set-cookie", max-age=600', undefined],
    ['no-cache', undefined], // §5.2.2.4: every use revalidated, which a stored image cannot be
    ['public, NO-CACHE', undefined],
    ['no-cache="set-cookie", max-age=600', undefined],
    ['max-age=0', undefined], // no lifetime
    ['max-age=0, public', undefined],
    ['max-age=60, s-maxage=0', undefined], // the shared caches' own lifetime is zero
    ['s-maxage=0', undefined],
    ['max-age=soon', undefined], // §4.2.1: an invalid lifetime is none
    ['max-age=-1', undefined],
    ['s-maxage=1.5, max-age=60', undefined],
  ])('%s → %s', (cacheControl, expected) => {
    expect(sharedLifetimeMs(cacheControl)).toBe(expected);
    expect(sharedStorable(cacheControl)).toBe(expected !== undefined);
  });

  it('reads directives with and without values, names lowercase, values unquoted', () => {
    expect(cacheDirectives('Public, Max-Age="60", no-cache="set-cookie, x"')).toEqual(
      new Map<string, string | true>([
        ['public', true],
        ['max-age', '60'],
        ['no-cache', 'set-cookie, x'],
      ]),
    );
  });
});

describe('conditional requests against the stored validators (RFC 9110 §13.1)', () => {
  const stored = { etag: '"abc"', lastModified: 'Wed, 21 Oct 2026 07:28:00 GMT' };
  it.each([
    [{ ifNoneMatch: '"abc"' }, stored, true],
    [{ ifNoneMatch: 'W/"abc"' }, stored, true], // If-None-Match compares weakly (§13.1.2)
    [{ ifNoneMatch: '"abc"' }, { etag: 'W/"abc"' }, true],
    [{ ifNoneMatch: '"x", "abc"' }, stored, true],
    [{ ifNoneMatch: '"x","y"' }, stored, false],
    [{ ifNoneMatch: '*' }, stored, true],
    [{ ifNoneMatch: '"abc"' }, {}, false],
    [{ ifNoneMatch: 'abc' }, stored, false], // not an entity tag
    // If-None-Match decides alone: a date beside it is not read (§13.1.3)
    [{ ifNoneMatch: '"x"', ifModifiedSince: stored.lastModified }, stored, false],
    [{ ifModifiedSince: stored.lastModified }, stored, true],
    [{ ifModifiedSince: 'Wednesday, 21-Oct-26 07:28:00 GMT' }, stored, true], // the same instant, in RFC 850 form
    // a later date may be another variant's (imgproxy 4 gives them all the source's): a full answer
    [{ ifModifiedSince: 'Thu, 22 Oct 2026 07:28:00 GMT' }, stored, false],
    [{ ifModifiedSince: 'Tue, 20 Oct 2026 07:28:00 GMT' }, stored, false],
    [{ ifModifiedSince: 'yesterday' }, stored, false],
    [{ ifModifiedSince: stored.lastModified }, {}, false],
    [{}, stored, false],
  ])('%j against %j → %s', (conditions, validators, expected) => {
    expect(notModified(conditions, validators)).toBe(expected);
  });

  it('a 304 repeats the validators, freshness, Vary and CSP of the stored answer, nothing of its body', () => {
    const headers = {
      'content-type': 'image/png',
      'content-length': '123',
      'content-disposition': 'inline',
      'cache-control': 'max-age=60',
      etag: '"abc"',
      'last-modified': stored.lastModified,
      vary: 'Accept',
      'content-security-policy': "default-src 'none'",
    };
    expect(notModifiedHeaders(headers, 'HIT')).toEqual({
      'x-cache': 'HIT',
      'cache-control': 'max-age=60',
      etag: '"abc"',
      'last-modified': stored.lastModified,
      vary: 'Accept',
      'content-security-policy': "default-src 'none'",
    });
  });

  it('keeps of imgproxy’s answer its representation, freshness, validators, CSP and Vary; nothing per request', () => {
    expect(
      storedHeadersOf({
        'content-type': 'image/webp',
        'content-length': '10',
        'cache-control': 'max-age=60, public',
        etag: '"e"',
        'last-modified': stored.lastModified,
        'content-security-policy': "default-src 'none'",
        vary: ['Accept', 'Accept-Encoding'],
        date: 'now',
        'x-request-id': 'r',
        'set-cookie': ['a=b'],
      }),
    ).toEqual({
      'content-type': 'image/webp',
      'cache-control': 'max-age=60, public',
      etag: '"e"',
      'last-modified': stored.lastModified,
      'content-security-policy': "default-src 'none'",
      vary: 'Accept, Accept-Encoding',
    });
  });
});
