import type { ObjectInfo } from '../s3/bucket.js';
import { STORED_HEADERS, type StoredHeader } from './http-cache.js';
import type { PayloadMeta } from './payload.js';

// How imgproxy's headers travel with a stored object, and come back as a HIT's: Content-Type,
// Cache-Control and Content-Disposition as the object's own (what the bucket's public URL serves
// too), the rest as x-amz-meta-*, and x-amz-meta-imgproxy-headers naming every header the MISS
// carried. An object without that name was stored before: it is served as before, with S3's ETag
// and Last-Modified.

/** x-amz-meta-imgproxy-headers: the stored headers the MISS carried, space-separated. */
const MARKER = 'imgproxy-headers';

const OWN = new Set<StoredHeader>(['content-type', 'cache-control', 'content-disposition']);

/** S3 allows 2 KB of user metadata per object (names and values); the source tag takes its part. */
const METADATA_BUDGET = 1_900;

/** What a PutObject carries for these headers. */
export interface ObjectFields {
  contentType: string | undefined;
  cacheControl: string | undefined;
  contentDisposition: string | undefined;
  metadata: Record<string, string>;
}

/**
 * The headers an object keeps of these: a value S3 metadata cannot carry (not printable ASCII), or
 * past its budget (validators first), is left out, and so is not served either.
 */
export function keptHeaders(headers: Partial<Record<StoredHeader, string>>): Partial<Record<StoredHeader, string>> {
  const kept: Partial<Record<StoredHeader, string>> = {};
  let used = MARKER.length + 120; // the marker's own value: at most the names
  for (const name of STORED_HEADERS) {
    const value = headers[name];
    if (value === undefined) continue;
    if (!OWN.has(name)) {
      if (!/^[\x20-\x7e]*$/.test(value) || used + name.length + value.length > METADATA_BUDGET) continue;
      used += name.length + value.length;
    }
    kept[name] = value;
  }
  return kept;
}

/** The object's fields for imgproxy's headers (see keptHeaders). */
export function objectFieldsOf(headers: Partial<Record<StoredHeader, string>>): ObjectFields {
  const kept = keptHeaders(headers);
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(kept)) if (!OWN.has(name as StoredHeader)) metadata[name] = value;
  metadata[MARKER] = Object.keys(kept).join(' ');
  return { contentType: kept['content-type'], cacheControl: kept['cache-control'], contentDisposition: kept['content-disposition'], metadata };
}

/** The object's fields for a payload's metadata; one from an earlier proxy keeps its three headers, as then. */
export function objectFieldsOfPayload(meta: PayloadMeta): ObjectFields {
  const own = {
    contentType: meta.contentType ?? undefined,
    cacheControl: meta.cacheControl ?? undefined,
    contentDisposition: meta.contentDisposition ?? undefined,
  };
  if (meta.headers === undefined) return { ...own, metadata: {} };
  return objectFieldsOf({ ...meta.headers, 'content-type': own.contentType, 'cache-control': own.cacheControl, 'content-disposition': own.contentDisposition });
}

/** The headers a stored object is served with (a HIT, a STALE answer), Content-Length included. */
export function servedHeadersOf(info: ObjectInfo): Record<string, string> {
  const served: Record<string, string> = {};
  const carried = info.metadata[MARKER];
  const own: Partial<Record<StoredHeader, string | undefined>> = {
    'content-type': info.contentType,
    'cache-control': info.cacheControl,
    'content-disposition': info.contentDisposition,
  };
  if (carried === undefined) {
    // stored before imgproxy's headers were: as served then, S3's validators included
    for (const [name, value] of Object.entries(own)) if (value !== undefined) served[name] = value;
    if (info.etag !== undefined) served.etag = info.etag;
    if (info.lastModified !== undefined) served['last-modified'] = info.lastModified.toUTCString();
  } else {
    for (const name of carried.split(' ') as StoredHeader[]) {
      const value = OWN.has(name) ? own[name] : info.metadata[name];
      if (value !== undefined) served[name] = value;
    }
  }
  if (info.size >= 0) served['content-length'] = String(info.size);
  return served;
}
