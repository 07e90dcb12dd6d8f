import { Hono } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { Dispatcher } from 'undici';
import type { Config, Logger, ProxyMetrics } from '@imgproxy-cache/shared';
import type { Enqueuer } from './enqueue.js';
import { forward, sendError, type CacheOutcome } from './forward.js';
import { Inflight } from './inflight.js';
import { CaptureTally } from './capture.js';
import { checkTarget } from './request-target.js';
import { RecentKeys } from './recent-keys.js';

export interface ProxyDeps {
  config: Config;
  upstream: Dispatcher;
  enqueuer: Enqueuer;
  logger: Logger;
  onOutcome?: (outcome: CacheOutcome, path: string) => void;
  metrics?: ProxyMetrics;
  tally?: CaptureTally;
}

export interface ProxyApp {
  app: Hono<{ Bindings: HttpBindings }>;
  /** the server's fetch callback: the Hono app, except HEAD (see below) */
  fetch: (request: Request, env: HttpBindings) => Response | Promise<Response>;
  inflight: Inflight;
  tally: CaptureTally;
}

// imgproxy only serves GET (and answers HEAD and OPTIONS without processing); anything else is
// refused here so that it never reaches imgproxy.
const FORWARDED_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Wires the proxy; no I/O happens until a request arrives, so tests can serve it on port 0. */
export function createApp(deps: ProxyDeps): ProxyApp {
  const { config, logger } = deps;
  const inflight = new Inflight();
  const tally = deps.tally ?? new CaptureTally();
  const recent = new RecentKeys(config.proxy.recentKeys);
  const basePath = config.proxy.imgproxyUrl.pathname.replace(/\/+$/, '');
  const app = new Hono<{ Bindings: HttpBindings }>();

  const proxy = ({ incoming, outgoing }: HttpBindings): Response => {
    forward(incoming, outgoing, {
      upstream: deps.upstream,
      basePath,
      cacheMaxBytes: config.proxy.cacheMaxBytes,
      upstreamTimeoutMs: config.proxy.upstreamTimeoutMs,
      enqueuer: deps.enqueuer,
      logger,
      tally,
      recent,
      track: (work) => inflight.track(work),
      onOutcome: deps.onOutcome,
      metrics: deps.metrics,
    }).catch((error: Error) => {
      logger.error({ err: error.message, path: incoming.url }, 'Proxy failure');
      sendError(outgoing, 502, 'imgproxy-cache could not forward the request');
    });
    return RESPONSE_ALREADY_SENT;
  };

  app.all('*', (c) => {
    const { incoming } = c.env;
    const method = incoming.method ?? '';
    if (!FORWARDED_METHODS.has(method)) {
      return c.text(`Method ${method} is not allowed: imgproxy-cache forwards GET, HEAD and OPTIONS\n`, 405, {
        allow: 'GET, HEAD, OPTIONS',
      });
    }
    const problem = checkTarget(incoming.url);
    if (problem) return c.text(`${problem.reason}\n`, problem.status);
    return proxy(c.env);
  });

  // Requests to forward skip the router: Hono answers HEAD by running the GET route and
  // re-wrapping its Response without a body, which loses RESPONSE_ALREADY_SENT (and HEAD must
  // reach imgproxy as HEAD); and routing every image request through it costs time for nothing.
  // The router answers the rest (405, 400).
  const fetch = (request: Request, env: HttpBindings): Response | Promise<Response> =>
    FORWARDED_METHODS.has(env.incoming.method ?? '') && !checkTarget(env.incoming.url) ? proxy(env) : app.fetch(request, env);

  return { app, fetch, inflight, tally };
}
