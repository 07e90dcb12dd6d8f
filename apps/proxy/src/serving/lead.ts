import { randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { decideAtHeaders, headerValue, type Logger } from '@imgproxy-cache/shared';
import { type Dispatcher, errors } from 'undici';
import type { Flight } from '../coalescing/flight.js';
import type { CacheOutcome } from '../handoff/outcome.js';
import { clientResponseHeaders } from '../imgproxy/headers.js';
import { type ImageRequest, plainText, readsThrough, type Serving } from './serving.js';
import { answerStale, answerStored } from './stored-answer.js';

// The request that fetches a flight's response: from the bucket when read-through finds the image,
// else from imgproxy, streamed to its clients as it arrives and, when it may be stored, copied for
// the hand-off; from the bucket again when imgproxy fails (stale).

/**
 * Fetches the response of `flight` and starts it; `decided` says, once known, whether others may
 * share it.
 */
export async function lead(req: IncomingMessage, image: ImageRequest, flight: Flight, s: Serving, decided: (share: boolean) => void): Promise<void> {
  const request = new LeadRequest(req, image, s);
  // Read-through: the bucket first, unless the image is being handed off right now, or its format
  // is left to imgproxy's negotiation (such images are never stored).
  const readThrough = request.cacheKey !== undefined && readsThrough(s, request.path) && s.recent.state(request.cacheKey) !== 'handing-off';
  let absent = false;
  if (readThrough) {
    const found = await request.fromBucket(flight, decided);
    if (found === 'answered') return;
    absent = found === 'absent';
  }
  const upstream = await request.fromImgproxy(flight, absent, decided);
  if (upstream) await request.answer(flight, upstream, { readThrough, absent }, decided);
}

/** One leading request: what it is, and each step from the bucket to imgproxy's answer. */
class LeadRequest {
  readonly method: string;
  readonly path: string;
  /** one id per request, the client's when it sent one: imgproxy logs it too */
  readonly requestId: string;
  readonly image: boolean;
  readonly cacheKey: string | undefined;
  private child: Logger | undefined;

  constructor(
    private readonly req: IncomingMessage,
    { path, cacheKey }: ImageRequest,
    private readonly s: Serving,
  ) {
    this.method = req.method ?? 'GET';
    this.path = path;
    this.requestId = headerValue(req.headers['x-request-id']) ?? randomUUID();
    this.image = cacheKey !== undefined;
    this.cacheKey = cacheKey;
  }

  /** made on first use: most requests log nothing */
  private log(): Logger {
    this.child ??= this.s.logger.child({ requestId: this.requestId });
    return this.child;
  }

  private outcome(o: CacheOutcome): void {
    this.s.onOutcome?.(o, this.path);
  }

  /** The stored image as the answer, or why there is none ('absent': the bucket does not hold it). */
  async fromBucket(flight: Flight, decided: (share: boolean) => void): Promise<'answered' | 'absent' | 'unknown'> {
    const { s, cacheKey, path } = this;
    const found = await s.stored!.read(cacheKey!, path, this.method as 'GET' | 'HEAD', 'read-through');
    if (typeof found === 'object') {
      this.outcome('hit');
      s.metrics?.hits.inc({ tier: 'bucket' });
      // followers join first: the whole answer is written at once, and let go once written
      decided(true);
      answerStored(flight, this.req, found, 'HIT', s);
      return 'answered';
    }
    if (found !== 'absent') return 'unknown';
    // an object the bucket removed (a lifecycle rule, by hand): stored again by this response
    s.recent.bucketLost(cacheKey!);
    return 'absent';
  }

  /** imgproxy's response, or undefined once the flight is answered without one (stale, 502, 504). */
  async fromImgproxy(flight: Flight, absent: boolean, decided: (share: boolean) => void): Promise<Dispatcher.ResponseData | undefined> {
    const { s } = this;
    const started = process.hrtime.bigint();
    try {
      const upstream = await s.imgproxy.request(this.req, this.requestId, flight.abort);
      s.metrics?.upstreamSeconds.observe({ method: this.method }, Number(process.hrtime.bigint() - started) / 1e9);
      return upstream;
    } catch (error) {
      if (flight.clients === 0) {
        decided(false);
        return undefined; // every client left first
      }
      const timedOut = error instanceof errors.HeadersTimeoutError;
      this.log().warn({ path: this.path, err: (error as Error).message }, 'imgproxy request failed');
      if (await answerStale(flight, this.req, s, this, absent, decided)) return undefined;
      decided(false);
      const { headers, body } = plainText(timedOut ? 'imgproxy did not answer in time' : 'imgproxy is unreachable');
      flight.respond(timedOut ? 504 : 502, headers, body);
      return undefined;
    }
  }

  /** imgproxy's answer to the flight's clients: streamed, and copied for the hand-off when it may be stored. */
  async answer(
    flight: Flight,
    { statusCode, headers, body }: Dispatcher.ResponseData,
    { readThrough, absent }: { readThrough: boolean; absent: boolean },
    decided: (share: boolean) => void,
  ): Promise<void> {
    const { s, cacheKey, path } = this;
    const xCache: OutgoingHttpHeaders = readThrough ? { 'x-cache': 'MISS' } : {};
    if (readThrough) s.metrics?.cacheAnswers.inc({ answer: 'MISS' });
    const skip = (reason: CacheOutcome) => {
      this.outcome(reason);
      if (s.logger.isLevelEnabled('debug')) this.log().debug({ path, reason, status: statusCode }, 'Not caching response');
    };
    if (statusCode >= 500 && this.image && s.stored) {
      // imgproxy failed: a stored image is better than its error
      const errorBody = Buffer.from(await body.arrayBuffer().catch(() => new ArrayBuffer(0)));
      if (await answerStale(flight, this.req, s, this, absent, decided)) return;
      skip('status');
      decided(false);
      flight.respond(statusCode, { ...clientResponseHeaders(headers), ...xCache }, errorBody);
      return;
    }

    const decision = decideAtHeaders({ method: this.method, path, status: statusCode, headers, maxBytes: s.cacheMaxBytes });
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
    if (tee) this.handOffWhenEnded(flight, headers, absent);
    flight.once('failed', (error: Error) =>
      this.log().warn({ path, received: flight.received, err: error.message }, 'imgproxy response was cut short; ending the client response'),
    );
    flight.once('abandoned', () => body.destroy());
    flight.once('ended', () => s.metrics?.bytesStreamed.inc(flight.received));
    // Shared (and kept whole) when it would be stored: the response every client of it would get.
    flight.start(statusCode, { ...clientResponseHeaders(headers), ...xCache }, body, decision.cache);
    decided(decision.cache);
  }

  private handOffWhenEnded(flight: Flight, headers: Dispatcher.ResponseData['headers'], absent: boolean): void {
    const { s, cacheKey, path, requestId } = this;
    // a purge from here on keeps this image out of memory (it may be what was purged)
    const since = s.handOff.mark();
    flight.once('ended', () =>
      s.handOff.completed({ cacheKey: cacheKey!, path, requestId, headers, body: flight.body(), received: flight.received, objectGone: absent, since }),
    );
    flight.once('failed', () => this.outcome('incomplete')); // decided cacheable at headers, cut short since
  }
}
