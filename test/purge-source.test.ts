import { cacheKeyOf, createLogger, purgeChannel, redisKeys, SourceIndex, sourceOfInput } from '@imgproxy-cache/shared';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { type RunningProxy, startProxy } from '../apps/proxy/src/server/start-proxy.js';
import { S3RVER_CREDENTIALS } from './support/s3.js';
import { type Service, spawnService } from './support/service.js';
import { rendered, type Stack, startStack } from './support/stack.js';
import { waitFor } from './support/wait.js';

// Purge by source: 3 sources × 4 variants (sizes, formats, plain, percent-encoded and base64
// forms), stored, waiting in the queue, hot in two proxies' memory; real Redis, s3rver behind the
// tap, the imgproxy stand-in counting renders, the CLI as its own process.

let stack: Stack | undefined;
const proxies: RunningProxy[] = [];
const running: Service[] = [];
afterEach(async (ctx) => {
  if (ctx.task.result?.state === 'fail') for (const s of running) console.log(s.output());
  await Promise.all(running.splice(0).map((s) => s.stop()));
  await Promise.all(proxies.splice(0).map((p) => p.close(2_000)));
  await stack?.stop();
  stack = undefined;
});

const TOKEN = 'purge-secret';
const b64 = (s: string) => Buffer.from(s).toString('base64url');
const SOURCES = ['https://example.com/a.jpg', 'https://example.com/b.jpg', 'https://example.com/c.jpg'];
/** Four variants of a source: two sizes, two formats, plain, percent-encoded and base64. */
const variants = (url: string) => [
  `/sig/rs:fit:100:100/plain/${url}@png`,
  `/sig/rs:fill:300:200/q:70/plain/${encodeURIComponent(url)}@webp`,
  `/sig/w:640/${b64(url)}.png`,
  `/sig/pr:thumb/plain/${url}@jpg`,
];

function purgeCli(s: Stack, args: string[]): Service {
  const service = spawnService(['apps/cli/dist/purge.js', ...args], {
    REDIS_URL: s.config.redisUrl,
    QUEUE_NAME: s.config.queue.name,
    S3_BUCKET: s.bucket,
    S3_ENDPOINT: s.tap.endpoint,
    S3_REGION: 'us-east-1',
  });
  running.push(service);
  return service;
}

describe('purge every variant of a source', () => {
  it('removes exactly its variants (bucket, queue, both proxies’ memory), lists each key; the others stay; the next request renders anew', async () => {
    stack = await startStack({ env: { CACHE_READ_THROUGH: 'true', UPLOAD_GATHER_MS: '0', ADMIN_TOKEN: TOKEN, CACHE_TAG_HEADER: 'Surrogate-Key' } });
    const s = stack;
    const [a, b, c] = SOURCES.map(variants) as [string[], string[], string[]];
    const stored = [...a.slice(0, 3), ...b, ...c];
    for (const p of stored) expect((await s.get(p)).status).toBe(200);
    for (const p of stored) await s.waitForObject(p);
    await s.drained();
    // one variant of a still waits in the queue, its bytes in Redis
    await s.uploader!.close(2_000);
    s.uploader = undefined;
    await s.get(a[3]!);
    expect(await s.outcomeOf(a[3]!)).toBe('queued');
    // hot in a second proxy's memory too (read from the bucket)
    const other = await startProxy(s.config, createLogger('proxy', 'silent'), { s3Credentials: S3RVER_CREDENTIALS });
    proxies.push(other);
    for (const p of a.slice(0, 3)) await request(`http://127.0.0.1:${other.port}${p}`).then((r) => r.body.arrayBuffer());
    await waitFor(async () => ((await s.redis.call('PUBSUB', 'NUMSUB', purgeChannel(s.config.queue.name))) as [string, number])[1] === 2, {
      what: 'both proxies to listen for purges',
    });

    const renders = new Map([...a, ...b, ...c].map((p) => [p, rendered(s, p)]));
    const cli = purgeCli(s, ['--source', SOURCES[0]!]);
    expect(await cli.exited()).toBe(0);
    const out = cli.output();
    for (const p of a) expect(out).toContain(cacheKeyOf(p));
    expect(out).toMatch(/4 variant\(s\) purged/);

    for (const p of a.slice(0, 3)) expect(await s.object(p)).toBeUndefined();
    expect(await s.queue.getJob(cacheKeyOf(a[3]!))).toBeUndefined();
    expect(await s.redis.exists(redisKeys(s.config.queue.name).payload(cacheKeyOf(a[3]!)))).toBe(0);
    for (const proxy of [s.proxy, other]) {
      await waitFor(async () => (await proxy.metrics.memoryEvictions.get()).values.some((v) => v.labels.reason === 'purged' && v.value >= 3), {
        what: 'the purge to reach both proxies’ memory',
      });
    }
    // the other 8 untouched, and served from memory as before
    for (const p of [...b, ...c]) expect((await s.object(p))?.body.equals(s.stub.imageFor(p))).toBe(true);
    for (const p of [...b, ...c]) expect((await s.get(p)).headers['x-cache']).toBe('HIT');
    for (const p of [...b, ...c]) expect(rendered(s, p)).toBe(renders.get(p));
    // a purged variant renders anew
    const again = await s.get(a[0]!);
    expect(again.headers['x-cache']).toBe('MISS');
    expect(rendered(s, a[0]!)).toBe(renders.get(a[0]!)! + 1);

    // the same again: its variants are gone from the index
    const twice = purgeCli(s, ['--source', SOURCES[0]!, '--dry-run']);
    expect(await twice.exited()).toBe(0); // a[0] was requested again: it is indexed anew
    expect(twice.output()).toMatch(/1 variant\(s\) stored \(dry run: nothing removed\)/);
  }, 60_000);

  it('tags every response of a variant with its source (CACHE_TAG_HEADER), the same for all of them; no header unless configured', async () => {
    stack = await startStack({ env: { CACHE_TAG_HEADER: 'Surrogate-Key', UPLOAD_GATHER_MS: '0' } });
    const s = stack;
    const tags = await Promise.all(variants(SOURCES[1]!).map(async (p) => (await s.get(p)).headers['surrogate-key']));
    expect(new Set(tags)).toEqual(new Set([(sourceOfInput(SOURCES[1]!) as { tag: string }).tag]));
    expect((await s.get(variants(SOURCES[2]!)[0]!)).headers['surrogate-key']).not.toBe(tags[0]);
    // the object carries it too, for CDNs in front of the bucket
    await s.waitForObject(variants(SOURCES[1]!)[0]!);
    const head = await request(`http://127.0.0.1:${new URL(s.tap.endpoint).port}/${s.bucket}/${s.keyFor(variants(SOURCES[1]!)[0]!)}`, { method: 'HEAD' });
    expect(head.headers['x-amz-meta-source-tag']).toBe(tags[0]);
    const plain = await startProxy({ ...s.config, proxy: { ...s.config.proxy, tagHeader: undefined } }, createLogger('proxy', 'silent'));
    proxies.push(plain);
    const res = await request(`http://127.0.0.1:${plain.port}${variants(SOURCES[1]!)[0]}`);
    await res.body.arrayBuffer();
    expect(res.headers['surrogate-key']).toBeUndefined();
  });

  it('rebuilds the index from the bucket after Redis lost it (npm run reindex), and purges by source then', async () => {
    stack = await startStack({ env: { UPLOAD_GATHER_MS: '0' } });
    const s = stack;
    const b = variants(SOURCES[1]!);
    for (const p of b) await s.get(p);
    for (const p of b) await s.waitForObject(p);
    const index = new SourceIndex(s.redis, s.config.queue.name);
    const tag = (sourceOfInput(SOURCES[1]!) as { tag: string }).tag;
    expect((await index.keys(tag)).length).toBe(4);
    await s.redis.del(index.key(tag)); // the index lost, the bucket kept
    const rebuild = spawnService(['apps/cli/dist/reindex.js'], {
      REDIS_URL: s.config.redisUrl,
      QUEUE_NAME: s.config.queue.name,
      S3_BUCKET: s.bucket,
      S3_ENDPOINT: s.tap.endpoint,
      S3_REGION: 'us-east-1',
    });
    running.push(rebuild);
    expect(await rebuild.exited()).toBe(0);
    expect(rebuild.output()).toMatch(/4 objects listed, 4 read: 4 indexed, 0 without a source tag, 0 unreadable/);
    expect(await index.keys(tag)).toEqual(b.map(cacheKeyOf).sort());
    const cli = purgeCli(s, ['--source', encodeURIComponent(SOURCES[1]!)]); // percent-encoded names the same source
    expect(await cli.exited()).toBe(0);
    for (const p of b) expect(await s.object(p)).toBeUndefined();
  });

  it('DELETE /cache?source= on the admin port: 200 with each key, dry_run lists, 404 for a source of nothing, 400 without one or for enc/, 401 without the token', async () => {
    stack = await startStack({ env: { ADMIN_TOKEN: TOKEN, UPLOAD_GATHER_MS: '0' } });
    const s = stack;
    const c = variants(SOURCES[2]!);
    for (const p of c) await s.get(p);
    for (const p of c) await s.waitForObject(p);
    const admin = (query: string, token = TOKEN) =>
      request(`http://127.0.0.1:${s.proxy.admin!.port}/cache${query}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } }).then(async (r) => ({
        status: r.statusCode,
        body: (await r.body.json()) as { variants?: { key: string }[]; error?: string },
      }));
    const source = encodeURIComponent(SOURCES[2]!);
    expect((await admin(`?source=${source}`, 'wrong')).status).toBe(401);
    const dry = await admin(`?source=${source}&dry_run=1`);
    expect(dry.status).toBe(200);
    expect(dry.body.variants!.map((v) => v.key).sort()).toEqual(c.map(cacheKeyOf).sort());
    for (const p of c) expect(await s.object(p)).toBeDefined();
    const done = await admin(`?source=${encodeURIComponent(b64(SOURCES[2]!))}`); // base64 names it too
    expect(done.status).toBe(200);
    expect(done.body.variants!.length).toBe(4);
    for (const p of c) expect(await s.object(p)).toBeUndefined();
    expect((await admin(`?source=${source}`)).status).toBe(404);
    expect(await admin('')).toMatchObject({ status: 400, body: { error: expect.stringMatching(/no source URL given/) } });
    expect(await admin(`?source=${encodeURIComponent('/sig/rs:fit:1:1/enc/abcdef')}`)).toMatchObject({
      status: 400,
      body: { error: expect.stringMatching(/encrypted/) },
    });
  });

  it('bad input on the command line: one line and exit 2; a source of nothing: exit 1', async () => {
    stack = await startStack();
    const s = stack;
    const none = purgeCli(s, ['--source', '']);
    expect(await none.exited()).toBe(2);
    expect(none.output().trim()).toBe('imgproxy-cache purge: no source URL given: --source <url> (or ?source=<url>)');
    const enc = purgeCli(s, ['--source', '/sig/rs:fit:1:1/enc/abcdef']);
    expect(await enc.exited()).toBe(2);
    expect(enc.output().trim()).toMatch(/^imgproxy-cache purge: .* is an encrypted source \(imgproxy Pro enc\/\)/);
    const nothing = purgeCli(s, ['--source', 'https://example.com/never.jpg']);
    expect(await nothing.exited()).toBe(1);
    expect(nothing.output().trim()).toMatch(/^https:\/\/example\.com\/never\.jpg: nothing stored for this source \(tag [0-9a-f]{32}\)$/);
  });
});
