import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { cacheKeyOf, crc32Of, encodePayload, type Logger, type ProxyMetrics, rawPathOf } from '@imgproxy-cache/shared';
import { type Dispatcher, errors } from 'undici';
import { contentLength, type Decision, decideAtEnd, decideAtHeaders } from './cacheability.js';
import { CappedCapture, type CaptureTally } from './capture.js';
import type { EnqueueOutcome, Enqueuer } from './enqueue.js';
import { clientResponseHeaders, upstreamRequestHeaders } from './headers.js';
import type { RecentKeys } from './recent-keys.js';

// Streams one request through to imgproxy and its response back, byte for byte, writing straight
// to Node's response (no web-stream bridging) with backpressure both ways. While streaming, a
// cacheable body is copied into a capped buffer; when it has ended complete, it is handed to the
// enqueuer. The client's response never waits for that.

export interface ForwardOptions {
  upstream: Dispatcher;
  /** path of IMGPROXY_URL without a trailing slash ('' for none) */
  basePath: string;
  cacheMaxBytes: number;
  upstreamTimeoutMs: number;
  enqueuer: Enqueuer;
  logger: Logger;
  /** bytes held by captures in this process */
  tally: CaptureTally;
  /** images handed off a moment ago: not copied again */
  recent: RecentKeys;
  /** longest a hand-off takes (ENQUEUE_TIMEOUT_MS) */
  handOffMs: number;
  /** every enqueue in flight, so that shutdown can wait for them */
  track: (work: Promise<unknown>) => void;
  /** observes each cache decision (metrics, tests) */
  onOutcome?: (outcome: CacheOutcome, path: string) => void;
  metrics?: ProxyMetrics;
}

/** 'deduped': handed off by this proxy a moment ago (see RecentKeys), so not copied at all. */
export type CacheOutcome = Exclude<Decision, { cache: true }>['reason'] | EnqueueOutcome | 'deduped';

/** How long an image is remembered after each hand-off outcome; others are not remembered. */
const REMEMBER_MS: Partial<Record<EnqueueOutcome, number>> = {
  uploaded: 5 * 60_000,
  queued: 15_000,
  requeued: 15_000,
  refilled: 15_000,
  'already-queued': 15_000,
};

export async function forward(req: IncomingMessage, res: ServerResponse, options: ForwardOptions): Promise<void> {
  const target = req.url ?? '/';
  const method = req.method ?? 'GET';
  const path = rawPathOf(target);
  // One id per request, the client's when it sent one: imgproxy logs it too.
  const requestId = single(req.headers['x-request-id']) ?? randomUUID();
  let child: Logger | undefined; // made on first use: most requests log nothing
  const log = () => (child ??= options.logger.child({ requestId }));
  const debug = options.logger.isLevelEnabled('debug');
  const headersOut = upstreamRequestHeaders(req.headers, req.socket.remoteAddress);
  headersOut['x-request-id'] = requestId;

  // undici takes an EventEmitter as its abort signal: far cheaper than an AbortController (a DOM
  // EventTarget) on every request. Only a client that leaves early fires it. (It must not have an
  // `aborted` property: undici would take it for an AbortSignal.)
  const abort = new EventEmitter();
  let clientLeft = false;
  res.once('close', () => {
    if (res.writableFinished) return;
    clientLeft = true;
    abort.emit('abort');
  });

  const started = process.hrtime.bigint();
  let upstream: Dispatcher.ResponseData;
  try {
    upstream = await options.upstream.request({
      method: method as Dispatcher.HttpMethod,
      path: options.basePath + target,
      headers: headersOut,
      signal: abort,
      headersTimeout: options.upstreamTimeoutMs,
      bodyTimeout: options.upstreamTimeoutMs,
    });
  } catch (error) {
    if (clientLeft) return; // the client left first
    const timedOut = error instanceof errors.HeadersTimeoutError;
    log().warn({ path, err: (error as Error).message }, 'imgproxy request failed');
    sendError(res, timedOut ? 504 : 502, timedOut ? 'imgproxy did not answer in time' : 'imgproxy is unreachable');
    return;
  }

  options.metrics?.upstreamSeconds.observe({ method }, Number(process.hrtime.bigint() - started) / 1e9);
  const { statusCode, headers, body } = upstream;
  const decision = decideAtHeaders({ method, path, status: statusCode, headers, maxBytes: options.cacheMaxBytes });
  const skip = (reason: CacheOutcome) => {
    options.onOutcome?.(reason, path);
    if (debug) log().debug({ path, reason, status: statusCode }, 'Not caching response');
  };
  let cacheKey: string | undefined;
  if (!decision.cache) {
    skip(decision.reason);
  } else {
    const key = cacheKeyOf(path);
    // Handed off a moment ago; or the backlog was full a moment ago, or Redis is not answering:
    // copying this one would be for nothing.
    const refused = options.recent.has(key) ? 'deduped' : options.enqueuer.shedding(key);
    if (refused) skip(refused);
    else cacheKey = key;
  }
  const capture = cacheKey ? new CappedCapture(options.cacheMaxBytes, options.tally) : undefined;

  res.writeHead(statusCode, clientResponseHeaders(headers));

  let received = 0;
  let ended = false;
  body.on('data', (chunk: Buffer) => {
    received += chunk.length;
    capture?.push(chunk);
    if (!res.write(chunk)) body.pause();
  });
  res.on('drain', () => body.resume());
  body.once('error', (error) => {
    if (capture) {
      capture.release();
      options.onOutcome?.('incomplete', path); // decided cacheable at headers, cut short since
    }
    if (!res.destroyed) {
      log().warn({ path, received, err: error.message }, 'imgproxy response was cut short; ending the client response');
      res.destroy(error);
    }
  });
  res.once('close', () => {
    options.metrics?.bytesStreamed.inc(received);
    // The client left (or we cut it): stop downloading what nobody will read.
    if (!ended) body.destroy();
  });
  body.once('end', () => {
    ended = true;
    res.end();
    if (!capture || !cacheKey) return;
    const chunks = capture.captured();
    const verdict = decideAtEnd({ received, expected: contentLength(headers), maxBytes: options.cacheMaxBytes });
    if (!verdict.cache || !chunks) {
      capture.release();
      const reason = verdict.cache ? 'too-large' : verdict.reason;
      options.onOutcome?.(reason, path);
      if (debug) log().debug({ path, reason, received }, 'Not caching response');
      return;
    }
    const payload = encodePayload(
      {
        contentType: single(headers['content-type']),
        cacheControl: single(headers['cache-control']),
        contentDisposition: single(headers['content-disposition']),
        size: received,
        crc32: crc32Of(chunks),
        receivedAt: Date.now(),
        requestId,
      },
      chunks,
    );
    // the payload is a copy: it is what is held until Redis has it
    capture.release();
    options.tally.add(payload.length);
    // While this hand-off runs, the next response for the image is not copied: it would only find
    // the job this one is making.
    options.recent.remember(cacheKey, options.handOffMs);
    const work = options.enqueuer
      .enqueue({ data: { cacheKey, path, requestId }, payload })
      .then((outcome) => {
        const rememberMs = REMEMBER_MS[outcome];
        if (rememberMs) options.recent.remember(cacheKey, rememberMs);
        else options.recent.forget(cacheKey); // not handed off: the next response tries again
        options.onOutcome?.(outcome, path);
        if (debug) log().debug({ path, outcome }, 'Cache hand-off');
      })
      .finally(() => options.tally.add(-payload.length));
    options.track(work);
  });
}

function single(value: string | string[] | undefined): string | null {
  if (value === undefined) return null;
  return Array.isArray(value) ? value.join(', ') : value;
}

export function sendError(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `${message}\n`;
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}
