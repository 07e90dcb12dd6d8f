import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { settledBucket } from './support/stack.js';
import { useStack } from './support/use-stack.js';

// The proxy between the client and imgproxy: which headers pass, which are stripped, what it
// refuses and what it answers when imgproxy is away.

const { start } = useStack({ logLines: Infinity });

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

/** Sends bytes as they are and returns everything the proxy answers until it closes. */
function rawRequest(port: number, text: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(text));
    let data = '';
    socket.on('data', (chunk) => (data += chunk.toString('latin1')));
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
  });
}

describe('the proxy in between', () => {
  it('passes the request headers imgproxy uses, adds X-Forwarded-For, strips hop-by-hop', async () => {
    const s = await start();
    const path = '/sig/plain/https://example.com/headers.jpg@png';
    await s.get(path, {
      headers: {
        accept: 'image/avif,image/webp',
        authorization: 'Bearer imgproxy-secret',
        'if-modified-since': 'Wed, 21 Oct 2015 07:28:00 GMT',
        'x-request-id': 'req-42',
        'sec-ch-dpr': '2',
        dpr: '2',
        'x-forwarded-for': '203.0.113.7',
      },
    });
    const seen = s.stub.requests.at(-1)!.headers;
    expect(seen.accept).toBe('image/avif,image/webp');
    expect(seen.authorization).toBe('Bearer imgproxy-secret');
    expect(seen['if-modified-since']).toBe('Wed, 21 Oct 2015 07:28:00 GMT');
    expect(seen['x-request-id']).toBe('req-42');
    expect(seen['sec-ch-dpr']).toBe('2');
    expect(seen.dpr).toBe('2');
    expect(seen['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');

    // Connection and the headers it names describe one hop (undici's client would rewrite them).
    const raw = await rawRequest(s.proxy.port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close, x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\n`);
    expect(raw).toMatch(/^HTTP\/1\.1 200 /);
    const hop = s.stub.requests.at(-1)!.headers;
    expect(hop['x-hop']).toBeUndefined();
    expect(hop['keep-alive']).toBeUndefined();
    expect(hop.connection).not.toMatch(/x-hop/);
  });

  it('strips hop-by-hop headers from the response', async () => {
    const s = await start();
    const path = '/sig/hop';
    s.stub.on(path, () => ({
      headers: { 'content-type': 'image/png', connection: 'x-upstream-hop', 'x-upstream-hop': '1', 'x-kept': 'yes' },
      body: s.stub.imageFor(path),
    }));
    const reply = await s.get(path);
    expect(reply.headers['x-upstream-hop']).toBeUndefined();
    expect(reply.headers['x-kept']).toBe('yes');
  });

  it.each(['POST', 'PUT', 'DELETE', 'PATCH'])('answers %s with 405 without calling imgproxy', async (method) => {
    const s = await start();
    const reply = await s.get('/sig/plain/x.jpg@png', { method });
    expect(reply.status).toBe(405);
    expect(reply.headers.allow).toBe('GET, HEAD, OPTIONS');
    expect(reply.body.toString()).toMatch(/not allowed/);
    expect(s.stub.requests).toHaveLength(0);
  });

  it('refuses an absolute-form request target (never forwards to another host)', async () => {
    const s = await start();
    const raw = await rawRequest(s.proxy.port, 'GET http://evil.example/sig/plain/x.jpg@png HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n');
    expect(raw).toMatch(/^HTTP\/1\.1 400 /);
    expect(s.stub.requests).toHaveLength(0);
  });

  it('prepends the path of IMGPROXY_URL to what it forwards; the key stays the client’s path', async () => {
    const s = await start({ imgproxyPath: '/imgproxy/' });
    const path = '/sig/plain/https://example.com/prefixed.jpg@png';
    s.stub.on('/imgproxy/sig/', (req) => ({ headers: { 'content-type': 'image/png' }, body: s.stub.imageFor(req.url!) }));
    const reply = await s.get(path);
    expect(s.stub.requests.at(-1)!.url).toBe(`/imgproxy${path}`);
    expect(reply.body.equals(s.stub.imageFor(`/imgproxy${path}`))).toBe(true);
    await s.waitForObject(path, s.stub.imageFor(`/imgproxy${path}`));
    expect(await s.keys()).toEqual([md5(path)]);
  });

  it('answers 502 with a reason when imgproxy is down', async () => {
    const s = await start();
    await s.stub.close();
    const reply = await s.get('/sig/plain/x.jpg@png');
    expect(reply.status).toBe(502);
    expect(reply.body.toString()).toMatch(/imgproxy is unreachable/);
  });

  it('passes GET /health through to imgproxy', async () => {
    const s = await start();
    const ok = await s.get('/health');
    expect(ok.status).toBe(200);
    expect(ok.body.toString()).toBe('imgproxy is running');
    s.stub.healthy = false;
    expect((await s.get('/health')).status).toBe(500);
    expect(await settledBucket(s, '/health', 'cache-control')).toEqual([]);
  });
});
