import { createHash } from 'node:crypto';

// Clients compute the key themselves (the Elixir client hashes "/" <> signature <> path), so it is
// the MD5 of the request path exactly as it came on the wire: percent-encoding untouched, no
// normalisation of "//" or "..", and without the query string.

/** The path part of a raw HTTP request target (`/a/b?x=1` → `/a/b`). */
export function rawPathOf(requestTarget: string): string {
  const query = requestTarget.indexOf('?');
  return query === -1 ? requestTarget : requestTarget.slice(0, query);
}

/** Lowercase hex MD5 of the raw request path. */
export function cacheKeyOf(rawPath: string): string {
  return createHash('md5').update(rawPath, 'latin1').digest('hex');
}

/** The object key for a cache key: `<folder>/<md5>`; `folder` is already normalised (see config). */
export function objectKeyOf(folder: string, cacheKey: string): string {
  return `${folder}${cacheKey}`;
}
