import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

// An HTTP proxy between the uploader and s3rver that records every request and can inject the
// faults no local S3 server produces on demand: error answers (503 SlowDown, 403, 412...) and
// dropped connections. It also gives s3rver what it lacks of today's S3: a PUT with
// `If-None-Match: *` is refused with 412 when the object exists (s3rver would overwrite it).

export interface TapRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  /** when it arrived (Date.now()) */
  at: number;
  /** the status it was answered with, once answered */
  status?: number;
}

export type Fault =
  /** an S3 error answer; `bare`: no body (a HEAD's, or a gateway's redirect) */
  | { kind: 'status'; status: number; code: string; message?: string; headers?: Record<string, string>; bare?: boolean }
  | { kind: 'drop' }
  /** keep the request until `until` settles, then forward it, unless its client has gone */
  | { kind: 'hold'; until: Promise<void> };

export interface S3Tap {
  endpoint: string;
  requests: TapRequest[];
  /** decides, per request, whether to inject a fault instead of forwarding */
  fault: ((req: TapRequest) => Fault | undefined) | undefined;
  /** requests being held right now */
  held: number;
  puts(): TapRequest[];
  close(): Promise<void>;
}

/** `conditional`: refuse an `If-None-Match: *` PUT of an existing key, as s3rver does not (a real S3 server does it itself). */
export async function startS3Tap(targetPort: number, { conditional = true } = {}): Promise<S3Tap> {
  const tap: S3Tap = {
    endpoint: '',
    requests: [],
    fault: undefined,
    held: 0,
    puts: () => tap.requests.filter((r) => r.method === 'PUT'),
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const seen: TapRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, at: Date.now() };
    res.once('finish', () => (seen.status = res.statusCode));
    tap.requests.push(seen);
    const fault = tap.fault?.(seen);
    if (fault?.kind === 'drop') {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'status') {
      const body = fault.bare
        ? ''
        : `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${fault.code}</Code><Message>${fault.message ?? fault.code}</Message></Error>`;
      req.resume();
      res.writeHead(fault.status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body), ...fault.headers });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (fault?.kind === 'hold') {
      req.pause();
      tap.held += 1;
      void fault.until.then(() => {
        tap.held -= 1;
        // A real S3 discards an upload whose client died; so do we.
        if (req.socket.destroyed) return;
        forward(req, res);
      });
      return;
    }
    if (conditional && req.method === 'PUT' && req.headers['if-none-match'] === '*') {
      req.pause();
      void exists(req.url ?? '/').then((found) => {
        if (!found) return forward(req, res);
        req.resume();
        refuse(res, 412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
      });
      return;
    }
    forward(req, res);
  });

  function refuse(res: ServerResponse, status: number, code: string, message: string): void {
    const body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;
    res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  function exists(url: string): Promise<boolean> {
    return new Promise((resolve) => {
      const head = request({ host: '127.0.0.1', port: targetPort, method: 'HEAD', path: url.split('?')[0] }, (answer) => {
        answer.resume();
        resolve(answer.statusCode === 200);
      });
      head.on('error', () => resolve(false));
      head.end();
    });
  }

  function forward(req: IncomingMessage, res: ServerResponse): void {
    const upstream = request({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
    req.resume();
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  tap.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return tap;
}
