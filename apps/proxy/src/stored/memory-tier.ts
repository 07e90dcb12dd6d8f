import { createHash } from 'node:crypto';
import type { OutgoingHttpHeaders } from 'node:http';
import { sharedLifetimeMs } from '@imgproxy-cache/shared';
import { LRUCache } from 'lru-cache';

// Stored images held in the proxy's memory (CACHE_MEMORY_BYTES), so that a hot image is served
// without a trip to the bucket. Least recently used first out, bounded in bytes (lru-cache, which
// gives each eviction its reason). Filled by bucket reads and by completed hand-offs; an entry
// lives as long as its stored Cache-Control lets a shared cache keep it, and a purge removes it
// from every proxy.

/**
 * Why an entry left: room for others, its Cache-Control ran out, a purge, the bucket holds another
 * object at its key, or the bucket never had it (bucket-truth.ts).
 */
export type Eviction = 'space' | 'expired' | 'purged' | 'replaced' | 'missing';

export interface MemoryEntry {
  /** the raw request path it was stored for */
  path: string;
  body: Buffer;
  /** the stored headers it is served with (content-type, cache-control, imgproxy's etag, ...) */
  headers: Record<string, string>;
  /** S3's ETag of the object (the bucket's word on it); made from the bytes when first needed */
  objectEtag: string | undefined;
  /** body and headers, as counted against the bound */
  size: number;
  /** the headers of a 200 from memory, made on first use (X-Cache included) */
  served?: OutgoingHttpHeaders;
  /** the bucket was seen holding it (a bucket read, or a confirmation since) */
  inBucket: boolean;
  /** when memory last had the bucket's word on it, or began to ask (ms since the epoch) */
  checkedAt: number;
}

/** Where an image put in memory comes from. */
export interface Origin {
  /** mark() when its read or its response began: a purge since keeps it out */
  since?: number;
  /** it was read from the bucket (else it was handed off, and the bucket may not have it yet) */
  inBucket?: boolean;
  /** the raw request path */
  path?: string;
  /** S3's ETag of the object it was read from */
  objectEtag?: string;
}

/** Bytes an entry is counted for beyond its body: its headers, the map's and the object's own. */
const OVERHEAD = 512;

export class MemoryTier {
  private readonly entries: LRUCache<string, MemoryEntry> | undefined;
  /** the reason of the removal under way, for the cache's dispose */
  private removing: Eviction | undefined;
  /** counts purges: a read begun before one does not fill (it may have read the purged image) */
  private purges = 0;

  constructor(
    readonly maxBytes: number,
    private readonly onEvict: (reason: Eviction) => void = () => undefined,
    private readonly now: () => number = Date.now,
  ) {
    if (maxBytes <= 0) return;
    this.entries = new LRUCache<string, MemoryEntry>({
      maxSize: maxBytes,
      sizeCalculation: (entry) => entry.size,
      perf: { now },
      // the clock read at each use: a cached one would keep an entry past its Cache-Control
      ttlResolution: 0,
      dispose: (_entry, _key, reason) => {
        const why = reason === 'evict' ? 'space' : reason === 'expire' ? 'expired' : reason === 'delete' ? this.removing : undefined;
        if (why) this.onEvict(why);
      },
    });
  }

  get enabled(): boolean {
    return this.entries !== undefined;
  }

  /** bytes held */
  get bytes(): number {
    return this.entries?.calculatedSize ?? 0;
  }

  get size(): number {
    return this.entries?.size ?? 0;
  }

  /** A fresh entry (now the most recently used), or undefined. */
  get(key: string): MemoryEntry | undefined {
    return this.entries?.get(key);
  }

  /** Where a fill starts from: pass it to put(), which refuses it if a purge came between. */
  mark(): number {
    return this.purges;
  }

  /** Whether `entry` is still the one held for `key` (not evicted, purged or replaced since). */
  holds(key: string, entry: MemoryEntry): boolean {
    return this.entries?.peek(key, { allowStale: true }) === entry;
  }

  /** Removes `entry` if it is still the one held for `key`. */
  discard(key: string, entry: MemoryEntry, reason: Eviction): void {
    if (this.holds(key, entry)) this.remove(key, reason);
  }

  /** Keeps an image if its Cache-Control allows it and it fits. Returns whether it was kept. */
  put(key: string, body: Buffer, headers: Record<string, string>, origin: Origin = {}): boolean {
    const { since = this.purges, inBucket = false, path = '', objectEtag } = origin;
    if (!this.entries || since !== this.purges) return false;
    const lifetime = sharedLifetimeMs(headers['cache-control']);
    if (lifetime === undefined) return false;
    const size = body.length + OVERHEAD;
    if (size > this.maxBytes) return false;
    const now = this.now();
    const entry: MemoryEntry = { path, body, headers, objectEtag, size, inBucket, checkedAt: now };
    // lru-cache keeps an entry while its age is at most its ttl; HTTP's freshness ends at the
    // lifetime itself (a lifetime is whole seconds, so never under 1 ms); 0 is none
    this.entries.set(key, entry, { ttl: Number.isFinite(lifetime) ? lifetime - 1 : 0, start: now });
    return true;
  }

  /** A purge: the image goes, and reads already on their way do not bring it back. */
  purge(key: string): void {
    this.purges += 1;
    this.remove(key, 'purged');
  }

  private remove(key: string, reason: Eviction): void {
    this.removing = reason;
    this.entries?.delete(key);
    this.removing = undefined;
  }
}

/** S3's ETag of an object written in one PUT: the MD5 of its bytes, quoted. */
export function etagOf(body: Buffer): string {
  return `"${createHash('md5').update(body).digest('hex')}"`;
}
