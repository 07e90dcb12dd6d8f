import { createHash } from 'node:crypto';
import type { OutgoingHttpHeaders } from 'node:http';
import { sharedLifetimeMs } from '@imgproxy-cache/shared';

// Stored images held in the proxy's memory (CACHE_MEMORY_BYTES), so that a hot image is served
// without a trip to the bucket. Least recently used first out, bounded in bytes. Filled by bucket
// reads and by completed hand-offs; an entry lives as long as its stored Cache-Control lets a
// shared cache keep it, and a purge removes it from every proxy.

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
  /** when it stops being fresh (ms since the epoch; Infinity: no limit) */
  expires: number;
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
  private readonly entries = new Map<string, MemoryEntry>();
  private held = 0;
  /** counts purges: a read begun before one does not fill (it may have read the purged image) */
  private purges = 0;

  constructor(
    readonly maxBytes: number,
    private readonly onEvict: (reason: Eviction) => void = () => undefined,
    private readonly now: () => number = Date.now,
  ) {}

  get enabled(): boolean {
    return this.maxBytes > 0;
  }

  /** bytes held */
  get bytes(): number {
    return this.held;
  }

  get size(): number {
    return this.entries.size;
  }

  /** A fresh entry (now the most recently used), or undefined. */
  get(key: string): MemoryEntry | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expires <= this.now()) {
      this.remove(key, entry, 'expired');
      return undefined;
    }
    this.entries.delete(key); // re-inserted: Map order is use order
    this.entries.set(key, entry);
    return entry;
  }

  /** Where a fill starts from: pass it to put(), which refuses it if a purge came between. */
  mark(): number {
    return this.purges;
  }

  /** Whether `entry` is still the one held for `key` (not evicted, purged or replaced since). */
  holds(key: string, entry: MemoryEntry): boolean {
    return this.entries.get(key) === entry;
  }

  /** Removes `entry` if it is still the one held for `key`. */
  discard(key: string, entry: MemoryEntry, reason: Eviction): void {
    if (this.holds(key, entry)) this.remove(key, entry, reason);
  }

  /** Keeps an image if its Cache-Control allows it and it fits. Returns whether it was kept. */
  put(key: string, body: Buffer, headers: Record<string, string>, origin: Origin = {}): boolean {
    const { since = this.purges, inBucket = false, path = '', objectEtag } = origin;
    if (!this.enabled || since !== this.purges) return false;
    const lifetime = sharedLifetimeMs(headers['cache-control']);
    if (lifetime === undefined) return false;
    const size = body.length + OVERHEAD;
    if (size > this.maxBytes) return false;
    const old = this.entries.get(key);
    if (old) this.remove(key, old);
    const now = this.now();
    this.entries.set(key, { path, body, headers, objectEtag, expires: now + lifetime, size, inBucket, checkedAt: now });
    this.held += size;
    for (const [oldest, entry] of this.entries) {
      if (this.held <= this.maxBytes) break;
      this.remove(oldest, entry, 'space');
    }
    return true;
  }

  /** A purge: the image goes, and reads already on their way do not bring it back. */
  purge(key: string): void {
    this.purges += 1;
    const entry = this.entries.get(key);
    if (entry) this.remove(key, entry, 'purged');
  }

  private remove(key: string, entry: MemoryEntry, reason?: Eviction): void {
    this.entries.delete(key);
    this.held -= entry.size;
    if (reason) this.onEvict(reason);
  }
}

/** S3's ETag of an object written in one PUT: the MD5 of its bytes, quoted. */
export function etagOf(body: Buffer): string {
  return `"${createHash('md5').update(body).digest('hex')}"`;
}
