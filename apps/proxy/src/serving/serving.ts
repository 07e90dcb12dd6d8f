import type { OutgoingHttpHeaders } from 'node:http';
import { type Logger, type ProxyMetrics, requestedFormat } from '@imgproxy-cache/shared';
import type { Flights } from '../coalescing/flights.js';
import type { Enqueuer } from '../handoff/enqueue.js';
import type { HandOff } from '../handoff/hand-off.js';
import type { CacheOutcome } from '../handoff/outcome.js';
import type { RecentKeys } from '../handoff/recent-keys.js';
import type { Imgproxy } from '../imgproxy/upstream.js';
import type { StoredImages } from '../stored/stored-images.js';

/** A request's raw path, and the object key of its image (GET and HEAD only). */
export interface ImageRequest {
  path: string;
  cacheKey: string | undefined;
}

/** What serving a request needs, built once by the server (server/serving.ts). */
export interface Serving {
  imgproxy: Imgproxy;
  /** requests for the same image in progress (coalescing) */
  flights: Flights;
  /** a cacheable response, once complete, to the uploaders */
  handOff: HandOff;
  /** whether a new image's shard sheds images right now (then its response is not even copied) */
  enqueuer: Pick<Enqueuer, 'shedding'>;
  /** images handed off a moment ago: not copied again */
  recent: RecentKeys;
  /** memory and the bucket, when S3_BUCKET is set: stale answers, and read-through */
  stored: StoredImages | undefined;
  /** CACHE_READ_THROUGH */
  readThrough: boolean;
  /** imgproxy was seen negotiating formats by Accept (it answered `Vary: Accept`) */
  negotiation: { seen: boolean };
  cacheMaxBytes: number;
  logger: Logger;
  metrics: ProxyMetrics | undefined;
  /** observes each cache decision (metrics, tests) */
  onOutcome: ((outcome: CacheOutcome, path: string) => void) | undefined;
}

/**
 * Stored images are served for this path: read-through is on with a bucket, and the URL names its
 * format where imgproxy negotiates them (such images are never stored).
 */
export function readsThrough(s: Serving, path: string): boolean {
  return s.readThrough && s.stored !== undefined && !(s.negotiation.seen && requestedFormat(path) === undefined);
}

/** A plain-text answer with its reason (an error of ours), never stored by anyone. */
export function plainText(message: string): { headers: OutgoingHttpHeaders; body: Buffer } {
  const body = Buffer.from(`${message}\n`);
  return { headers: { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length, 'cache-control': 'no-store' }, body };
}
