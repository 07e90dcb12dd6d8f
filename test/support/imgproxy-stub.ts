import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { makePng } from './png.mjs';

// An HTTP server that stands in for imgproxy: real image bytes with imgproxy's headers and status
// codes (see PITFALLS.md), plus switches for the behaviours the proxy must survive: slow, cut
// short, Vary, ENFORCE_* format swaps, errors. A test either sets the global switches or installs
// a handler for one path.
//
// Two generations of imgproxy's conditional headers (`version`):
// - 3.x with IMGPROXY_USE_ETAG: an ETag of its own for each variant (a hash of the options and the
//   source), compared by imgproxy itself; no Last-Modified, no Content-Security-Policy.
// - 4.x (4.0.6 and later, read in its source at v4.0.12): the source's ETag and Last-Modified on every
//   variant of it; If-None-Match and If-Modified-Since forwarded to the source, whose 304 is passed
//   back; a Content-Security-Policy on every answer; no Cache-Control on errors; a source 4xx passed
//   through, a source 5xx answered 502.

export interface StubReply {
  status?: number;
  headers?: Record<string, string | string[]>;
  body?: Buffer;
  /** send this many bytes of the body, then destroy the connection */
  cutAfter?: number;
  /** omit Content-Length (chunked) */
  chunked?: boolean;
  /** send the body in pieces of this size, waiting `delayMs` between them */
  pieceSize?: number;
  delayMs?: number;
  /** after the first piece, wait for this before sending the rest */
  holdAfterFirstPiece?: Promise<void>;
  /** wait for this before sending anything (status and headers included) */
  holdBeforeHeaders?: Promise<void>;
}

export interface StubOptions {
  /** like AUTO_WEBP/ENFORCE_*: send this Vary on every response */
  vary?: string;
  /** like ENFORCE_WEBP: answer this format whatever the URL asked */
  enforceFormat?: string;
  ttl?: number;
  /** imgproxy's generation (3 by default) */
  version?: 3 | 4;
}

/** imgproxy 4.0.6+'s Content-Security-Policy (server/responsewriter/writer.go) */
export const IMGPROXY4_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox";

/** A source image as imgproxy 4 sees it: its validators change when it does. */
export interface StubSource {
  etag: string;
  lastModified: string;
  /** what fetching it answers: 200, or a source error (404, 503...) */
  status: number;
  /** counts its changes: every variant renders anew */
  revision: number;
}

export interface ImgproxyStub {
  url: string;
  port: number;
  server: Server;
  requests: { method: string; url: string; headers: IncomingMessage['headers'] }[];
  options: StubOptions;
  healthy: boolean;
  /** reply for paths starting with `prefix` */
  on(prefix: string, reply: (req: IncomingMessage) => StubReply): void;
  /** the bytes the stub serves for a path (what the client and the bucket must get) */
  imageFor(path: string): Buffer;
  /** the ETag imgproxy sends with a path's 200 (3.x: the variant's own; 4.x: its source's) */
  etagFor(path: string): string;
  /** imgproxy 4: the source a path renders, as the stub knows it */
  sourceOf(path: string): StubSource;
  /** imgproxy 4: the source changes (new bytes for every variant, new validators) */
  updateSource(path: string): StubSource;
  close(): Promise<void>;
}

/** The source URL part of an imgproxy path (`/plain/<url>@fmt`, or the last segment without its extension). */
function sourceKey(path: string): string {
  const plain = /\/plain\/(.+?)(?:@[a-z0-9]+)?$/.exec(path);
  if (plain) return plain[1]!;
  return path
    .split('/')
    .at(-1)!
    .replace(/\.[a-z0-9]+$/, '');
}

const CONTENT_TYPES: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  avif: 'image/avif',
};

function formatOf(path: string): string {
  const at = /@([a-z0-9]+)$/.exec(path) ?? /\.([a-z0-9]+)$/.exec(path);
  return at?.[1] ?? 'png';
}

export async function startImgproxyStub(initial: StubOptions = {}): Promise<ImgproxyStub> {
  const handlers: { prefix: string; reply: (req: IncomingMessage) => StubReply }[] = [];
  const images = new Map<string, Buffer>();
  const sources = new Map<string, StubSource>();
  const newSource = (key: string, revision: number): StubSource => ({
    etag: `"src-${createHash('md5').update(`${key}#${revision}`).digest('hex').slice(0, 12)}"`,
    lastModified: new Date(Date.UTC(2026, 0, 1) + revision * 86_400_000).toUTCString(),
    status: 200,
    revision,
  });

  const stub: ImgproxyStub = {
    url: '',
    port: 0,
    server: undefined as unknown as Server,
    requests: [],
    options: { ttl: 31536000, ...initial },
    healthy: true,
    on: (prefix, reply) => handlers.unshift({ prefix, reply }),
    imageFor(path) {
      const revision = stub.options.version === 4 ? stub.sourceOf(path).revision : 0;
      const id = revision === 0 ? path : `${path}#${revision}`;
      let image = images.get(id);
      if (!image) {
        image = makePng(id, 48, 48);
        images.set(id, image);
      }
      return image;
    },
    etagFor(path) {
      if (stub.options.version === 4) return stub.sourceOf(path).etag;
      return `"v3-${createHash('md5').update(path).digest('hex').slice(0, 16)}"`;
    },
    sourceOf(path) {
      const key = sourceKey(path);
      let source = sources.get(key);
      if (!source) {
        source = newSource(key, 0);
        sources.set(key, source);
      }
      return source;
    },
    updateSource(path) {
      const source = newSource(sourceKey(path), stub.sourceOf(path).revision + 1);
      sources.set(sourceKey(path), source);
      return source;
    },
    close: async () => {
      stub.server.closeAllConnections();
      await new Promise((resolve) => stub.server.close(resolve));
    },
  };

  const defaultReply = (req: IncomingMessage): StubReply => {
    const path = (req.url ?? '/').split('?')[0]!;
    const format = stub.options.enforceFormat ?? formatOf(path);
    // imgproxy: "max-age=<IMGPROXY_TTL>, public", or "no-cache" when the TTL is 0
    const cacheControl = stub.options.ttl ? `max-age=${stub.options.ttl}, public` : 'no-cache';
    const headers: Record<string, string> = {
      'content-type': CONTENT_TYPES[format] ?? 'image/png',
      'cache-control': cacheControl,
      'content-disposition': `inline; filename="image.${format}"`,
      'x-request-id': String(req.headers['x-request-id'] ?? 'stub'),
      etag: stub.etagFor(path),
    };
    if (stub.options.vary) headers.vary = stub.options.vary;
    if (stub.options.version !== 4) {
      if (req.headers['if-none-match'] === headers.etag) return { status: 304, headers: { etag: headers.etag! } };
      return { status: 200, headers, body: stub.imageFor(path) };
    }
    const source = stub.sourceOf(path);
    const csp = { 'content-security-policy': IMGPROXY4_CSP };
    if (source.status >= 400) {
      // a source 4xx passes through, a 5xx is a 502; no Cache-Control on errors (4.0.6+)
      const status = source.status >= 500 ? 502 : source.status;
      return { status, headers: { 'content-type': 'text/plain', ...csp }, body: Buffer.from(`Can't download source image: ${source.status}`) };
    }
    headers['last-modified'] = source.lastModified;
    headers['content-disposition'] = `inline; filename="${sourceKey(path)
      .split('/')
      .at(-1)!
      .replace(/\.[a-z0-9]+$/, '')}.${format}"`;
    Object.assign(headers, csp);
    // the conditions go to the source, which answers 304 while it is unchanged
    const ifNoneMatch = req.headers['if-none-match'];
    const ifModifiedSince = req.headers['if-modified-since'];
    const unchanged = ifNoneMatch
      ? ifNoneMatch.split(',').some((tag) => tag.trim() === source.etag)
      : ifModifiedSince !== undefined && Date.parse(ifModifiedSince) >= Date.parse(source.lastModified);
    if (unchanged) {
      const kept: Record<string, string> = { 'cache-control': cacheControl, etag: source.etag, 'last-modified': source.lastModified, ...csp };
      if (headers.vary) kept.vary = headers.vary;
      return { status: 304, headers: kept };
    }
    return { status: 200, headers, body: stub.imageFor(path) };
  };

  stub.server = createServer((req: IncomingMessage, res: ServerResponse) => {
    stub.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    req.resume();
    if (req.url === '/health') {
      const body = stub.healthy ? 'imgproxy is running' : 'vips is broken';
      res.writeHead(stub.healthy ? 200 : 500, { 'content-type': 'text/plain', 'cache-control': 'no-cache' });
      res.end(body);
      return;
    }
    const handler = handlers.find((h) => req.url?.startsWith(h.prefix));
    const reply = handler ? handler.reply(req) : defaultReply(req);
    void send(req, res, reply);
  });
  await new Promise<void>((resolve) => stub.server.listen(0, '127.0.0.1', resolve));
  stub.port = (stub.server.address() as AddressInfo).port;
  stub.url = `http://127.0.0.1:${stub.port}`;
  return stub;
}

async function send(req: IncomingMessage, res: ServerResponse, reply: StubReply): Promise<void> {
  // imgproxy answers OPTIONS with an empty 200
  const body = req.method === 'OPTIONS' ? Buffer.alloc(0) : (reply.body ?? Buffer.alloc(0));
  const headers = { ...reply.headers };
  if (!reply.chunked) headers['content-length'] = String(body.length);
  if (reply.holdBeforeHeaders) await reply.holdBeforeHeaders;
  if (res.destroyed) return;
  res.writeHead(reply.status ?? 200, headers);
  // Like imgproxy: HEAD (and OPTIONS) get headers only; 304 has no body.
  if (req.method === 'HEAD' || req.method === 'OPTIONS' || reply.status === 304) {
    res.end();
    return;
  }
  const limit = reply.cutAfter ?? body.length;
  const piece = reply.pieceSize ?? body.length;
  for (let offset = 0; offset < limit; offset += piece) {
    if (res.destroyed) return;
    res.write(body.subarray(offset, Math.min(offset + piece, limit)));
    if (offset === 0 && reply.holdAfterFirstPiece) await reply.holdAfterFirstPiece;
    if (reply.delayMs) await new Promise((resolve) => setTimeout(resolve, reply.delayMs));
  }
  if (reply.cutAfter !== undefined) {
    // flush what was written, then drop the connection mid-body
    res.once('drain', () => res.socket?.destroy());
    if (!res.writableNeedDrain) setImmediate(() => res.socket?.destroy());
    return;
  }
  res.end();
}
