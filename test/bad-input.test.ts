import { connect, type Socket } from 'node:net';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { makePngOfSize } from './support/png.mjs';
import type { Stack } from './support/stack.js';
import { useStack } from './support/use-stack.js';
import { waitFor } from './support/wait.js';

// Bad input gets a 4xx or a closed connection, never a 5xx from the proxy itself, a crash or a
// stored object; a client that leaves early hurts nobody; memory held for caching stays bounded.

const { start } = useStack({ logLines: Infinity });

/** Sends `text` as it is; resolves with all the proxy answered once it closes the connection. */
function raw(port: number, text: string | Buffer, { end = false } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(port, '127.0.0.1', () => {
      socket.write(text);
      if (end) socket.end();
    });
    let data = '';
    socket.on('data', (chunk) => (data += chunk.toString('latin1')));
    socket.on('close', () => resolve(data));
    socket.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' ? resolve(data) : reject(error)));
  });
}

const statusOf = (response: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1] ?? 0);

async function expectHealthyAndEmpty(s: Stack): Promise<void> {
  const ok = '/sig/plain/https://example.com/after.jpg@png';
  expect((await s.get(ok)).status).toBe(200);
  await s.waitForObject(ok);
  await s.drained();
  expect(await s.keys()).toEqual([s.keyFor(ok)]);
}

describe('bad requests', () => {
  it.each([
    ['a path over 16 KiB', `GET /${'a'.repeat(17 * 1024)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`],
    ['malformed percent-encoding', 'GET /sig/plain/https://example.com/%zz.jpg@png HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'],
    ['a ".." segment', 'GET /sig/../plain/x.jpg@png HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'],
    ['an encoded ".." segment', 'GET /sig/%2e%2e/plain/x.jpg@png HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'],
    [
      'a raw non-ASCII byte',
      Buffer.concat([Buffer.from('GET /sig/plain/caf'), Buffer.from([0xe9]), Buffer.from('.jpg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')]),
    ],
    ['an absolute URL', 'GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'],
    ['CONNECT', 'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n'],
    ['TRACE', 'TRACE /sig/plain/x.jpg@png HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'],
    ['a header over 16 KiB', `GET /sig/plain/x.jpg@png HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20 * 1024)}\r\nConnection: close\r\n\r\n`],
    ['a malformed header line', 'GET /sig/plain/x.jpg@png HTTP/1.1\r\nHost: x\r\nNo colon here\r\nConnection: close\r\n\r\n'],
    ['a header with a control character', 'GET /sig/plain/x.jpg@png HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\nConnection: close\r\n\r\n'],
    ['garbage', '\x00\x01\x02 not http at all\r\n\r\n'],
  ])('%s gets a 4xx (or a closed connection) and never reaches imgproxy', async (_name, text) => {
    const s = await start();
    const answer = await raw(s.proxy.port, text);
    const status = statusOf(answer);
    if (status !== 0) {
      expect(status).toBeGreaterThanOrEqual(400);
      expect(status).toBeLessThan(500);
    }
    expect(s.stub.requests).toHaveLength(0);
    await expectHealthyAndEmpty(s);
  });

  it('a client that never finishes its headers (slow-loris) gets 408 and is disconnected', async () => {
    const s = await start({ env: { CLIENT_HEADERS_TIMEOUT_MS: '300' } });
    const answer = await raw(s.proxy.port, 'GET /sig/plain/x.jpg@png HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    expect(statusOf(answer)).toBe(408);
    expect(s.stub.requests).toHaveLength(0);
    await expectHealthyAndEmpty(s);
  });
});

describe('cut and aborted streams', () => {
  it('a client leaving mid-body cancels the download from imgproxy and caches nothing', async () => {
    const s = await start();
    const path = '/sig/leaver/plain/x.jpg@png';
    let upstreamClosed = false;
    s.stub.on(path, (req) => {
      req.socket.once('close', () => (upstreamClosed = true));
      return { headers: { 'content-type': 'image/png' }, body: makePngOfSize('leaver', 400_000), pieceSize: 16_384, delayMs: 5 };
    });
    const controller = new AbortController();
    const res = await request(`${s.baseUrl}${path}`, { signal: controller.signal });
    for await (const _chunk of res.body) {
      controller.abort(); // gone after the first chunk
      break;
    }
    await waitFor(() => upstreamClosed, { what: 'the upstream request to be cancelled' });
    expect(await s.outcomeOf(path)).toBe('incomplete');
    await expectHealthyAndEmpty(s);
  });
});

describe('memory', () => {
  it('holds at most concurrency × CACHE_MAX_BYTES for caching, and nothing for responses over it', async () => {
    const cap = 100_000;
    const s = await start({ noUploader: true, env: { CACHE_MAX_BYTES: String(cap), CACHE_BACKLOG_MAX_BYTES: String(64 * cap) } });
    // 16 chunked responses of 1 MB: no Content-Length, so each is captured until it outgrows the cap
    const big = makePngOfSize('big', 1_000_000);
    s.stub.on('/sig/big/', () => ({ headers: { 'content-type': 'image/png' }, body: big, chunked: true, pieceSize: 32_768 }));
    const paths = Array.from({ length: 16 }, (_, i) => `/sig/big/${i}.png`);
    const replies = await Promise.all(paths.map((p) => s.get(p)));
    for (const reply of replies) expect(reply.body.equals(big)).toBe(true);
    for (const p of paths) expect(await s.outcomeOf(p)).toBe('too-large');
    expect(s.proxy.tally.peak).toBeLessThanOrEqual(16 * cap);
    expect(s.proxy.tally.held).toBe(0);
  });
});
