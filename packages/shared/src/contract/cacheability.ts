import { headerValue, sharedStorable } from './http-cache.js';
import { contentTypeOfFormat, requestedFormat } from './imgproxy-format.js';

// Whether a response from imgproxy may be stored in the bucket under the MD5 of its path. This is
// the heart of the contract ("every complete 200 lands; nothing else ever does"); every rule is
// here, in one pure function, so that one table-driven test can pin them all down.
//
// decideAtHeaders() runs when imgproxy's headers arrive (so that an uncacheable body is never
// copied); decideAtEnd() runs when the body has ended, with what was actually received.

export type SkipReason =
  | 'method' // only GET: HEAD and OPTIONS answer 200 with no body (a 0-byte object over a good key)
  | 'status' // only 200: never 304 (no body), errors, or 206
  | 'cache-control' // a shared cache may not keep it (no-store, no-cache, private, a zero s-maxage, or max-age without s-maxage)
  | 'fallback-image' // imgproxy served its fallback image: the real image may exist later
  | 'content-type' // not an image (imgproxy's /health and other text answers)
  | 'content-encoding' // the bytes are encoded for one client
  | 'set-cookie' // a response carrying a cookie is meant for one client
  | 'vary' // bytes depend on request headers other than Accept (client hints, "*", ...)
  | 'vary-accept-no-format' // Vary: Accept and the URL leaves the format to imgproxy
  | 'vary-accept-format-mismatch' // Vary: Accept and imgproxy answered another format than the URL named (ENFORCE_*)
  | 'too-large' // over CACHE_MAX_BYTES (still streamed to the client in full)
  | 'incomplete' // the body ended before Content-Length bytes (or the connection dropped)
  | 'empty'; // a 200 with no bytes is never an image

export type Decision = { cache: true } | { cache: false; reason: SkipReason };

export interface ResponseFacts {
  method: string;
  /** the raw request path, no query */
  path: string;
  status: number;
  /** imgproxy's response headers, names lowercase (node's IncomingHttpHeaders shape) */
  headers: Readonly<Record<string, string | string[] | undefined>>;
  maxBytes: number;
}

const CACHE = { cache: true } as const;
const skip = (reason: SkipReason): Decision => ({ cache: false, reason });

/** Cacheable image content types: imgproxy answers images, and PDF or MP4 in its Pro version. */
const CACHEABLE_TYPE = /^(image\/|video\/|application\/pdf\b)/i;

/**
 * Vary tokens that still let one object serve every client. Accept-Encoding: the stored bytes are
 * identity-encoded (any Content-Encoding is refused above), which every client can read.
 */
const HARMLESS_VARY = new Set(['accept-encoding', 'origin']);

export function decideAtHeaders(facts: ResponseFacts): Decision {
  const { headers } = facts;
  if (facts.method !== 'GET') return skip('method');
  if (facts.status !== 200) return skip('status');
  // the bucket is a shared cache: RFC 9111's rules for one (http-cache.ts)
  if (!sharedStorable(headerValue(headers['cache-control']))) return skip('cache-control');
  if (headers['fallback-image'] !== undefined) return skip('fallback-image');
  if (!CACHEABLE_TYPE.test(headerValue(headers['content-type']) ?? '')) return skip('content-type');
  const encoding = headerValue(headers['content-encoding'])?.trim().toLowerCase();
  if (encoding && encoding !== 'identity') return skip('content-encoding');
  if (headers['set-cookie'] !== undefined) return skip('set-cookie');

  const vary = varyTokens(headerValue(headers.vary));
  for (const token of vary) {
    if (token === 'accept') {
      const format = requestedFormat(facts.path);
      if (format === undefined) return skip('vary-accept-no-format');
      const expected = contentTypeOfFormat(format);
      if (!expected || mediaType(headerValue(headers['content-type'])) !== expected) {
        return skip('vary-accept-format-mismatch');
      }
    } else if (!HARMLESS_VARY.has(token)) {
      return skip('vary');
    }
  }

  const length = contentLength(headers);
  if (length !== undefined && length > facts.maxBytes) return skip('too-large');
  if (length === 0) return skip('empty');
  return CACHE;
}

export interface BodyFacts {
  /** bytes received from imgproxy */
  received: number;
  /** Content-Length imgproxy announced, if any */
  expected: number | undefined;
  maxBytes: number;
}

/** For a body that ended normally (one cut short never gets here: it is 'incomplete' at once). */
export function decideAtEnd(body: BodyFacts): Decision {
  if (body.expected !== undefined && body.received !== body.expected) return skip('incomplete');
  if (body.received > body.maxBytes) return skip('too-large');
  if (body.received === 0) return skip('empty');
  return CACHE;
}

export function contentLength(headers: ResponseFacts['headers']): number | undefined {
  const value = headerValue(headers['content-length']);
  if (value === undefined || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value);
}

function varyTokens(vary: string | undefined): string[] {
  if (!vary) return [];
  return vary
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== '');
}

function mediaType(contentType: string | undefined): string | undefined {
  return contentType?.split(';', 1)[0]?.trim().toLowerCase();
}
