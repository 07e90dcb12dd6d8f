import type { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Dispatcher } from 'undici';
import { upstreamRequestHeaders } from './headers.js';

// The request to imgproxy for a client's: its method and target after IMGPROXY_URL's path, the
// client's headers but hop-by-hop ones, one request id, and UPSTREAM_TIMEOUT_MS for the headers and
// for each silence of the body.

export class Imgproxy {
  constructor(
    private readonly pool: Dispatcher,
    /** path of IMGPROXY_URL without a trailing slash ('' for none) */
    private readonly basePath: string,
    private readonly timeoutMs: number,
  ) {}

  /** `abort` fires when the last client left: undici takes an EventEmitter as its signal, far cheaper than an AbortController per request. */
  request(req: IncomingMessage, requestId: string, abort: EventEmitter): Promise<Dispatcher.ResponseData> {
    const headers = upstreamRequestHeaders(req.headers, req.socket.remoteAddress);
    headers['x-request-id'] = requestId;
    return this.pool.request({
      method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
      path: this.basePath + (req.url ?? '/'),
      headers,
      signal: abort,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
  }
}
