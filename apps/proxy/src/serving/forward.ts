import type { IncomingMessage, ServerResponse } from 'node:http';
import { cacheKeyOf, rawPathOf } from '@imgproxy-cache/shared';
import { coalescingKey } from '../coalescing/flights.js';
import { lead } from './lead.js';
import { readsThrough, type Serving } from './serving.js';
import { serveFromMemory } from './stored-answer.js';

// One request: from memory when it holds the image (read-through), else through a flight:
// concurrent GETs for the same image share one (coalescing), which lead.ts fetches from the bucket
// or imgproxy. A cacheable body is handed to the uploaders once complete; the client's response
// never waits for that.

export async function forward(req: IncomingMessage, res: ServerResponse, s: Serving): Promise<void> {
  const method = req.method ?? 'GET';
  const target = req.url ?? '/';
  const path = rawPathOf(target);
  // the object key of an image request (GET, HEAD), worked out once for memory, bucket and hand-off
  const request = { path, cacheKey: method === 'GET' || method === 'HEAD' ? cacheKeyOf(path) : undefined };
  if (request.cacheKey && s.stored?.memory.enabled) {
    // a hot image: from memory, before any coalescing or bucket read
    const entry = readsThrough(s, path) ? s.stored.inMemory(request.cacheKey) : undefined;
    if (entry) {
      serveFromMemory(req, res, entry, s);
      s.onOutcome?.('hit', path);
      return;
    }
  }
  if (method !== 'GET') return lead(req, request, s.flights.own(res), s, () => undefined);
  return s.flights.coalesce(
    coalescingKey(target, path, req.headers),
    res,
    (flight, decided) => lead(req, request, flight, s, decided),
    () => {
      s.metrics?.coalesced.inc();
      s.onOutcome?.('coalesced', path);
    },
  );
}
