import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import {
  cacheKeyOf,
  type Decision,
  decideAtHeaders,
  type Logger,
  notModified,
  notModifiedHeaders,
  type ProxyMetrics,
  rawPathOf,
  requestedFormat,
  type SourceIndex,
} from '@imgproxy-cache/shared';
import { type Dispatcher, errors } from 'undici';
import type { CaptureTally } from '../coalescing/capture.js';
import { Flight } from '../coalescing/flight.js';
import type { EnqueueOutcome, Enqueuer } from '../handoff/enqueue.js';
import { handOff, single } from '../handoff/hand-off.js';
import type { RecentKeys } from '../handoff/recent-keys.js';
import { clientResponseHeaders, upstreamRequestHeaders } from '../http/headers.js';
import type { StoredImage } from '../stored/bucket-reader.js';
import type { MemoryEntry } from '../stored/memory-tier.js';
import type { StoredImages } from '../stored/stored-images.js';

// One request: from memory or the bucket when they hold the image (read-through), else from imgproxy,
// streamed to the client byte for byte as it arrives, or from the bucket again when imgproxy fails
// (stale). Concurrent GETs for the same image share one imgproxy request (coalescing, flight.ts).
// A cacheable body is handed to the uploaders once complete (hand-off.ts); the client's response
// never waits for that.

export interface ForwardOptions {
  upstream: Dispatcher;
  /** path of IMGPROXY_URL without a trailing slash ('' for none) */
  basePath: string;
  cacheMaxBytes: number;
  upstreamTimeoutMs: number;
  enqueuer: Enqueuer;
  logger: Logger;
  /** bytes held for caching and coalescing in this process */
  tally: CaptureTally;
  /** images handed off a moment ago: not copied again */
  recent: RecentKeys;
  /** longest a hand-off takes (ENQUEUE_WAIT_MS and ENQUEUE_TIMEOUT_MS) */
  handOffMs: number;
  /** every hand-off in flight, so that shutdown can wait for them */
  track: (work: Promise<unknown>) => void;
  /** observes each cache decision (metrics, tests) */
  onOutcome?: (outcome: CacheOutcome, path: string) => void;
  metrics?: ProxyMetrics;
  /** memory (CACHE_MEMORY_BYTES) and the bucket, when S3_BUCKET is set: stale answers, and read-through */
  stored?: StoredImages;
  /** CACHE_READ_THROUGH */
  readThrough: boolean;
  /** requests for the same image in progress, by coalescing key */
  flights: Map<string, Coalesced>;
  /** imgproxy was seen negotiating formats by Accept (it answered `Vary: Accept`) */
  negotiation: { seen: boolean };
  /** source → stored keys (purge by source), written by the hand-off */
  sources?: SourceIndex;
}

/**
 * What happened to a response, as far as the cache is concerned: why it was not cached, what its
 * hand-off did, 'deduped' (handed off a moment ago), 'hit' and 'stale' (served from the bucket),
 * 'coalesced' (it shared another request's response).
 */
export type CacheOutcome = Exclude<Decision, { cache: true }>['reason'] | EnqueueOutcome | 'deduped' | 'hit' | 'stale' | 'coalesced';

/** A request to imgproxy that others may join, and the clients waiting to know whether they can. */
export interface Coalesced {
  flight: Flight;
  /** joined before the response started; told then whether they share it */
  waiting: Set<(share: boolean) => void>;
}

/** Request headers that may change imgproxy's answer: requests differing in them are not merged. */
const VARYING = [
  'authorization',
  'if-none-match',
  'if-modified-since',
  'range',
  'dpr',
  'width',
  'viewport-width',
  'sec-ch-dpr',
  'sec-ch-width',
  'sec-ch-viewport-width',
  'save-data',
];

/** The coalescing key: the request target, and what of the request may change the answer. */
export function coalescingKey(target: string, path: string, headers: IncomingHttpHeaders): string {
  let key = target;
  // Accept picks the format only where the URL names none
  if (requestedFormat(path) === undefined) key += `\n${single(headers.accept) ?? ''}`;
  for (const name of VARYING) {
    const value = headers[name];
    if (value !== undefined) key += `\n${name}:${single(value)}`;
  }
  return key;
}

export async function forward(req: IncomingMessage, res: ServerResponse, options: ForwardOptions): Promise<void> {
  const method = req.method ?? 'GET';
  if ((method === 'GET' || method === 'HEAD') && options.stored?.memory.enabled) {
    // a hot image: from memory, before any coalescing or bucket read
    const path = rawPathOf(req.url ?? '/');
    const entry = readsThrough(options, path) ? options.stored.inMemory(cacheKeyOf(path)) : undefined;
    if (entry) {
      serveFromMemory(req, res, entry, options);
      options.onOutcome?.('hit', path);
      return;
    }
  }
  if (method === 'GET') {
    const target = req.url ?? '/';
    const key = coalescingKey(target, rawPathOf(target), req.headers);
    const shared = options.flights.get(key);
    if (shared?.flight.joinable) return follow(req, res, shared, options);
    const flight = new Flight(options.cacheMaxBytes, options.tally);
    const coalesced: Coalesced = { flight, waiting: new Set() };
    options.flights.set(key, coalesced);
    const forget = () => {
      if (options.flights.get(key) === coalesced) options.flights.delete(key);
    };
    flight.once('ended', forget).once('failed', forget).once('abandoned', forget);
    flight.join(res);
    return lead(req, flight, options, (share) => {
      if (!share) forget();
      for (const tell of coalesced.waiting) tell(share);
      coalesced.waiting.clear();
    });
  }
  const flight = new Flight(options.cacheMaxBytes, options.tally);
  flight.join(res);
  return lead(req, flight, options, () => undefined);
}

/** A GET for an image another request is fetching: it shares that response, or asks on its own. */
function follow(req: IncomingMessage, res: ServerResponse, shared: Coalesced, options: ForwardOptions): Promise<void> {
  const path = rawPathOf(req.url ?? '/');
  const joined = () => {
    shared.flight.join(res);
    options.metrics?.coalesced.inc();
    options.onOutcome?.('coalesced', path);
  };
  if (shared.flight.started) {
    joined();
    return Promise.resolve();
  }
  return new Promise<void>((resolve, reject) => {
    const release = shared.flight.hold();
    const tell = (share: boolean) => {
      res.off('close', left);
      // a response already let go (written whole, every client done) cannot be joined any more
      if (share && shared.flight.replayable) {
        joined();
        resolve();
      } else {
        // not shareable (an error, a response for one client): its own request
        const own = new Flight(options.cacheMaxBytes, options.tally);
        own.join(res);
        lead(req, own, options, () => undefined).then(resolve, reject);
      }
      release();
    };
    const left = () => {
      shared.waiting.delete(tell);
      release();
      resolve();
    };
    shared.waiting.add(tell);
    res.once('close', left);
  });
}

/**
 * Fetches the response of `flight` (from the bucket or imgproxy) and starts it; `decided` says,
 * once known, whether others may share it.
 */
async function lead(req: IncomingMessage, flight: Flight, options: ForwardOptions, decided: (share: boolean) => void): Promise<void> {
  const target = req.url ?? '/';
  const method = req.method ?? 'GET';
  const path = rawPathOf(target);
  // One id per request, the client's when it sent one: imgproxy logs it too.
  const requestId = single(req.headers['x-request-id']) ?? randomUUID();
  let child: Logger | undefined; // made on first use: most requests log nothing
  const log = () => (child ??= options.logger.child({ requestId }));
  const debug = options.logger.isLevelEnabled('debug');
  const outcome = (o: CacheOutcome) => options.onOutcome?.(o, path);
  const image = method === 'GET' || method === 'HEAD';
  const cacheKey = image ? cacheKeyOf(path) : undefined;

  // Read-through: the bucket first, unless the image is being handed off right now, or its format
  // is left to imgproxy's negotiation (such images are never stored).
  let absent = false;
  const readThrough = cacheKey !== undefined && readsThrough(options, path) && options.recent.state(cacheKey) !== 'handing-off';
  if (readThrough) {
    const found = await options.stored!.read(cacheKey, path, method as 'GET' | 'HEAD', 'read-through');
    if (typeof found === 'object') {
      outcome('hit');
      options.metrics?.hits.inc({ tier: 'bucket' });
      // followers join first: the whole answer is written at once, and let go once written
      decided(true);
      answerStored(flight, req, found, 'HIT', options);
      return;
    }
    absent = found === 'absent';
    // an object the bucket removed (a lifecycle rule, by hand): stored again by this response
    if (absent) options.recent.bucketLost(cacheKey);
  }

  const headersOut = upstreamRequestHeaders(req.headers, req.socket.remoteAddress);
  headersOut['x-request-id'] = requestId;
  const started = process.hrtime.bigint();
  let upstream: Dispatcher.ResponseData;
  try {
    upstream = await options.upstream.request({
      method: method as Dispatcher.HttpMethod,
      path: options.basePath + target,
      headers: headersOut,
      // undici takes an EventEmitter as its abort signal: far cheaper than an AbortController (a
      // DOM EventTarget) on every request. It fires when the last client left.
      signal: flight.abort,
      headersTimeout: options.upstreamTimeoutMs,
      bodyTimeout: options.upstreamTimeoutMs,
    });
  } catch (error) {
    if (flight.clients === 0) {
      decided(false);
      return; // every client left first
    }
    const timedOut = error instanceof errors.HeadersTimeoutError;
    log().warn({ path, err: (error as Error).message }, 'imgproxy request failed');
    if (await answerStale(flight, req, options, cacheKey, absent, decided)) return;
    decided(false);
    const status = timedOut ? 504 : 502;
    const message = `${timedOut ? 'imgproxy did not answer in time' : 'imgproxy is unreachable'}\n`;
    flight.respond(
      status,
      { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(message), 'cache-control': 'no-store' },
      Buffer.from(message),
    );
    return;
  }
  options.metrics?.upstreamSeconds.observe({ method }, Number(process.hrtime.bigint() - started) / 1e9);
  const { statusCode, headers, body } = upstream;
  const xCache: OutgoingHttpHeaders = readThrough ? { 'x-cache': 'MISS' } : {};
  if (readThrough) options.metrics?.cacheAnswers.inc({ answer: 'MISS' });

  const skip = (reason: CacheOutcome) => {
    outcome(reason);
    if (debug) log().debug({ path, reason, status: statusCode }, 'Not caching response');
  };
  if (statusCode >= 500 && image && options.stored) {
    // imgproxy failed: a stored image is better than its error
    const errorBody = Buffer.from(await body.arrayBuffer().catch(() => new ArrayBuffer(0)));
    if (await answerStale(flight, req, options, cacheKey, absent, decided)) return;
    skip('status');
    decided(false);
    flight.respond(statusCode, { ...clientResponseHeaders(headers), ...xCache }, errorBody);
    return;
  }

  const decision = decideAtHeaders({ method, path, status: statusCode, headers, maxBytes: options.cacheMaxBytes });
  if (single(headers.vary)?.toLowerCase().includes('accept')) options.negotiation.seen = true;
  let tee = false;
  if (!decision.cache) {
    skip(decision.reason);
  } else if (cacheKey && !absent && options.recent.has(cacheKey)) {
    skip('deduped'); // handed off a moment ago
  } else {
    // the backlog was full a moment ago, or Redis is not answering: copying it would be for nothing
    const refused = options.enqueuer.shedding(cacheKey!);
    if (refused) skip(refused);
    else tee = true;
  }

  if (tee) {
    // a purge from here on keeps this image out of memory (it may be what was purged)
    const since = options.stored?.mark() ?? 0;
    flight.once('ended', () =>
      handOff(
        { cacheKey: cacheKey!, path, requestId, headers, body: flight.body(), received: flight.received, objectGone: absent, since },
        { ...options, logger: options.logger },
      ),
    );
    flight.once('failed', () => outcome('incomplete')); // decided cacheable at headers, cut short since
  }
  flight.once('failed', (error: Error) =>
    log().warn({ path, received: flight.received, err: error.message }, 'imgproxy response was cut short; ending the client response'),
  );
  flight.once('abandoned', () => body.destroy());
  flight.once('ended', () => options.metrics?.bytesStreamed.inc(flight.received));
  // Shared (and kept whole) when it would be stored: the response every client of it would get.
  flight.start(statusCode, { ...clientResponseHeaders(headers), ...xCache }, body, decision.cache);
  decided(decision.cache);
}

/**
 * Stored images are served for this path: read-through is on with a bucket, and the URL names its
 * format where imgproxy negotiates them (such images are never stored).
 */
function readsThrough(options: ForwardOptions, path: string): boolean {
  return options.readThrough && options.stored !== undefined && !(options.negotiation.seen && requestedFormat(path) === undefined);
}

/** A stored image from memory, written at once: its stored headers, `X-Cache: HIT`, 304 when the client has it. */
function serveFromMemory(req: IncomingMessage, res: ServerResponse, entry: MemoryEntry, options: ForwardOptions): void {
  options.metrics?.cacheAnswers.inc({ answer: 'HIT' });
  options.metrics?.hits.inc({ tier: 'memory' });
  const { headers } = entry;
  const ifNoneMatch = single(req.headers['if-none-match']) ?? undefined;
  const ifModifiedSince = single(req.headers['if-modified-since']) ?? undefined;
  if ((ifNoneMatch || ifModifiedSince) && notModified({ ifNoneMatch, ifModifiedSince }, { etag: headers.etag, lastModified: headers['last-modified'] })) {
    res.writeHead(304, notModifiedHeaders(headers, 'HIT'));
    res.end();
    return;
  }
  entry.served ??= { ...headers, 'x-cache': 'HIT' };
  res.writeHead(200, entry.served);
  res.end(req.method === 'HEAD' ? undefined : entry.body);
}

/** imgproxy failed: answers with the stored image if memory or the bucket has one (not for OPTIONS). */
async function answerStale(
  flight: Flight,
  req: IncomingMessage,
  options: ForwardOptions,
  cacheKey: string | undefined,
  absent: boolean,
  decided: (share: boolean) => void,
): Promise<boolean> {
  if (!options.stored || !cacheKey || absent) return false;
  const entry = options.stored.memory.enabled ? options.stored.inMemory(cacheKey) : undefined;
  const found: StoredImage | 'absent' | 'unavailable' = entry
    ? { status: 200, body: entry.body, headers: entry.headers, objectEtag: entry.objectEtag }
    : await options.stored.read(cacheKey, rawPathOf(req.url ?? '/'), req.method as 'GET' | 'HEAD', 'stale');
  if (typeof found !== 'object') return false;
  options.metrics?.hits.inc({ tier: entry ? 'memory' : 'bucket' });
  options.onOutcome?.('stale', rawPathOf(req.url ?? '/'));
  decided(true); // followers join before the answer is written (see the hit above)
  answerStored(flight, req, found, 'STALE', options);
  return true;
}

/** A stored image as the response: its stored headers, `X-Cache`, and 304 when the client has it. */
function answerStored(flight: Flight, req: IncomingMessage, image: StoredImage, xCache: 'HIT' | 'STALE', options: ForwardOptions): void {
  options.metrics?.cacheAnswers.inc({ answer: xCache });
  const conditions = { ifNoneMatch: single(req.headers['if-none-match']) ?? undefined, ifModifiedSince: single(req.headers['if-modified-since']) ?? undefined };
  if (notModified(conditions, { etag: image.headers.etag, lastModified: image.headers['last-modified'] })) {
    flight.respond(304, notModifiedHeaders(image.headers, xCache), undefined);
    return;
  }
  flight.respond(200, { ...image.headers, 'x-cache': xCache }, req.method === 'HEAD' ? undefined : image.body);
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
