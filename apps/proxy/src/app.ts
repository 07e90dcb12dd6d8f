import type { IncomingMessage, ServerResponse } from 'node:http';
import { getRequestListener, type HttpBindings } from '@hono/node-server';
import type { Config, Logger, ProxyMetrics } from '@imgproxy-cache/shared';
import { Hono } from 'hono';
import type { Dispatcher } from 'undici';
import type { BucketReader } from './bucket-reader.js';
import { CaptureTally } from './capture.js';
import type { Enqueuer } from './enqueue.js';
import { type CacheOutcome, type ForwardOptions, forward, sendError } from './forward.js';
import { Inflight } from './inflight.js';
import { RecentKeys } from './recent-keys.js';
import { checkTarget } from './request-target.js';

export interface ProxyDeps {
  config: Config;
  upstream: Dispatcher;
  enqueuer: Enqueuer;
  logger: Logger;
  onOutcome?: (outcome: CacheOutcome, path: string) => void;
  metrics?: ProxyMetrics;
  tally?: CaptureTally;
  /** the bucket (S3_BUCKET set): stale answers, and read-through */
  bucket?: BucketReader;
  /** the images this proxy handed off a moment ago (purges make it forget) */
  recent?: RecentKeys;
}

export interface ProxyApp {
  app: Hono<{ Bindings: HttpBindings }>;
  /** the server's request listener: forwards image requests itself, hands the rest to Hono */
  listener: (req: IncomingMessage, res: ServerResponse) => void;
  inflight: Inflight;
  tally: CaptureTally;
  /** requests for the same image in progress (coalescing) */
  flights: ForwardOptions['flights'];
}

// imgproxy only serves GET (and answers HEAD and OPTIONS without processing); anything else is
// refused here so that it never reaches imgproxy.
const FORWARDED_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

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
    handOffMs: config.proxy.enqueueWaitMs + config.proxy.enqueueTimeoutMs,
    track: (work: Promise<unknown>) => inflight.track(work),
    onOutcome: deps.onOutcome,
    metrics: deps.metrics,
    bucket: deps.bucket,
    readThrough: config.proxy.readThrough,
    flights: new Map(),
    negotiation: { seen: false },
  };

  const proxy = (req: IncomingMessage, res: ServerResponse): void => {
    forward(req, res, options).catch((error: Error) => {
      logger.error({ err: error.message, path: req.url }, 'Proxy failure');
      sendError(res, 502, 'imgproxy-cache could not forward the request');
    });
  };

  // Hono answers what is not forwarded: 405 for other methods, 400/414 for bad targets.
  const app = new Hono<{ Bindings: HttpBindings }>();
  app.all('*', (c) => {
    const method = c.env.incoming.method ?? '';
    if (!FORWARDED_METHODS.has(method)) {
      return c.text(`Method ${method} is not allowed: imgproxy-cache forwards GET, HEAD and OPTIONS\n`, 405, {
        allow: 'GET, HEAD, OPTIONS',
      });
    }
    // the listener forwards every GET, HEAD and OPTIONS whose target passes checkTarget
    const problem = checkTarget(c.env.incoming.url)!;
    return c.text(`${problem.reason}\n`, problem.status);
  });
  const hono = getRequestListener(app.fetch);

  // Image requests skip the adapter: building a web Request and Response for each costs a
  // quarter of the proxy's time (measured, bench/RESULTS.md), and HEAD must reach imgproxy as
  // HEAD (Hono answers HEAD by running the GET route).
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    if (FORWARDED_METHODS.has(req.method ?? '') && !checkTarget(req.url)) proxy(req, res);
    else void hono(req, res);
  };

  return { app, listener, inflight, tally, flights: options.flights };
}
