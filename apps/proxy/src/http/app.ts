import type { IncomingMessage, ServerResponse } from 'node:http';
import { getRequestListener, type HttpBindings } from '@hono/node-server';
// Imported before the adapter exists, so the constant is a plain Response the adapter recognises
// (made after getRequestListener swaps the global Response, it would be a lightweight one).
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { checkTarget, type Logger, type ProxyConfig, type ProxyMetrics, rawPathOf, type SourceIndex, sourceTagOfPath } from '@imgproxy-cache/shared';
import { type Context, Hono } from 'hono';
import type { Dispatcher } from 'undici';
import { CaptureTally } from '../coalescing/capture.js';
import type { Enqueuer } from '../handoff/enqueue.js';
import { handOffAgain } from '../handoff/hand-off.js';
import { Inflight } from '../handoff/inflight.js';
import { RecentKeys } from '../handoff/recent-keys.js';
import { type CacheOutcome, type ForwardOptions, forward, sendError } from '../serving/forward.js';
import type { BucketReader } from '../stored/bucket-reader.js';
import { MemoryTier } from '../stored/memory-tier.js';
import { StoredImages } from '../stored/stored-images.js';

export interface ProxyDeps {
  config: ProxyConfig;
  upstream: Dispatcher;
  enqueuer: Enqueuer;
  logger: Logger;
  onOutcome?: (outcome: CacheOutcome, path: string) => void;
  metrics?: ProxyMetrics;
  tally?: CaptureTally;
  /** the bucket (S3_BUCKET set): stale answers, and read-through */
  bucket?: BucketReader;
  /** stored images in memory, in front of the bucket (purges remove them) */
  memory?: MemoryTier;
  /** the images this proxy handed off a moment ago (purges make it forget) */
  recent?: RecentKeys;
  /** source → stored keys, for purge by source */
  sources?: SourceIndex;
}

export interface ProxyApp {
  app: Hono<{ Bindings: HttpBindings }>;
  /** the server's request listener: the Hono app's, through @hono/node-server */
  listener: (req: IncomingMessage, res: ServerResponse) => void;
  inflight: Inflight;
  tally: CaptureTally;
  /** requests for the same image in progress (coalescing) */
  flights: ForwardOptions['flights'];
  /** memory and the bucket (undefined without S3_BUCKET) */
  stored: StoredImages | undefined;
}

/** Wires the proxy; no I/O happens until a request arrives, so tests can serve it on port 0. */
export function createApp(deps: ProxyDeps): ProxyApp {
  const { config, logger } = deps;
  const inflight = new Inflight();
  const tally = deps.tally ?? new CaptureTally();
  const recent = deps.recent ?? new RecentKeys(config.proxy.recentKeys);
  const options: ForwardOptions = {
    upstream: deps.upstream,
    basePath: config.proxy.imgproxyBasePath,
    cacheMaxBytes: config.proxy.cacheMaxBytes,
    upstreamTimeoutMs: config.proxy.upstreamTimeoutMs,
    enqueuer: deps.enqueuer,
    logger,
    tally,
    recent,
    // the longest a hand-off runs: waiting for Redis, then one last attempt
    handOffMs: config.proxy.enqueueWaitMs + config.proxy.enqueueTimeoutMs + config.proxy.enqueueGatherMs,
    track: (work: Promise<unknown>) => inflight.track(work),
    onOutcome: deps.onOutcome,
    metrics: deps.metrics,
    stored: deps.bucket
      ? new StoredImages(deps.memory ?? new MemoryTier(config.proxy.memoryBytes), deps.bucket, deps.metrics, config.proxy.readThrough, {
          windowMs: config.proxy.memoryConfirmMs,
          // an image the bucket lost goes to the uploaders again, as a response would
          restore: (cacheKey, entry) => handOffAgain(cacheKey, entry, options),
        })
      : undefined,
    readThrough: config.proxy.readThrough,
    flights: new Map(),
    negotiation: { seen: false },
    sources: deps.sources,
  };
  const { tagHeader } = config.proxy;
  const baseUrl = config.imgproxyBaseUrl;

  const proxy = (req: IncomingMessage, res: ServerResponse): void => {
    forward(req, res, options).catch((error: Error) => {
      logger.error({ err: error.message, path: req.url }, 'Proxy failure');
      sendError(res, 502, 'imgproxy-cache could not forward the request');
    });
  };

  // One Hono app serves the port. The image route streams imgproxy's answer to the socket itself
  // (forward.ts) and tells the adapter so (RESPONSE_ALREADY_SENT): no web Request or Response is
  // built for it. Hono runs GET routes for HEAD, so the route forwards the request's own method:
  // a HEAD reaches imgproxy as HEAD, and nothing is downloaded or stored for it.
  const app = new Hono<{ Bindings: HttpBindings }>();
  const image = (c: Context<{ Bindings: HttpBindings }>) => {
    const { incoming, outgoing } = c.env;
    const problem = checkTarget(incoming.url);
    if (problem) return c.text(`${problem.reason}\n`, problem.status);
    if (tagHeader) {
      // CACHE_TAG_HEADER: every variant of a source carries its tag, for the CDN's purge by tag
      const tag = sourceTagOfPath(rawPathOf(incoming.url ?? '/'), baseUrl);
      if (tag) outgoing.setHeader(tagHeader, tag);
    }
    proxy(incoming, outgoing);
    return RESPONSE_ALREADY_SENT;
  };
  app.on(['GET', 'OPTIONS'], '*', image);
  // Every path matches the image route, so whatever reaches here is another method.
  app.notFound((c) =>
    c.text(`Method ${c.env.incoming.method ?? ''} is not allowed: imgproxy-cache forwards GET, HEAD and OPTIONS\n`, 405, { allow: 'GET, HEAD, OPTIONS' }),
  );
  // With the adapter's global Response, Hono's HEAD answer (`new Response(null, res)` around the
  // route's) would be one the adapter writes again over the streamed response
  // (ERR_HTTP_HEADERS_SENT, a reset connection): the global objects stay Node's own.
  const listener = getRequestListener(app.fetch, { overrideGlobalObjects: false });

  return { app, listener, inflight, tally, flights: options.flights, stored: options.stored };
}
