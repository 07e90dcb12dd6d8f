import type { IncomingHttpHeaders } from 'node:http';
import { keptHeaders, type ProxyMetrics, storedHeadersOf } from '@imgproxy-cache/shared';
import type { BucketReader, Lookup } from './bucket-reader.js';
import { BucketTruth, type BucketTruthOptions } from './bucket-truth.js';
import type { MemoryEntry, MemoryTier } from './memory-tier.js';

// The stored images as the proxy reaches them: its memory first, the bucket after. Concurrent GETs
// of one key share one bucket read; a GET that finds the image keeps it in memory, and so, with
// read-through on, does a completed hand-off (the image the uploaders are about to store). Without
// read-through no hit is served, and memory only keeps what stale answers read. What memory
// serves, the bucket is asked about now and then (bucket-truth.ts).

export type ReadPurpose = 'read-through' | 'stale';

export class StoredImages {
  /** bucket GETs in progress, by cache key */
  private readonly reading = new Map<string, Promise<Lookup>>();
  private readonly truth: BucketTruth;

  constructor(
    readonly memory: MemoryTier,
    private readonly bucket: BucketReader,
    private readonly metrics: ProxyMetrics,
    /** CACHE_READ_THROUGH: hits are served, so images handed off are kept */
    private readonly keepHandedOff: boolean,
    /** asking the bucket about what memory serves (CACHE_MEMORY_CONFIRM_MS) */
    confirm: BucketTruthOptions,
  ) {
    this.truth = new BucketTruth(memory, bucket, confirm, metrics);
  }

  /**
   * A fresh image in memory, about to be served (a hit or a stale answer): the bucket is asked
   * about it once the window since its last word ran out.
   */
  inMemory(cacheKey: string): MemoryEntry | undefined {
    const entry = this.memory.get(cacheKey);
    if (entry === undefined) return undefined;
    this.truth.check(cacheKey, entry);
    return entry;
  }

  /** One read of the bucket (GETs of a key in progress are shared), measured; a GET that finds it fills memory. */
  read(cacheKey: string, path: string, method: 'GET' | 'HEAD', purpose: ReadPurpose): Promise<Lookup> {
    if (method === 'HEAD') return this.measured(cacheKey, 'HEAD', purpose);
    const pending = this.reading.get(cacheKey);
    if (pending) {
      this.metrics.bucketReadsShared.inc();
      return pending;
    }
    const since = this.memory.mark();
    const read = this.measured(cacheKey, 'GET', purpose).then((found) => {
      if (typeof found === 'object') this.memory.put(cacheKey, found.body, found.headers, { since, inBucket: true, path, objectEtag: found.objectEtag });
      return found;
    });
    this.reading.set(cacheKey, read);
    void read.finally(() => {
      if (this.reading.get(cacheKey) === read) this.reading.delete(cacheKey);
    });
    return read;
  }

  /** Where a hand-off starts from (see handedOff). */
  mark(): number {
    return this.memory.mark();
  }

  /**
   * A complete image handed to the uploaders: it is served from memory from now on, with the
   * headers the uploader stores with it (the MISS's: stored-object.ts), unless a purge came since `since`.
   */
  handedOff(cacheKey: string, path: string, body: Buffer, headers: IncomingHttpHeaders, since: number): void {
    if (!this.memory.enabled || !this.keepHandedOff) return;
    this.memory.put(cacheKey, body, { ...keptHeaders(storedHeadersOf(headers)), 'content-length': String(body.length) }, { since, path });
  }

  /** A purge: gone from memory, and no read already on its way brings it back. */
  purge(cacheKey: string): void {
    this.memory.purge(cacheKey);
    this.reading.delete(cacheKey);
  }

  private async measured(cacheKey: string, method: 'GET' | 'HEAD', purpose: ReadPurpose): Promise<Lookup> {
    const stop = this.metrics.bucketReadSeconds.startTimer({ purpose });
    const found = await this.bucket.lookup(cacheKey, method);
    stop();
    this.metrics.bucketReads.inc({ purpose, result: typeof found === 'object' ? 'hit' : found === 'absent' ? 'miss' : 'error' });
    return found;
  }
}
