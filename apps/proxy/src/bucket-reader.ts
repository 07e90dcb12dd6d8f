import { type BucketClient, type ObjectInfo, objectKeyOf } from '@imgproxy-cache/shared';

// The proxy's reads of the bucket: a stored image served before asking imgproxy (read-through)
// or when imgproxy fails (stale). A read never fails a request: past its deadline, or on any
// error, it answers 'unavailable' and the request goes on without it.

export interface StoredImage {
  status: 200;
  /** the object's bytes (none for HEAD) */
  body: Buffer;
  headers: Record<string, string>;
}

export type Lookup = StoredImage | 'absent' | 'unavailable';

export class BucketReader {
  constructor(
    private readonly client: BucketClient,
    private readonly folder: string,
    private readonly timeoutMs: number,
    private readonly maxBytes: number,
  ) {}

  /** One request (GET, or HEAD for a HEAD), done within S3_READ_TIMEOUT_MS or given up. */
  async lookup(cacheKey: string, method: 'GET' | 'HEAD'): Promise<Lookup> {
    const key = objectKeyOf(this.folder, cacheKey);
    const limits = { signal: AbortSignal.timeout(this.timeoutMs), maxBytes: this.maxBytes, deadline: 'S3_READ_TIMEOUT_MS' };
    try {
      if (method === 'HEAD') {
        const info = await this.client.headObject(key, limits);
        return info ? { status: 200, body: Buffer.alloc(0), headers: servedHeaders(info) } : 'absent';
      }
      const found = await this.client.getObject(key, limits);
      return found ? { status: 200, body: found.body, headers: servedHeaders(found.info) } : 'absent';
    } catch {
      return 'unavailable';
    }
  }
}

/** The stored headers a hit is served with, as S3 returns them. */
function servedHeaders(info: ObjectInfo): Record<string, string> {
  const served: Record<string, string> = {};
  if (info.contentType !== undefined) served['content-type'] = info.contentType;
  if (info.cacheControl !== undefined) served['cache-control'] = info.cacheControl;
  if (info.contentDisposition !== undefined) served['content-disposition'] = info.contentDisposition;
  if (info.size >= 0) served['content-length'] = String(info.size);
  if (info.etag !== undefined) served.etag = info.etag;
  if (info.lastModified !== undefined) served['last-modified'] = info.lastModified.toUTCString();
  return served;
}

/**
 * Whether the client's copy is current (RFC 9110 §13.2.2): `If-None-Match` names the stored ETag
 * (weak comparison); without it, `If-Modified-Since` is no earlier than the stored Last-Modified.
 */
export function notModified(
  conditions: { ifNoneMatch?: string | undefined; ifModifiedSince?: string | undefined },
  stored: { etag?: string | undefined; lastModified?: string | undefined },
): boolean {
  const { ifNoneMatch, ifModifiedSince } = conditions;
  if (ifNoneMatch) {
    if (!stored.etag) return false;
    const bare = (tag: string) => tag.trim().replace(/^W\//, '');
    return ifNoneMatch.trim() === '*' || ifNoneMatch.split(',').some((tag) => bare(tag) === bare(stored.etag!));
  }
  if (!ifModifiedSince || !stored.lastModified) return false;
  const since = Date.parse(ifModifiedSince);
  const modified = Date.parse(stored.lastModified);
  return Number.isFinite(since) && Number.isFinite(modified) && modified <= since;
}
