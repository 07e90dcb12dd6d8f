import { once } from 'node:events';
import { connect } from 'node:net';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { rendered, type Stack } from './support/stack.js';
import { useStack } from './support/use-stack.js';
import { waitFor } from './support/wait.js';

// Concurrent GETs for the same new image share one imgproxy request (flight.ts): the stand-in
// holds its answer until every request has arrived, so that they are concurrent for sure.

const { start } = useStack();

/** Holds the stand-in's answers for paths under `prefix` until released. */
function holdAnswers(s: Stack, prefix: string, reply: Parameters<Stack['stub']['on']>[1] = (req) => ({ body: s.stub.imageFor(req.url!) })) {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  s.stub.on(prefix, (req) => {
    const r = reply(req);
    return {
      status: 200,
      headers: { 'content-type': 'image/png', 'cache-control': 'max-age=3600, public' },
      ...r,
      holdBeforeHeaders: held,
    };
  });
  return release;
}

describe('coalescing', () => {
  it('50 concurrent requests for a new image: one render, 50 byte-exact 200s, one upload', async () => {
    const s = await start({ env: { UPLOAD_GATHER_MS: '0' } });
    const path = '/sig/plain/https://example.com/popular.jpg@png';
    const release = holdAnswers(s, path);
    const replies = Array.from({ length: 50 }, () => s.get(path));
    await waitFor(() => rendered(s, path) === 1 && s.proxy.waitingFollowers() === 49, { what: 'every request to wait for the first' });
    release();
    for (const reply of await Promise.all(replies)) {
      expect(reply.status).toBe(200);
      expect(reply.body.equals(s.stub.imageFor(path))).toBe(true);
    }
    expect(rendered(s, path)).toBe(1);
    await s.waitForObject(path);
    await s.drained();
    expect(s.tap.puts().filter((r) => r.url.split('?')[0]!.endsWith(`/${s.keyFor(path)}`))).toHaveLength(1);
    expect(
      s.outcomes
        .filter((o) => o.path === path)
        .map((o) => o.outcome)
        .sort(),
    ).toEqual([...Array(49).fill('coalesced'), 'queued'].sort());
    const metrics = await (await request(`http://127.0.0.1:${s.proxy.admin!.port}/metrics`)).body.text();
    expect(metrics).toMatch(/^imgproxy_cache_coalesced_total\{service="proxy"\} 49$/m);
  });

  it('a client that reads slowly (here the first) does not slow the others', async () => {
    const s = await start();
    const path = '/sig/plain/https://example.com/big.jpg@png';
    const image = Buffer.alloc(4 * 1024 * 1024, 7); // more than sockets buffer: a reader that stops is felt
    const release = holdAnswers(s, path, () => ({ body: image }));
    // a client that sends its request and then reads nothing
    const slow = connect(s.proxy.port, '127.0.0.1');
    slow.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    slow.pause();
    await waitFor(() => rendered(s, path) === 1, { what: 'the first request' });
    const fast = [s.get(path), s.get(path)];
    await waitFor(() => s.proxy.waitingFollowers() === 2, { what: 'the others to wait' });
    release();
    for (const reply of await Promise.all(fast)) expect(reply.body.equals(image)).toBe(true);
    // the slow one has it all too, at its own pace
    let received = Buffer.alloc(0);
    slow.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
    });
    slow.resume();
    await waitFor(() => received.includes(image.subarray(image.length - 64)) && received.length >= image.length, { what: 'the slow client to read it all' });
    slow.destroy();
    expect(rendered(s, path)).toBe(1);
  });

  it('the first client leaving mid-body leaves the others’ responses complete, and the image is cached once', async () => {
    const s = await start({ env: { UPLOAD_GATHER_MS: '0' } });
    const path = '/sig/plain/https://example.com/leader-leaves.jpg@png';
    let releaseRest!: () => void;
    const rest = new Promise<void>((resolve) => (releaseRest = resolve));
    const release = holdAnswers(s, path, (req) => ({ body: s.stub.imageFor(req.url!), pieceSize: 512, holdAfterFirstPiece: rest }));
    const leader = new AbortController();
    const first = request(`${s.baseUrl}${path}`, { signal: leader.signal });
    await waitFor(() => rendered(s, path) === 1, { what: 'the first request' });
    const others = [s.get(path), s.get(path), s.get(path)];
    await waitFor(() => s.proxy.waitingFollowers() === 3, { what: 'the others to wait' });
    release();
    const res = await first;
    await once(res.body, 'data'); // its first bytes arrived
    leader.abort();
    await res.body.arrayBuffer().catch(() => undefined);
    releaseRest();
    for (const reply of await Promise.all(others)) expect(reply.body.equals(s.stub.imageFor(path))).toBe(true);
    expect(rendered(s, path)).toBe(1);
    expect((await s.waitForObject(path)).body.equals(s.stub.imageFor(path))).toBe(true);
  });

  it.each([
    ['a 404', '/sig/plain/https://example.com/missing.jpg@png', { status: 404, headers: { 'content-type': 'text/plain' }, body: Buffer.from('not found') }],
    [
      'a Vary: Accept response for a URL naming no format',
      '/sig/rs:fit:10:10/plain/https://example.com/negotiated.jpg',
      { headers: { 'content-type': 'image/webp', vary: 'Accept' } },
    ],
  ])('does not share %s: each request gets its own', async (_name, path, reply) => {
    const s = await start();
    const release = holdAnswers(s, path, (req) => ({ body: s.stub.imageFor(req.url!), ...reply }));
    const replies = Array.from({ length: 4 }, () => s.get(path));
    await waitFor(() => rendered(s, path) === 1 && s.proxy.waitingFollowers() === 3, { what: 'the others to wait' });
    release();
    const answered = await Promise.all(replies);
    expect(answered.map((r) => r.status)).toEqual(Array(4).fill((reply as { status?: number }).status ?? 200));
    expect(rendered(s, path)).toBe(4);
  });

  it('does not merge requests that differ in Accept for a URL naming no format', async () => {
    const s = await start();
    const path = '/sig/rs:fit:20:20/plain/https://example.com/auto.jpg';
    const release = holdAnswers(s, path);
    const webp = s.get(path, { headers: { accept: 'image/webp' } });
    const avif = s.get(path, { headers: { accept: 'image/avif,image/webp' } });
    const webpAgain = s.get(path, { headers: { accept: 'image/webp' } });
    await waitFor(() => rendered(s, path) === 2 && s.proxy.waitingFollowers() === 1, { what: 'two renders, one follower' });
    release();
    await Promise.all([webp, avif, webpAgain]);
    expect(rendered(s, path)).toBe(2);
  });

  it('a request arriving after the body outgrew CACHE_MAX_BYTES gets its own', async () => {
    const s = await start({ env: { CACHE_MAX_BYTES: '10000', CACHE_BACKLOG_MAX_BYTES: '1000000' } });
    const path = '/sig/plain/https://example.com/growing.jpg@png';
    const image = Buffer.alloc(40_000, 9);
    let releaseRest!: () => void;
    const rest = new Promise<void>((resolve) => (releaseRest = resolve));
    // chunked, its first piece already past the cap
    s.stub.on(path, () => ({
      headers: { 'content-type': 'image/png', 'cache-control': 'max-age=60' },
      body: image,
      chunked: true,
      pieceSize: 12_000,
      holdAfterFirstPiece: rest,
    }));
    const res = await request(`${s.baseUrl}${path}`);
    const chunks: Buffer[] = [];
    res.body.on('data', (c: Buffer) => chunks.push(c));
    const ended = once(res.body, 'end');
    await waitFor(() => chunks.length > 0, { what: 'the first piece' });
    const late = s.get(path);
    await waitFor(() => rendered(s, path) === 2, { what: 'the late request to go to imgproxy itself' });
    releaseRest();
    expect((await late).body.equals(image)).toBe(true);
    await ended;
    expect(Buffer.concat(chunks).equals(image)).toBe(true);
  });
});
