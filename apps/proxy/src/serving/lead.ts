import { randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { cacheKeyOf, decideAtHeaders, headerValue, type Logger, rawPathOf } from '@imgproxy-cache/shared';
import { type Dispatcher, errors } from 'undici';
import type { Flight } from '../coalescing/flight.js';
import type { CacheOutcome } from '../handoff/outcome.js';
import { clientResponseHeaders } from '../imgproxy/headers.js';
import { readsThrough, type Serving } from './serving.js';
import { answerStale, answerStored } from './stored-answer.js';

// The request that fetches a flight's response: from the bucket when read-through finds the image,
// else from imgproxy, streamed to its clients as it arrives and, when it may be stored, copied for
// the hand-off; from the bucket again when imgproxy fails (stale).

/**
 * Fetches the response of `flight` and starts it; `decided` says, once known, whether others may
 * share it.
 */
export async function lead(req: IncomingMessage, flight: Flight, s: Serving, decided: (share: boolean) => void): Promise<void> {
  const method = req.method ?? 'GET';
  const path = rawPathOf(req.url ?? '/');
  // One id per request, the client's when it sent one: imgproxy logs it too.
  const requestId = headerValue(req.headers['x-request-id']) ?? randomUUID();
  let child: Logger | undefined; // made on first use: most requests log nothing
  const log = () => (child ??= s.logger.child({ requestId }));
  const outcome = (o: CacheOutcome) => s.onOutcome?.(o, path);
  const image = method === 'GET' || method === 'HEAD';
  const cacheKey = image ? cacheKeyOf(path) : undefined;

  // Read-through: the bucket first, unless the image is being handed off right now, or its format
  // is left to imgproxy's negotiation (such images are never stored).
  let absent = false;
  const readThrough = cacheKey !== undefined && readsThrough(s, path) && s.recent.state(cacheKey) !== 'handing-off';
  if (readThrough) {
    const found = await s.stored!.read(cacheKey, path, method as 'GET' | 'HEAD', 'read-through');
    if (typeof found === 'object') {
      outcome('hit');
      s.metrics?.hits.inc({ tier: 'bucket' });
      // followers join first: the whole answer is written at once, and let go once written
      decided(true);
      answerStored(flight, req, found, 'HIT', s);
      return;
    }
    absent = found === 'absent';
    // an object the bucket removed (a lifecycle rule, by hand): stored again by this response
    if (absent) s.recent.bucketLost(cacheKey);
  }

  const started = process.hrtime.bigint();
  let upstream: Dispatcher.ResponseData;
  try {
    upstream = await s.imgproxy.request(req, requestId, flight.abort);
  } catch (error) {
    if (flight.clients === 0) {
      decided(false);
      return; // every client left first
    }
    const timedOut = error instanceof errors.HeadersTimeoutError;
    log().warn({ path, err: (error as Error).message }, 'imgproxy request failed');
    if (await answerStale(flight, req, s, cacheKey, absent, decided)) return;
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
  s.metrics?.upstreamSeconds.observe({ method }, Number(process.hrtime.bigint() - started) / 1e9);
  const { statusCode, headers, body } = upstream;
  const xCache: OutgoingHttpHeaders = readThrough ? { 'x-cache': 'MISS' } : {};
  if (readThrough) s.metrics?.cacheAnswers.inc({ answer: 'MISS' });

  const skip = (reason: CacheOutcome) => {
    outcome(reason);
    if (s.logger.isLevelEnabled('debug')) log().debug({ path, reason, status: statusCode }, 'Not caching response');
  };
  if (statusCode >= 500 && image && s.stored) {
    // imgproxy failed: a stored image is better than its error
    const errorBody = Buffer.from(await body.arrayBuffer().catch(() => new ArrayBuffer(0)));
    if (await answerStale(flight, req, s, cacheKey, absent, decided)) return;
    skip('status');
    decided(false);
    flight.respond(statusCode, { ...clientResponseHeaders(headers), ...xCache }, errorBody);
    return;
  }

  const decision = decideAtHeaders({ method, path, status: statusCode, headers, maxBytes: s.cacheMaxBytes });
  if (headerValue(headers.vary)?.toLowerCase().includes('accept')) s.negotiation.seen = true;
  let tee = false;
  if (!decision.cache) {
    skip(decision.reason);
  } else if (cacheKey && !absent && s.recent.has(cacheKey)) {
    skip('deduped'); // handed off a moment ago
  } else {
    // the backlog was full a moment ago, or Redis is not answering: copying it would be for nothing
    const refused = s.enqueuer.shedding(cacheKey!);
    if (refused) skip(refused);
    else tee = true;
  }

  if (tee) {
    // a purge from here on keeps this image out of memory (it may be what was purged)
    const since = s.handOff.mark();
    flight.once('ended', () =>
      s.handOff.completed({ cacheKey: cacheKey!, path, requestId, headers, body: flight.body(), received: flight.received, objectGone: absent, since }),
    );
    flight.once('failed', () => outcome('incomplete')); // decided cacheable at headers, cut short since
  }
  flight.once('failed', (error: Error) =>
    log().warn({ path, received: flight.received, err: error.message }, 'imgproxy response was cut short; ending the client response'),
  );
  flight.once('abandoned', () => body.destroy());
  flight.once('ended', () => s.metrics?.bytesStreamed.inc(flight.received));
  // Shared (and kept whole) when it would be stored: the response every client of it would get.
  flight.start(statusCode, { ...clientResponseHeaders(headers), ...xCache }, body, decision.cache);
  decided(decision.cache);
}
