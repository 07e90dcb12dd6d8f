import type { IncomingMessage, ServerResponse } from 'node:http';
import { getRequestListener, type HttpBindings } from '@hono/node-server';
// Imported before the adapter exists, so the constant is a plain Response the adapter recognises
// (made after getRequestListener swaps the global Response, it would be a lightweight one).
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { checkTarget, type Logger, rawPathOf, sourceTagOfPath } from '@imgproxy-cache/shared';
import { type Context, Hono } from 'hono';
import { sendError } from './errors.js';

// The proxy's port: one Hono app. The image route streams the answer to the socket itself
// (serving/) and tells the adapter so (RESPONSE_ALREADY_SENT): no web Request or Response is built
// for it. Hono runs GET routes for HEAD, so the route forwards the request's own method: a HEAD
// reaches imgproxy as HEAD, and nothing is downloaded or stored for it.

export interface AppOptions {
  /** serves one request (serving/forward.ts) */
  serve: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  logger: Logger;
  /** CACHE_TAG_HEADER */
  tagHeader: string | undefined;
  /** IMGPROXY_BASE_URL, for the tags */
  baseUrl: string;
}

/** The app and the server's request listener; no I/O happens until a request arrives, so tests can serve it on port 0. */
export function createApp({ serve, logger, tagHeader, baseUrl }: AppOptions) {
  const proxy = (req: IncomingMessage, res: ServerResponse): void => {
    serve(req, res).catch((error: Error) => {
      logger.error({ err: error.message, path: req.url }, 'Proxy failure');
      sendError(res, 502, 'imgproxy-cache could not forward the request');
    });
  };

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
  return { app, listener };
}
