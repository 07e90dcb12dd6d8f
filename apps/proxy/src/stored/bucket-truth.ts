import { opaque, type ProxyMetrics } from '@imgproxy-cache/shared';
import type { BucketReader, Lookup } from './bucket-reader.js';
import { etagOf, type MemoryEntry, type MemoryTier } from './memory-tier.js';

// Memory trusts the bucket for a bounded time (CACHE_MEMORY_CONFIRM_MS): pages load images from
// the bucket and fall back to the proxy, so an image the bucket lost (a lifecycle rule, a hand
// delete) that memory kept answering would never be stored again. Past the window, a hit is still
// answered from memory at once and one HEAD, in the background, asks the bucket.

/** What the bucket said of an image held in memory. */
export type Confirmation = 'present' | 'missing' | 'replaced' | 'error';

export interface BucketTruthOptions {
  /** CACHE_MEMORY_CONFIRM_MS: how long memory trusts the bucket's last word; 0 never asks */
  windowMs: number;
  /**
   * The bucket lost an image it had: hand the bytes held off again (the dedup rule, the backlog
   * bound and the shards apply). Returns whether a hand-off started.
   */
  restore: (cacheKey: string, entry: MemoryEntry) => boolean;
  now?: () => number;
}

/** The bucket's answer to a HEAD for an entry. A different S3 ETag is another writer's object. */
export function confirmation(entry: MemoryEntry, found: Lookup): Confirmation {
  if (found === 'absent') return 'missing';
  if (found === 'unavailable') return 'error'; // an outage is not a deletion
  const theirs = found.objectEtag;
  if (theirs === undefined) return 'present';
  // an image handed off: the ETag S3 makes of a single PUT
  entry.objectEtag ??= etagOf(entry.body);
  return opaque(theirs) === opaque(entry.objectEtag) ? 'present' : 'replaced';
}

export class BucketTruth {
  private readonly now: () => number;

  constructor(
    private readonly memory: MemoryTier,
    private readonly bucket: BucketReader,
    private readonly options: BucketTruthOptions,
    private readonly metrics?: ProxyMetrics,
  ) {
    this.now = options.now ?? Date.now;
  }

  /**
   * Called on every answer from memory: past the window, asks the bucket in the background. The
   * window restarts at once, so concurrent hits share the one question.
   */
  check(cacheKey: string, entry: MemoryEntry): void {
    const { windowMs } = this.options;
    if (windowMs <= 0) return;
    const now = this.now();
    if (now - entry.checkedAt < windowMs) return;
    entry.checkedAt = now;
    void this.confirm(cacheKey, entry);
  }

  private async confirm(cacheKey: string, entry: MemoryEntry): Promise<void> {
    // bounded by S3_READ_TIMEOUT_MS; never fails
    const found = await this.bucket.lookup(cacheKey, 'HEAD');
    const result = confirmation(entry, found);
    this.metrics?.memoryConfirmations.inc({ result });
    // purged, evicted or replaced while the bucket answered: its answer is about another entry
    if (!this.memory.holds(cacheKey, entry)) return;
    switch (result) {
      case 'present':
        entry.inBucket = true;
        if (typeof found === 'object') entry.objectEtag = found.objectEtag ?? entry.objectEtag;
        entry.checkedAt = this.now();
        return;
      case 'replaced':
        // the next request reads the bucket's object
        this.memory.discard(cacheKey, entry, 'replaced');
        return;
      case 'missing':
        if (entry.inBucket) {
          // the bucket lost it: stored again from memory, no render; until the bucket is seen
          // holding it again, it is an image handed off
          if (this.options.restore(cacheKey, entry)) {
            entry.inBucket = false;
            this.metrics?.memoryRestores.inc();
          }
        } else {
          // handed off and never seen in the bucket (its upload failed, or has not run): no more
          // hits; the next request is a miss, and its hand-off follows the dedup rule
          this.memory.discard(cacheKey, entry, 'missing');
        }
        return;
      case 'error':
        return; // asked again after a window
    }
  }
}
