import { type BucketClient, objectKeyOf, servedHeadersOf } from '@imgproxy-cache/shared';

// The proxy's reads of the bucket: a stored image served before asking imgproxy (read-through)
// or when imgproxy fails (stale). A read never fails a request: past its deadline, or on any
// error, it answers 'unavailable' and the request goes on without it.

export interface StoredImage {
  status: 200;
  /** the object's bytes (none for HEAD) */
  body: Buffer;
  /** what it is served with: the MISS's headers (stored-object.ts) */
  headers: Record<string, string>;
  /** S3's ETag of the object, which tells one object from another (bucket-truth.ts) */
  objectEtag: string | undefined;
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
        return info ? { status: 200, body: Buffer.alloc(0), headers: servedHeadersOf(info), objectEtag: info.etag } : 'absent';
      }
      const found = await this.client.getObject(key, limits);
      return found ? { status: 200, body: found.body, headers: servedHeadersOf(found.info), objectEtag: found.info.etag } : 'absent';
    } catch {
      return 'unavailable';
    }
  }
}
