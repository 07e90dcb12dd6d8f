import { describe, expect, it } from 'vitest';
import { decideAtEnd, decideAtHeaders, type ResponseFacts, type SkipReason } from './cacheability.js';

const PLAIN_WEBP = '/sig/rs:fit:300:300/plain/https://example.com/cat.jpg@webp';
const PLAIN_NONE = '/sig/rs:fit:300:300/plain/https://example.com/cat.jpg';
const B64_PNG = '/sig/rs:fit:300:300/aHR0cHM6Ly9leGFtcGxlLmNvbS9jYXQuanBn.png';
const B64_NONE = '/sig/rs:fit:300:300/aHR0cHM6Ly9leGFtcGxlLmNvbS9jYXQuanBn';
const OPT_AVIF = '/sig/rs:fit:300:300/format:avif/aHR0cHM6Ly9leGFtcGxlLmNvbS9jYXQuanBn';

const ok = { 'content-type': 'image/png', 'cache-control': 'max-age=31536000, public', 'content-length': '1000' };

type Row = [string, Partial<ResponseFacts> & { headers?: ResponseFacts['headers'] }, SkipReason | 'cache'];

// Every rule of what lands in the bucket, one row each.
const rows: Row[] = [
  ['a plain 200 image', {}, 'cache'],
  ['HEAD (imgproxy answers 200 with no body)', { method: 'HEAD' }, 'method'],
  ['OPTIONS', { method: 'OPTIONS' }, 'method'],
  ['304 Not Modified', { status: 304 }, 'status'],
  ['206 Partial Content', { status: 206 }, 'status'],
  ['403 bad signature', { status: 403 }, 'status'],
  ['404 malformed URL', { status: 404 }, 'status'],
  ['422 unprocessable', { status: 422 }, 'status'],
  ['429 queue full', { status: 429 }, 'status'],
  ['500', { status: 500 }, 'status'],
  ['502 source failed', { status: 502 }, 'status'],
  ['503 processing timeout', { status: 503 }, 'status'],
  ['no Cache-Control at all', { headers: { 'content-type': 'image/png' } }, 'cache'],
  ['Cache-Control: no-store', { headers: { ...ok, 'cache-control': 'no-store' } }, 'cache-control'],
  ['Cache-Control: no-cache (IMGPROXY_TTL=0)', { headers: { ...ok, 'cache-control': 'no-cache' } }, 'cache-control'],
  ['Cache-Control: private', { headers: { ...ok, 'cache-control': 'private, max-age=60' } }, 'cache-control'],
  ['Cache-Control: max-age=0', { headers: { ...ok, 'cache-control': 'max-age=0, public' } }, 'cache-control'],
  ['Cache-Control: MAX-AGE=0 in capitals', { headers: { ...ok, 'cache-control': 'Public, MAX-AGE=0' } }, 'cache-control'],
  ['Cache-Control: s-maxage=0', { headers: { ...ok, 'cache-control': 'public, s-maxage=0' } }, 'cache-control'],
  // the bucket is a shared cache: s-maxage is its lifetime, whatever max-age says (RFC 9111 §5.2.2.10)
  ['Cache-Control: max-age=0, s-maxage=600', { headers: { ...ok, 'cache-control': 'max-age=0, s-maxage=600' } }, 'cache'],
  ['Cache-Control: max-age=10 (short is still storable)', { headers: { ...ok, 'cache-control': 'max-age=10, public' } }, 'cache'],
  ['fallback image (Fallback-Image: 1)', { headers: { ...ok, 'fallback-image': '1' } }, 'fallback-image'],
  ['text/plain (e.g. /health)', { headers: { ...ok, 'content-type': 'text/plain' } }, 'content-type'],
  ['no Content-Type', { headers: { 'content-length': '10' } }, 'content-type'],
  ['image/svg+xml', { headers: { ...ok, 'content-type': 'image/svg+xml' } }, 'cache'],
  ['application/pdf (Pro)', { headers: { ...ok, 'content-type': 'application/pdf' } }, 'cache'],
  ['video/mp4 (Pro)', { headers: { ...ok, 'content-type': 'video/mp4' } }, 'cache'],
  ['Content-Encoding: gzip', { headers: { ...ok, 'content-encoding': 'gzip' } }, 'content-encoding'],
  ['Content-Encoding: identity', { headers: { ...ok, 'content-encoding': 'identity' } }, 'cache'],
  ['Set-Cookie', { headers: { ...ok, 'set-cookie': ['a=b'] } }, 'set-cookie'],
  ['Content-Length over the cap', { headers: { ...ok, 'content-length': '5000' }, maxBytes: 4999 }, 'too-large'],
  ['Content-Length at the cap', { headers: { ...ok, 'content-length': '5000' }, maxBytes: 5000 }, 'cache'],
  ['Content-Length: 0', { headers: { ...ok, 'content-length': '0' } }, 'empty'],
  // Vary
  ['Vary: *', { headers: { ...ok, vary: '*' } }, 'vary'],
  ['Vary: DPR (client hints)', { headers: { ...ok, vary: 'DPR' } }, 'vary'],
  [
    'Vary: Sec-CH-DPR, DPR, Sec-CH-Width, Width',
    { path: PLAIN_WEBP, headers: { ...ok, 'content-type': 'image/webp', vary: 'Accept, Sec-CH-DPR, DPR, Sec-CH-Width, Width' } },
    'vary',
  ],
  ['Vary: Cookie', { headers: { ...ok, vary: 'Cookie' } }, 'vary'],
  ['Vary: Accept-Encoding on identity bytes', { headers: { ...ok, vary: 'Accept-Encoding' } }, 'cache'],
  ['Vary: Accept, @webp in a plain URL, answered WebP', { path: PLAIN_WEBP, headers: { ...ok, 'content-type': 'image/webp', vary: 'Accept' } }, 'cache'],
  [
    'Vary: accept (lowercase), Content-Type with parameters',
    { path: PLAIN_WEBP, headers: { ...ok, 'content-type': 'image/webp; charset=binary', vary: 'accept' } },
    'cache',
  ],
  ['Vary: Accept, .png after base64, answered PNG', { path: B64_PNG, headers: { ...ok, vary: 'Accept' } }, 'cache'],
  ['Vary: Accept, format:avif option, answered AVIF', { path: OPT_AVIF, headers: { ...ok, 'content-type': 'image/avif', vary: 'Accept' } }, 'cache'],
  ['Vary: Accept, plain URL without @ext', { path: PLAIN_NONE, headers: { ...ok, vary: 'Accept' } }, 'vary-accept-no-format'],
  ['Vary: Accept, base64 URL without .ext', { path: B64_NONE, headers: { ...ok, vary: 'Accept' } }, 'vary-accept-no-format'],
  [
    'Vary: Accept, .png asked, ENFORCE_WEBP answered WebP',
    { path: B64_PNG, headers: { ...ok, 'content-type': 'image/webp', vary: 'Accept' } },
    'vary-accept-format-mismatch',
  ],
  [
    'Vary: Accept, @webp asked, answered AVIF',
    { path: PLAIN_WEBP, headers: { ...ok, 'content-type': 'image/avif', vary: 'Accept' } },
    'vary-accept-format-mismatch',
  ],
  ['Vary: Accept, unknown format asked', { path: '/sig/plain/http://x/a.jpg@weird', headers: { ...ok, vary: 'Accept' } }, 'vary-accept-format-mismatch'],
  ['Vary in two header lines', { path: PLAIN_WEBP, headers: { ...ok, 'content-type': 'image/webp', vary: ['Accept', 'Width'] } }, 'vary'],
];

describe('decideAtHeaders', () => {
  it.each(rows)('%s', (_name, facts, expected) => {
    const decision = decideAtHeaders({
      method: 'GET',
      path: PLAIN_NONE,
      status: 200,
      maxBytes: 1_000_000,
      ...facts,
      headers: facts.headers ?? ok,
    });
    expect(decision.cache ? 'cache' : decision.reason).toBe(expected);
  });
});

describe('decideAtEnd', () => {
  const base = { received: 1000, expected: 1000, maxBytes: 5000 };
  it.each([
    ['complete, as announced', base, 'cache'],
    ['complete, chunked (no Content-Length)', { ...base, expected: undefined }, 'cache'],
    ['shorter than Content-Length', { ...base, received: 999 }, 'incomplete'],
    ['longer than Content-Length', { ...base, received: 1001 }, 'incomplete'],
    ['chunked body over the cap', { ...base, received: 5001, expected: undefined }, 'too-large'],
    ['empty chunked body', { ...base, received: 0, expected: undefined }, 'empty'],
  ] as const)('%s', (_name, facts, expected) => {
    const decision = decideAtEnd(facts);
    expect(decision.cache ? 'cache' : decision.reason).toBe(expected);
  });
});
