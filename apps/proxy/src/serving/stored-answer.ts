import type { IncomingMessage, ServerResponse } from 'node:http';
import { headerValue, notModified, notModifiedHeaders } from '@imgproxy-cache/shared';
import type { Flight } from '../coalescing/flight.js';
import type { StoredImage } from '../stored/bucket-reader.js';
import type { MemoryEntry } from '../stored/memory-tier.js';
import type { ImageRequest, Serving } from './serving.js';

// A stored image as the answer: from memory at once, or a flight's (a read-through HIT, a STALE
// answer for a failing imgproxy), with the headers the MISS had, `X-Cache`, and 304 when the
// client's copy is current.

const conditionsOf = (req: IncomingMessage) => ({
  ifNoneMatch: headerValue(req.headers['if-none-match']),
  ifModifiedSince: headerValue(req.headers['if-modified-since']),
});

/** A stored image from memory, written at once. */
export function serveFromMemory(req: IncomingMessage, res: ServerResponse, entry: MemoryEntry, s: Serving): void {
  s.metrics?.cacheAnswers.inc({ answer: 'HIT' });
  s.metrics?.hits.inc({ tier: 'memory' });
  const { headers } = entry;
  const conditions = conditionsOf(req);
  if ((conditions.ifNoneMatch || conditions.ifModifiedSince) && notModified(conditions, { etag: headers.etag, lastModified: headers['last-modified'] })) {
    res.writeHead(304, notModifiedHeaders(headers, 'HIT'));
    res.end();
    return;
  }
  entry.served ??= { ...headers, 'x-cache': 'HIT' };
  res.writeHead(200, entry.served);
  res.end(req.method === 'HEAD' ? undefined : entry.body);
}

/** A stored image as a flight's response. */
export function answerStored(flight: Flight, req: IncomingMessage, image: StoredImage, xCache: 'HIT' | 'STALE', s: Serving): void {
  s.metrics?.cacheAnswers.inc({ answer: xCache });
  if (notModified(conditionsOf(req), { etag: image.headers.etag, lastModified: image.headers['last-modified'] })) {
    flight.respond(304, notModifiedHeaders(image.headers, xCache), undefined);
    return;
  }
  flight.respond(200, { ...image.headers, 'x-cache': xCache }, req.method === 'HEAD' ? undefined : image.body);
}

/** imgproxy failed: answers with the stored image if memory or the bucket has one (not for OPTIONS). */
export async function answerStale(
  flight: Flight,
  req: IncomingMessage,
  s: Serving,
  { path, cacheKey }: ImageRequest,
  absent: boolean,
  decided: (share: boolean) => void,
): Promise<boolean> {
  if (!s.stored || !cacheKey || absent) return false;
  const entry = s.stored.memory.enabled ? s.stored.inMemory(cacheKey) : undefined;
  const found: StoredImage | 'absent' | 'unavailable' = entry
    ? { status: 200, body: entry.body, headers: entry.headers, objectEtag: entry.objectEtag }
    : await s.stored.read(cacheKey, path, req.method as 'GET' | 'HEAD', 'stale');
  if (typeof found !== 'object') return false;
  s.metrics?.hits.inc({ tier: entry ? 'memory' : 'bucket' });
  s.onOutcome?.('stale', path);
  decided(true); // followers join before the answer is written (see lead.ts's hit)
  answerStored(flight, req, found, 'STALE', s);
  return true;
}
