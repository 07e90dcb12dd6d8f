import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import {
  contentLength,
  crc32Of,
  decideAtEnd,
  encodePayload,
  headerValue,
  type Logger,
  type ProxyMetrics,
  rateLimited,
  type SourceIndex,
  type StoredHeader,
  storedHeadersOf,
} from '@imgproxy-cache/shared';
import type { CaptureTally } from './capture.js';
import type { EnqueueOutcome, Enqueuer } from './enqueue.js';
import type { CacheOutcome } from './outcome.js';
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
  /** an image the uploaders now have (memory keeps it: stored-images.ts) */
  onHandedOff?: (image: HandedOff) => void;
  /** where a hand-off starts from, for onHandedOff (a purge since keeps the image out of memory) */
  mark?: () => number;
  /** source → stored keys, for purge by source (source-index.ts) */
  sources?: SourceIndex;
  metrics?: ProxyMetrics;
}

/** A response whose body ended, decided cacheable at its headers. */
export interface CompletedResponse {
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
  /** mark() when the response started */
  since: number;
}

/** An image the uploaders have: its bytes and imgproxy's headers. */
export interface HandedOff {
  cacheKey: string;
  path: string;
  body: Buffer;
  headers: IncomingHttpHeaders;
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

const logRestore = rateLimited(10_000);

export class HandOff {
  constructor(private readonly deps: HandOffDeps) {}

  /** Where a response starts from (see HandOffDeps.mark). */
  mark(): number {
    return this.deps.mark?.() ?? 0;
  }

  /** A response ended: if it is complete and still cacheable, its payload goes to the uploaders. */
  completed(response: CompletedResponse): void {
    const { deps } = this;
    const { cacheKey, path, headers, body, received } = response;
    const debug = deps.logger.isLevelEnabled('debug');
    const verdict = decideAtEnd({ received, expected: contentLength(headers), maxBytes: deps.cacheMaxBytes });
    if (!verdict.cache || !body) {
      const reason = verdict.cache ? 'too-large' : verdict.reason;
      deps.onOutcome?.(reason, path);
      if (debug) deps.logger.debug({ path, reason, received, requestId: response.requestId }, 'Not caching response');
      return;
    }
    const payload = encodePayload(
      {
        contentType: headerValue(headers['content-type']) ?? null,
        cacheControl: headerValue(headers['cache-control']) ?? null,
        contentDisposition: headerValue(headers['content-disposition']) ?? null,
        headers: otherStoredHeaders(headers),
        size: received,
        crc32: crc32Of(body),
        receivedAt: Date.now(),
        requestId: response.requestId,
      },
      body,
    );
    // the payload is a copy, held until Redis has it
    deps.tally.add(payload.length);
    // While this hand-off runs, the next response for the image is not copied: it would only find
    // the job this one is making.
    deps.recent.remember(cacheKey, deps.handOffMs, 'handing-off');
    const work = deps.enqueuer
      .enqueue({ data: { cacheKey, path, requestId: response.requestId }, payload, objectGone: response.objectGone })
      .then((outcome) => {
        const rememberMs = REMEMBER_MS[outcome];
        if (rememberMs) {
          deps.recent.remember(cacheKey, rememberMs, outcome === 'uploaded' ? 'uploaded' : 'queued');
          // the uploaders have it (or the bucket does): the bytes after the payload's header
          deps.onHandedOff?.({ cacheKey, path, body: payload.subarray(payload.length - received), headers, since: response.since });
          // not awaited: the index is for purges, never in the way of a hand-off
          deps.sources?.add(path, cacheKey).then(
            (result) => deps.metrics?.sourceIndex.inc({ result }),
            () => deps.metrics?.sourceIndex.inc({ result: 'error' }),
          );
        } else deps.recent.forget(cacheKey); // not handed off: the next response tries again
        deps.onOutcome?.(outcome, path);
        if (debug) deps.logger.debug({ path, outcome, requestId: response.requestId }, 'Cache hand-off');
      })
      .finally(() => deps.tally.add(-payload.length));
    deps.track(work);
  }

  /**
   * The bucket lost an image memory holds (bucket-truth.ts): its bytes are handed off again, as a
   * response of imgproxy would be, without a render. Not while a hand-off of it is under way or
   * its shard sheds new images. Returns whether it was handed off.
   */
  again(cacheKey: string, image: { path: string; body: Buffer; headers: IncomingHttpHeaders }): boolean {
    const { deps } = this;
    deps.recent.bucketLost(cacheKey);
    if (deps.recent.has(cacheKey) || deps.enqueuer.shedding(cacheKey)) return false; // one is under way
    const { path, body, headers } = image;
    logRestore((suppressed) =>
      deps.logger.info({ path, key: cacheKey, suppressed }, 'The bucket has lost an image held in memory: storing it again from memory'),
    );
    this.completed({ cacheKey, path, requestId: randomUUID(), headers, body: [body], received: body.length, objectGone: true, since: this.mark() });
    return true;
  }
}

/** The stored headers beyond the three the payload names on their own (content type, cache control, disposition). */
function otherStoredHeaders(headers: IncomingHttpHeaders): Partial<Record<StoredHeader, string>> {
  const { 'content-type': _type, 'cache-control': _cacheControl, 'content-disposition': _disposition, ...others } = storedHeadersOf(headers);
  return others;
}
