// The HTTP-cache rules every reader of a stored image follows: Cache-Control as a shared cache
// reads it (the bucket and the memory tier are shared caches: RFC 9111 §3, §5.2.2), a stored
// response's lifetime, its validators and how a conditional request compares with them (RFC 9110
// §8.8, §13), and the headers a stored image is served with, 200 or 304.

/** Cache-Control directives: names lowercase, values unquoted; `true` for a directive without one. */
export function cacheDirectives(cacheControl: string | undefined): Map<string, string | true> {
  const directives = new Map<string, string | true>();
  if (!cacheControl) return directives;
  // commas inside a quoted value (no-cache="a, b") do not end a directive
  for (const part of cacheControl.match(/(?:[^,"]|"[^"]*")+/g) ?? []) {
    const at = part.indexOf('=');
    const name = (at === -1 ? part : part.slice(0, at)).trim().toLowerCase();
    if (name === '' || directives.has(name)) continue; // the first of a repeated directive counts
    directives.set(
      name,
      at === -1
        ? true
        : part
            .slice(at + 1)
            .trim()
            .replace(/^"(.*)"$/, '$1'),
    );
  }
  return directives;
}

/** A delta-seconds value (RFC 9111 §1.2.2), or undefined when malformed. */
function seconds(value: string | true | undefined): number | undefined {
  return typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : undefined;
}

/**
 * How long a shared cache may keep a response with this Cache-Control, in ms: undefined when it
 * may not store it, Infinity without a limit. no-store and private forbid it; no-cache would have
 * every use revalidated, which a stored image cannot be; s-maxage, the shared caches' own, takes
 * the place of max-age; a lifetime of zero (or a malformed one) is no lifetime.
 */
export function sharedLifetimeMs(cacheControl: string | undefined): number | undefined {
  if (cacheControl === lastCacheControl) return lastLifetime;
  lastCacheControl = cacheControl;
  lastLifetime = lifetimeOf(cacheDirectives(cacheControl));
  return lastLifetime;
}

// imgproxy sends the same Cache-Control on nearly every response: it is read once
let lastCacheControl: string | undefined;
let lastLifetime: number | undefined = Number.POSITIVE_INFINITY;

function lifetimeOf(directives: Map<string, string | true>): number | undefined {
  if (directives.has('no-store') || directives.has('private') || directives.has('no-cache')) return undefined;
  const named = directives.has('s-maxage') ? 's-maxage' : directives.has('max-age') ? 'max-age' : undefined;
  if (named === undefined) return Number.POSITIVE_INFINITY;
  const value = seconds(directives.get(named));
  return value !== undefined && value > 0 ? value * 1000 : undefined;
}

/** Whether a shared cache may store a response with this Cache-Control at all. */
export function sharedStorable(cacheControl: string | undefined): boolean {
  return sharedLifetimeMs(cacheControl) !== undefined;
}

/** An entity tag without its weakness mark (RFC 9110 §8.8.3.2: weak comparison). */
export const opaque = (tag: string) => tag.trim().replace(/^W\//, '');

/** The entity tags of an If-None-Match (a list of tags, or `*`). */
function entityTags(header: string): string[] {
  return header.match(/(?:W\/)?"[^"]*"|\*/g) ?? [];
}

export interface Conditions {
  ifNoneMatch?: string | undefined;
  ifModifiedSince?: string | undefined;
}

export interface Validators {
  etag?: string | undefined;
  lastModified?: string | undefined;
}

/**
 * Whether a stored response answers a conditional GET or HEAD with 304 (RFC 9110 §13.1.2, §13.1.3,
 * §13.2.2): If-None-Match, when sent, decides alone, by weak comparison with the stored ETag.
 * Otherwise If-Modified-Since counts only when it is the stored Last-Modified itself: clients echo
 * the date they were given, and a later date may be another response's (imgproxy 4 gives every
 * variant of a source the source's Last-Modified, so a newer render of another variant carries a
 * later one). A full answer where a 304 would do is always allowed; the reverse is not.
 */
export function notModified(conditions: Conditions, stored: Validators): boolean {
  const { ifNoneMatch, ifModifiedSince } = conditions;
  if (ifNoneMatch) {
    const tags = entityTags(ifNoneMatch);
    if (tags.includes('*')) return true;
    if (!stored.etag) return false;
    const ours = opaque(stored.etag);
    return tags.some((tag) => opaque(tag) === ours);
  }
  if (!ifModifiedSince || !stored.lastModified) return false;
  const since = Date.parse(ifModifiedSince);
  return Number.isFinite(since) && since === Date.parse(stored.lastModified);
}

/**
 * The headers imgproxy's 200 is stored and served with: its representation (type, disposition),
 * its freshness, its validators, its Content-Security-Policy (what keeps scripts in an SVG from
 * running on the proxy's origin) and its Vary. A HIT carries exactly these, as the MISS did.
 */
export const STORED_HEADERS = ['content-type', 'cache-control', 'content-disposition', 'etag', 'last-modified', 'content-security-policy', 'vary'] as const;
export type StoredHeader = (typeof STORED_HEADERS)[number];

/** What a 304 repeats of the stored headers (RFC 9110 §15.4.5; imgproxy sends its CSP on every answer). */
const NOT_MODIFIED_HEADERS = ['etag', 'last-modified', 'cache-control', 'vary', 'content-security-policy'];

/** The stored headers of a 304, with `X-Cache`. */
export function notModifiedHeaders(stored: Readonly<Record<string, string | undefined>>, xCache: string): Record<string, string> {
  const kept: Record<string, string> = { 'x-cache': xCache };
  for (const name of NOT_MODIFIED_HEADERS) {
    const value = stored[name];
    if (value) kept[name] = value;
  }
  return kept;
}

/** One header's value as one string (node joins nothing for us). */
export function headerValue(value: string | readonly string[] | number | undefined): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(', ') : String(value);
}

/** The stored headers of imgproxy's response, as it sent them (names lowercase). */
export function storedHeadersOf(headers: Readonly<Record<string, string | readonly string[] | number | undefined>>): Partial<Record<StoredHeader, string>> {
  const kept: Partial<Record<StoredHeader, string>> = {};
  for (const name of STORED_HEADERS) {
    const value = headerValue(headers[name]);
    if (value !== undefined) kept[name] = value;
  }
  return kept;
}
