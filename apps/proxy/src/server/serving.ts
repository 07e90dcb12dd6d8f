import type { Logger, ProxyConfig, ProxyMetrics, SourceIndex } from '@imgproxy-cache/shared';
import type { Dispatcher } from 'undici';
import { Flights } from '../coalescing/flights.js';
import type { CaptureTally } from '../handoff/capture.js';
import type { Enqueuer } from '../handoff/enqueue.js';
import { HandOff } from '../handoff/hand-off.js';
import { Inflight } from '../handoff/inflight.js';
import type { CacheOutcome } from '../handoff/outcome.js';
import type { RecentKeys } from '../handoff/recent-keys.js';
import { Imgproxy } from '../imgproxy/upstream.js';
import type { Serving } from '../serving/serving.js';
import type { BucketReader } from '../stored/bucket-reader.js';
import type { MemoryTier } from '../stored/memory-tier.js';
import { StoredImages } from '../stored/stored-images.js';

// What serving a request needs, each part made once and wired to the others: imgproxy, the
// flights, the hand-off, memory and the bucket (whose lost images go to the hand-off again).

export interface ServingParts {
  config: ProxyConfig;
  upstream: Dispatcher;
  enqueuer: Enqueuer;
  logger: Logger;
  tally: CaptureTally;
  recent: RecentKeys;
  memory: MemoryTier;
  /** the bucket (S3_BUCKET set): stale answers, and read-through */
  bucket: BucketReader | undefined;
  sources: SourceIndex | undefined;
  metrics: ProxyMetrics;
  onOutcome: (outcome: CacheOutcome, path: string) => void;
}

export function buildServing(parts: ServingParts): { serving: Serving; inflight: Inflight } {
  const { config, logger, metrics, onOutcome } = parts;
  const inflight = new Inflight();
  let stored: StoredImages | undefined;
  const handOff = new HandOff({
    enqueuer: parts.enqueuer,
    recent: parts.recent,
    tally: parts.tally,
    cacheMaxBytes: config.proxy.cacheMaxBytes,
    // the longest a hand-off runs: gathering, waiting for Redis, then one last attempt
    handOffMs: config.proxy.enqueueWaitMs + config.proxy.enqueueTimeoutMs + config.proxy.enqueueGatherMs,
    track: (work) => inflight.track(work),
    onOutcome,
    logger,
    // an image handed off is served from memory (with read-through on)
    onHandedOff: (image) => stored?.handedOff(image.cacheKey, image.path, image.body, image.headers, image.since),
    mark: () => stored?.mark() ?? 0,
    sources: parts.sources,
    metrics,
  });
  if (parts.bucket) {
    stored = new StoredImages(parts.memory, parts.bucket, metrics, config.proxy.readThrough, {
      windowMs: config.proxy.memoryConfirmMs,
      // an image the bucket lost goes to the uploaders again, as a response would
      restore: (cacheKey, entry) => handOff.again(cacheKey, entry),
    });
  }
  const serving: Serving = {
    imgproxy: new Imgproxy(parts.upstream, config.proxy.imgproxyBasePath, config.proxy.upstreamTimeoutMs),
    flights: new Flights(config.proxy.cacheMaxBytes, parts.tally),
    handOff,
    enqueuer: parts.enqueuer,
    recent: parts.recent,
    stored,
    readThrough: config.proxy.readThrough,
    negotiation: { seen: false },
    cacheMaxBytes: config.proxy.cacheMaxBytes,
    logger,
    metrics,
    onOutcome,
  };
  return { serving, inflight };
}
