import type { SkipReason } from '@imgproxy-cache/shared';
import type { EnqueueOutcome } from './enqueue.js';

/**
 * What happened to a response, as far as the cache is concerned: why it was not cached, what its
 * hand-off did, 'deduped' (handed off a moment ago), 'hit' and 'stale' (served from memory or the
 * bucket), 'coalesced' (it shared another request's response).
 */
export type CacheOutcome = SkipReason | EnqueueOutcome | 'deduped' | 'hit' | 'stale' | 'coalesced';
