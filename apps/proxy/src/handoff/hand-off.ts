import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import {
  contentLength,
  crc32Of,
  decideAtEnd,
  encodePayload,
  type Logger,
  type ProxyMetrics,
  rateLimited,
  type SourceIndex,
  type StoredHeader,
  storedHeadersOf,
} from '@imgproxy-cache/shared';
import type { CaptureTally } from '../coalescing/capture.js';
import type { CacheOutcome } from '../serving/forward.js';
import type { MemoryEntry } from '../stored/memory-tier.js';
import type { StoredImages } from '../stored/stored-images.js';
import type { EnqueueOutcome, Enqueuer } from './enqueue.js';
import type { RecentKeys } from './recent-keys.js';

// A complete, cacheable body handed to the uploaders (enqueue.ts), after the clients have it.

export interface HandOffDeps {
  enqueuer: Enqueuer;
  recent: RecentKeys;
  tally: CaptureTally;
  cacheMaxBytes: number;
  /** longest a hand-off takes (ENQUEUE_WAIT_MS and ENQUEUE_TIMEOUT_MS) */
  handOffMs: number;
  track: (work: Promise<unknown>) => void;
  onOutcome?: (outcome: CacheOutcome, path: string) => void;
  logger: Logger;
  /** memory and the bucket: an image handed off is served from memory */
  stored?: StoredImages;
  /** source → stored keys, for purge by source (source-index.ts) */
  sources?: SourceIndex;
  metrics?: ProxyMetrics;
}

export interface Teed {
  cacheKey: string;
  path: string;
  requestId: string;
  /** imgproxy's response headers */
  headers: IncomingHttpHeaders;
  /** the body as it arrived, or undefined if it was not kept whole */
  body: readonly Buffer[] | undefined;
  received: number;
  /** a read-through found no object: the image's uploaded marker is out of date */
  objectGone: boolean;
  /** StoredImages.mark() when the response started */
  since: number;
}

/** How long an image is remembered after each hand-off outcome; others are not remembered. */
const REMEMBER_MS: Partial<Record<EnqueueOutcome, number>> = {
  uploaded: 5 * 60_000,
  queued: 15_000,
  requeued: 15_000,
  refilled: 15_000,
  'already-queued': 15_000,
};

export function handOff(teed: Teed, deps: HandOffDeps): void {
  const { cacheKey, path, headers, body, received } = teed;
  const debug = deps.logger.isLevelEnabled('debug');
  const verdict = decideAtEnd({ received, expected: contentLength(headers), maxBytes: deps.cacheMaxBytes });
  if (!verdict.cache || !body) {
    const reason = verdict.cache ? 'too-large' : verdict.reason;
    deps.onOutcome?.(reason, path);
    if (debug) deps.logger.debug({ path, reason, received, requestId: teed.requestId }, 'Not caching response');
    return;
  }
  const receivedAt = Date.now();
  const payload = encodePayload(
    {
      contentType: single(headers['content-type']),
      cacheControl: single(headers['cache-control']),
      contentDisposition: single(headers['content-disposition']),
      headers: otherStoredHeaders(headers),
      size: received,
      crc32: crc32Of(body),
      receivedAt,
      requestId: teed.requestId,
    },
    body,
  );
  // the payload is a copy, held until Redis has it
  deps.tally.add(payload.length);
  // While this hand-off runs, the next response for the image is not copied: it would only find
  // the job this one is making.
  deps.recent.remember(cacheKey, deps.handOffMs, 'handing-off');
  const work = deps.enqueuer
    .enqueue({ data: { cacheKey, path, requestId: teed.requestId }, payload, objectGone: teed.objectGone })
    .then((outcome) => {
      const rememberMs = REMEMBER_MS[outcome];
      if (rememberMs) {
        deps.recent.remember(cacheKey, rememberMs, outcome === 'uploaded' ? 'uploaded' : 'queued');
        // the uploaders have it (or the bucket does): the bytes after the payload's header
        deps.stored?.handedOff(cacheKey, path, payload.subarray(payload.length - received), headers, teed.since);
        // not awaited: the index is for purges, never in the way of a hand-off
        deps.sources?.add(path, cacheKey).then(
          (result) => deps.metrics?.sourceIndex.inc({ result }),
          () => deps.metrics?.sourceIndex.inc({ result: 'error' }),
        );
      } else deps.recent.forget(cacheKey); // not handed off: the next response tries again
      deps.onOutcome?.(outcome, path);
      if (debug) deps.logger.debug({ path, outcome, requestId: teed.requestId }, 'Cache hand-off');
    })
    .finally(() => deps.tally.add(-payload.length));
  deps.track(work);
}

const logRestore = rateLimited(10_000);

/**
 * The bucket lost an image memory holds (bucket-truth.ts): its bytes are handed off again, as a
 * response of imgproxy would be, without a render. Not while a hand-off of it is under way or
 * its shard sheds new images. Returns whether it was handed off.
 */
export function handOffAgain(cacheKey: string, entry: MemoryEntry, deps: HandOffDeps): boolean {
  deps.recent.bucketLost(cacheKey);
  if (deps.recent.has(cacheKey) || deps.enqueuer.shedding(cacheKey)) return false; // one is under way
  const { path, body, headers } = entry;
  logRestore((suppressed) =>
    deps.logger.info({ path, key: cacheKey, suppressed }, 'The bucket has lost an image held in memory: storing it again from memory'),
  );
  const teed: Teed = {
    cacheKey,
    path,
    requestId: randomUUID(),
    headers,
    body: [body],
    received: body.length,
    objectGone: true,
    since: deps.stored?.mark() ?? 0,
  };
  handOff(teed, deps);
  return true;
}

export function single(value: string | string[] | undefined): string | null {
  if (value === undefined) return null;
  return Array.isArray(value) ? value.join(', ') : value;
}

/** The stored headers beyond the three the payload names on their own (content type, cache control, disposition). */
function otherStoredHeaders(headers: IncomingHttpHeaders): Partial<Record<StoredHeader, string>> {
  const { 'content-type': _type, 'cache-control': _cacheControl, 'content-disposition': _disposition, ...others } = storedHeadersOf(headers);
  return others;
}
