import { type BucketClient, objectKeyOf } from '@imgproxy-cache/shared';

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

/** The stored headers a hit is served with, as S3 returns them. */
const SERVED = ['content-type', 'cache-control', 'content-disposition', 'content-length', 'etag', 'last-modified'];

export class BucketReader {
  constructor(
    private readonly client: BucketClient,
    private readonly folder: string,
    private readonly timeoutMs: number,
    private readonly maxBytes: number,
  ) {}

  /** One request (GET, or HEAD for a HEAD), done within S3_READ_TIMEOUT_MS or given up. */
  async lookup(cacheKey: string, method: 'GET' | 'HEAD'): Promise<Lookup> {
    try {
      const { status, headers, body } = await this.client.send({
        operation: method === 'GET' ? 'GetObject' : 'HeadObject',
        method,
        key: objectKeyOf(this.folder, cacheKey),
        timeoutMs: this.timeoutMs,
        signal: AbortSignal.timeout(this.timeoutMs),
        retry: false,
        maxBodyBytes: this.maxBytes,
      });
      if (status === 404) return 'absent';
      if (status !== 200) return 'unavailable';
      const served: Record<string, string> = {};
      for (const name of SERVED) {
        const value = headers[name];
        if (value !== undefined) served[name] = Array.isArray(value) ? value.join(', ') : value;
      }
      if (method === 'GET') served['content-length'] = String(body.length);
      return { status: 200, body, headers: served };
    } catch {
      return 'unavailable';
    }
  }
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
