import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { makePng } from './png.mjs';

// An HTTP server that stands in for imgproxy: real image bytes with imgproxy's headers and status
// codes (see PITFALLS.md), plus switches for the behaviours the proxy must survive: slow, cut
// short, Vary, ENFORCE_* format swaps, errors. A test either sets the global switches or installs
// a handler for one path.

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
  close(): Promise<void>;
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

  const stub: ImgproxyStub = {
    url: '',
    port: 0,
    server: undefined as unknown as Server,
    requests: [],
    options: { ttl: 31536000, ...initial },
    healthy: true,
    on: (prefix, reply) => handlers.unshift({ prefix, reply }),
    imageFor(path) {
      let image = images.get(path);
      if (!image) {
        image = makePng(path, 48, 48);
        images.set(path, image);
      }
      return image;
    },
    close: async () => {
      stub.server.closeAllConnections();
      await new Promise((resolve) => stub.server.close(resolve));
    },
  };

  const defaultReply = (req: IncomingMessage): StubReply => {
    const path = (req.url ?? '/').split('?')[0]!;
    const format = stub.options.enforceFormat ?? formatOf(path);
    const headers: Record<string, string> = {
      'content-type': CONTENT_TYPES[format] ?? 'image/png',
      // imgproxy: "max-age=<IMGPROXY_TTL>, public", or "no-cache" when the TTL is 0
      'cache-control': stub.options.ttl ? `max-age=${stub.options.ttl}, public` : 'no-cache',
      'content-disposition': `inline; filename="image.${format}"`,
      'x-request-id': String(req.headers['x-request-id'] ?? 'stub'),
      etag: `"${path.length}"`,
    };
    if (stub.options.vary) headers.vary = stub.options.vary;
    if (req.headers['if-none-match'] === headers.etag) return { status: 304, headers: { etag: headers.etag! } };
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
