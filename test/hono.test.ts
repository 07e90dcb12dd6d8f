import { connect, type Socket } from 'node:net';
import { Pool, request } from 'undici';
import { describe, expect, it } from 'vitest';
import { useStack } from './support/use-stack.js';
import { waitFor } from './support/wait.js';

// Every request of both ports goes through a Hono app (@hono/node-server); the image route writes
// to the socket itself. The traps of that: Hono answers HEAD with its GET route wrapped in a new
// Response, which the adapter must not write a second time over the streamed one (it would reset
// the connection); a client that left must not break anything.

const { start } = useStack();

describe('the proxy port, one Hono app', () => {
  // Node's server itself closes the connection after a HEAD answered with a Content-Length and no
  // body (a plain node:http server does the same), so what counts is that none is reset: every
  // answer complete, none an error.
  it('answers 30 HEADs in a row on keep-alive connections, each forwarded as HEAD, none reset, then a GET', async () => {
    const s = await start();
    const pool = new Pool(s.baseUrl, { connections: 1, pipelining: 1 });
    try {
      for (let i = 0; i < 30; i++) {
        const path = `/sig/plain/https://example.com/head-${i % 3}.jpg@png`;
        const res = await pool.request({ method: 'HEAD', path });
        expect(res.statusCode).toBe(200);
        expect(res.headers['content-length']).toBe(String(s.stub.imageFor(path).length));
        await res.body.dump();
      }
      const path = '/sig/plain/https://example.com/after-heads.jpg@png';
      const get = await pool.request({ method: 'GET', path });
      expect(Buffer.from(await get.body.arrayBuffer()).equals(s.stub.imageFor(path))).toBe(true);
      expect(s.stub.requests.filter((r) => r.method === 'HEAD')).toHaveLength(30);
      expect(s.logs.filter((l) => /ERR_HTTP_HEADERS_SENT|Proxy failure/.test(JSON.stringify(l)))).toEqual([]);
    } finally {
      await pool.close();
    }
  });

  it('serves GET, HEAD and OPTIONS mixed on one keep-alive connection', async () => {
    const s = await start();
    const pool = new Pool(s.baseUrl, { connections: 1 });
    try {
      for (let i = 0; i < 12; i++) {
        const method = (['GET', 'HEAD', 'OPTIONS'] as const)[i % 3]!;
        const path = `/sig/plain/https://example.com/mixed-${i}.jpg@png`;
        const res = await pool.request({ method, path });
        const body = Buffer.from(await res.body.arrayBuffer());
        expect(res.statusCode).toBe(200);
        expect(body.length).toBe(method === 'GET' ? s.stub.imageFor(path).length : 0);
      }
      expect(s.stub.requests.map((r) => r.method)).toEqual(Array.from({ length: 12 }, (_, i) => ['GET', 'HEAD', 'OPTIONS'][i % 3]));
    } finally {
      await pool.close();
    }
  });

  it('answers other methods and bad targets from Hono: 405 with Allow, 400 with the reason', async () => {
    const s = await start();
    const post = await request(`${s.baseUrl}/sig/plain/x.jpg@png`, { method: 'POST', body: 'x' });
    expect(post.statusCode).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD, OPTIONS');
    expect(await post.body.text()).toMatch(/Method POST is not allowed/);
    // a Pool sends the path as given (a URL would resolve the dot segments first)
    const pool = new Pool(s.baseUrl);
    const dots = await pool.request({ method: 'GET', path: '/sig/%2e%2e/x.jpg@png' });
    expect(dots.statusCode).toBe(400);
    expect(await dots.body.text()).toMatch(/"\." and "\.\." path segments/);
    await pool.close();
    expect(s.stub.requests).toHaveLength(0);
  });

  it('a client that leaves before imgproxy answers breaks nothing: the next requests are served and stored', async () => {
    const s = await start();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    s.stub.on('/sig/plain/https://example.com/left', () => ({
      status: 200,
      headers: { 'content-type': 'image/png', 'cache-control': 'max-age=60, public' },
      body: Buffer.alloc(1000, 1),
      holdBeforeHeaders: held,
    }));
    const socket: Socket = connect(s.proxy.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write('GET /sig/plain/https://example.com/left.jpg@png HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor(() => s.stub.requests.some((r) => r.url.includes('/left')), { what: 'the request to reach imgproxy' });
    socket.destroy();
    release();
    await waitFor(() => s.outcomes.some((o) => o.path.includes('/left')) || s.proxy.inflight.size === 0, { what: 'the abandoned request to settle' });

    const next = '/sig/plain/https://example.com/after-leaving.jpg@png';
    expect((await s.get(next)).body.equals(s.stub.imageFor(next))).toBe(true);
    await s.waitForObject(next);
    expect(s.logs.filter((l) => l.msg === 'Proxy failure')).toEqual([]);
  });
});

describe('the admin port, a Hono app', () => {
  it('serves /metrics, /livez and /readyz to GET and HEAD; 404 names what is there', async () => {
    const s = await start();
    const admin = `http://127.0.0.1:${s.proxy.admin!.port}`;
    const metrics = await request(`${admin}/metrics`);
    expect(metrics.statusCode).toBe(200);
    expect(await metrics.body.text()).toMatch(/imgproxy_cache_requests_total/);
    for (const path of ['/metrics', '/livez', '/readyz']) {
      const head = await request(`${admin}${path}`, { method: 'HEAD' });
      expect({ path, status: head.statusCode, body: (await head.body.arrayBuffer()).byteLength }).toEqual({ path, status: 200, body: 0 });
    }
    const missing = await request(`${admin}/nope`);
    expect(missing.statusCode).toBe(404);
    expect(await missing.body.text()).toMatch(/try \/metrics, \/livez or \/readyz/);
  });
});
