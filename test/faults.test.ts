import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { cacheKeyOf, queuePrefix, type UploadJobData } from '@imgproxy-cache/shared';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { freePort } from './support/free-port.js';
import { type ImgproxyStub, startImgproxyStub } from './support/imgproxy-stub.js';
import { expectSpacedBy } from './support/logs.js';
import { spawnRedisServer, type TestRedis } from './support/redis-server.js';
import { createBucket, getObject, listKeys, testS3Client, waitForObjectBytes } from './support/s3.js';
import { type S3Tap, startS3Tap } from './support/s3-tap.js';
import { type Service, spawnService } from './support/service.js';
import { waitFor } from './support/wait.js';

// Fault injection with real processes: the built proxy and uploaders as child processes, a
// redis-server of the test's own (killed and restarted), s3rver behind a fault-injecting tap, and
// the imgproxy stand-in. Each test checks the bucket at the end.

interface World {
  stub: ImgproxyStub;
  tap: S3Tap;
  s3: S3Client;
  redis: TestRedis;
  bucket: string;
  env: Record<string, string>;
  proxyPort: number;
  services: Service[];
  proxy(extra?: Record<string, string>): Service;
  uploader(extra?: Record<string, string>): Service;
  get(path: string): Promise<{ status: number; body: Buffer }>;
  waitForAll(paths: string[]): Promise<void>;
  queue(): Queue<UploadJobData>;
}

let world: World | undefined;
const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async (ctx) => {
  if (ctx.task.result?.state === 'fail' && world) {
    for (const s of world.services) console.log(s.child.spawnargs.join(' '), '\n', s.output().slice(-6000));
  }
  for (const s of world?.services ?? []) await s.stop();
  while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
  world = undefined;
});

async function setup(env: Record<string, string> = {}, { redisUp = true } = {}): Promise<World> {
  const stub = await startImgproxyStub();
  const tap = await startS3Tap(inject('s3rverPort'));
  const s3 = testS3Client(`http://127.0.0.1:${inject('s3rverPort')}`);
  const bucket = `f-${randomUUID().slice(0, 8)}`;
  await createBucket(s3, bucket);
  const redisPort = await freePort();
  const redis: TestRedis = redisUp
    ? await spawnRedisServer(redisPort)
    : { url: `redis://127.0.0.1:${redisPort}`, port: redisPort, child: undefined, stop: async () => undefined };
  const proxyPort = await freePort();
  const queues: { queue: Queue; connection: Redis }[] = [];
  cleanup.push(
    async () => {
      for (const { queue, connection } of queues) {
        await queue.close().catch(() => undefined);
        connection.disconnect();
      }
    },
    () => world!.redis.stop(),
    () => stub.close(),
    () => tap.close(),
    async () => s3.destroy(),
  );
  const baseEnv = {
    IMGPROXY_URL: stub.url,
    IMGPROXY_BIND: `127.0.0.1:${proxyPort}`,
    REDIS_URL: redis.url,
    S3_BUCKET: bucket,
    S3_ENDPOINT: tap.endpoint,
    S3_REGION: 'us-east-1',
    UPLOAD_BACKOFF_MS: '50',
    LOG_LEVEL: 'debug',
    ...env,
  };
  const w: World = {
    stub,
    tap,
    s3,
    redis,
    bucket,
    env: baseEnv,
    proxyPort,
    services: [],
    proxy(extra = {}) {
      const service = spawnService(['apps/proxy/dist/index.js'], { ...baseEnv, ...extra });
      w.services.push(service);
      return service;
    },
    uploader(extra = {}) {
      const service = spawnService(['apps/uploader/dist/index.js'], { ...baseEnv, ...extra });
      w.services.push(service);
      return service;
    },
    async get(path) {
      const res = await request(`http://127.0.0.1:${proxyPort}${path}`);
      return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) };
    },
    async waitForAll(paths) {
      for (const p of paths) {
        await waitForObjectBytes(s3, bucket, cacheKeyOf(p), stub.imageFor(p), 30_000);
      }
      expect(await listKeys(s3, bucket)).toEqual(paths.map(cacheKeyOf).sort());
    },
    queue() {
      const connection = new Redis(w.redis.url, { maxRetriesPerRequest: null });
      connection.on('error', () => undefined);
      const q = new Queue<UploadJobData>('imgproxy-cache-uploads', { connection, prefix: queuePrefix('imgproxy-cache-uploads') });
      q.on('error', () => undefined);
      queues.push({ queue: q, connection });
      return q;
    },
  };
  world = w;
  return w;
}

const paths = (tag: string, n: number) => Array.from({ length: n }, (_, i) => `/sig/${tag}/plain/https://example.com/${i}.jpg@png`);
const isPut = (r: { method: string }) => r.method === 'PUT';

async function serveAll(w: World, list: string[]): Promise<void> {
  const replies = await Promise.all(list.map((p) => w.get(p)));
  replies.forEach((r, i) => {
    expect(r.status).toBe(200);
    expect(r.body.equals(w.stub.imageFor(list[i]!))).toBe(true);
  });
}

/** Serves `list` again and again until its last image has landed: caching works again. */
async function untilCached(w: World, list: string[], what: string): Promise<void> {
  await waitFor(
    async () => {
      await serveAll(w, list);
      return (await getObject(w.s3, w.bucket, cacheKeyOf(list.at(-1)!))) !== undefined;
    },
    { what, intervalMs: 200, timeoutMs: 30_000 },
  );
}

describe('uploader killed mid-upload', () => {
  it('every image lands after a restart, none with other bytes', async () => {
    const w = await setup({ UPLOAD_LOCK_MS: '2000', UPLOAD_CONCURRENCY: '4' });
    const proxy = w.proxy();
    await proxy.line(/Proxy listening/);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    w.tap.fault = (r) => (isPut(r) ? { kind: 'hold', until: held } : undefined);
    const first = w.uploader();
    const images = paths('killed', 10);
    await serveAll(w, images);
    await waitFor(() => w.tap.held >= 4, { what: 'uploads in flight' });

    first.child.kill('SIGKILL');
    await first.exited();
    release(); // the dead uploader's requests are dropped, as S3 drops a dead client's upload
    w.tap.fault = undefined;
    w.uploader();
    await w.waitForAll(images);
    expect(await w.queue().getJobCounts('failed')).toEqual({ failed: 0 });
  });
});

describe('S3 outage', () => {
  it('clients are unaffected while S3 answers 503 and drops connections; everything lands once it is back', async () => {
    const w = await setup({ UPLOAD_ATTEMPTS: '12', UPLOAD_BACKOFF_MS: '50' });
    let down = true;
    let n = 0;
    w.tap.fault = (r) => {
      if (!down || r.method === 'GET') return undefined;
      return n++ % 2 === 0 ? { kind: 'status', status: 503, code: 'ServiceUnavailable', message: 'Please try again' } : { kind: 'drop' };
    };
    const proxy = w.proxy();
    const uploader = w.uploader();
    await proxy.line(/Proxy listening/);
    await uploader.line(/Uploader started/);
    const images = paths('outage', 8);
    await serveAll(w, images);
    await waitFor(() => n >= 16, { what: 'uploads to be refused' });
    await uploader.line(/Upload failed; will retry/);
    expect(await listKeys(w.s3, w.bucket)).toEqual([]);
    down = false;
    await w.waitForAll(images);
  });

  it('503 SlowDown pauses the queue instead of burning attempts', async () => {
    const w = await setup({ UPLOAD_ATTEMPTS: '2', UPLOAD_THROTTLE_DELAY_MS: '100' });
    let slowDowns = 0;
    w.tap.fault = (r) =>
      isPut(r) && slowDowns++ < 12 ? { kind: 'status', status: 503, code: 'SlowDown', message: 'Please reduce your request rate.' } : undefined;
    const proxy = w.proxy();
    const uploader = w.uploader();
    await proxy.line(/Proxy listening/);
    const images = paths('slowdown', 4);
    await serveAll(w, images);
    // With two attempts each, 12 refusals would fail every image if they counted as attempts.
    await w.waitForAll(images);
    expect(slowDowns).toBeGreaterThanOrEqual(12);
    expect(uploader.logs().some((l) => l.msg === 'S3 asks to slow down: pausing uploads')).toBe(true);
    expect(await w.queue().getJobCounts('failed')).toEqual({ failed: 0 });
  });
});

describe('Redis outage', () => {
  it('the proxy serves through it, started without Redis or losing it for longer than ENQUEUE_WAIT_MS, and caching resumes by itself', async () => {
    const w = await setup({ ENQUEUE_WAIT_MS: '300' }, { redisUp: false });
    const proxy = w.proxy();
    await proxy.line(/Proxy listening/); // starts although Redis is not there
    const uploader = w.uploader();
    const before = paths('before', 3);
    await serveAll(w, before);
    const downs = () => proxy.logs().filter((l) => l.outcome === 'redis-down' && l.msg === 'Cache hand-off').length;
    await waitFor(() => downs() >= 3, { what: 'redis-down hand-offs' });

    w.redis = await spawnRedisServer(w.redis.port);
    await uploader.line(/Uploader started/);
    const up = paths('up', 3);
    await untilCached(w, up, 'caching to resume');
    await w.waitForAll(up);

    await w.redis.stop(); // Redis dies under load, and stays away longer than ENQUEUE_WAIT_MS
    const during = paths('during', 5);
    await serveAll(w, during);
    await waitFor(() => downs() >= 3 + during.length, { what: 'the images served meanwhile to be skipped' });
    w.redis = await spawnRedisServer(w.redis.port);
    const after = paths('after', 3);
    await untilCached(w, after, 'caching to resume after the restart');
    await waitFor(async () => (await listKeys(w.s3, w.bucket)).length === up.length + after.length, { what: 'the last uploads' });
    // Redis errors were logged, rate-limited (one line per 10 s, by the lines' own clock), not once per request
    const redisErrors = proxy.logs().filter((l) => String(l.msg).startsWith('Redis connection error'));
    expect(redisErrors.length).toBeGreaterThan(0);
    expectSpacedBy(redisErrors, 10_000);
  });

  it('loses no image across a Redis killed and restarted within 3 s: the 10 served meanwhile wait and land, without a second request', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'imgproxy-cache-aof-'));
    cleanup.push(async () => rmSync(dir, { recursive: true, force: true }));
    // its append-only file keeps what it acknowledged across the kill, as a production Redis's does
    const persistent = ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir];
    const w = await setup({ UPLOAD_GATHER_MS: '0' }, { redisUp: false });
    w.redis = await spawnRedisServer(w.redis.port, persistent);
    const proxy = w.proxy();
    const uploader = w.uploader();
    await proxy.line(/Proxy listening/);
    await uploader.line(/Uploader started/);
    const warm = paths('warm', 2);
    await serveAll(w, warm);
    for (const p of warm) await waitForObjectBytes(w.s3, w.bucket, cacheKeyOf(p), w.stub.imageFor(p), 30_000);

    await w.redis.stop(); // SIGKILL
    const during = paths('gap', 10);
    await serveAll(w, during);
    w.redis = await spawnRedisServer(w.redis.port, persistent); // at once: a restart of a moment

    await w.waitForAll([...warm, ...during]);
    const handOffs = proxy.logs().filter((l) => l.msg === 'Cache hand-off' && during.includes(String(l.path)));
    expect(handOffs.map((l) => l.outcome)).toEqual(during.map(() => 'queued'));
    expect(w.stub.requests.filter((r) => during.includes(r.url))).toHaveLength(during.length); // each rendered once
  });
});

describe('graceful shutdown', () => {
  it('SIGTERM while images wait for a Redis that is away: the proxy exits 0 within SHUTDOWN_TIMEOUT_MS, not ENQUEUE_WAIT_MS', async () => {
    const w = await setup({ ENQUEUE_WAIT_MS: '600000', SHUTDOWN_TIMEOUT_MS: '1000' }, { redisUp: false });
    const proxy = w.proxy();
    await proxy.line(/Proxy listening/);
    await serveAll(w, paths('waiting', 3));
    proxy.child.kill('SIGTERM');
    // ten minutes of ENQUEUE_WAIT_MS would outlast this wait by far
    expect(await proxy.exited(20_000)).toBe(0);
    expect(proxy.logs().filter((l) => l.msg === 'Cache hand-off' && l.outcome === 'redis-down')).toHaveLength(3);
  });

  it('SIGTERM to the proxy (twice): stops accepting, finishes the response in flight and its hand-off, exits 0', async () => {
    const w = await setup();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const path = '/sig/inflight/plain/https://example.com/x.jpg@png';
    w.stub.on(path, () => ({
      headers: { 'content-type': 'image/png', 'cache-control': 'max-age=60, public' },
      body: w.stub.imageFor(path),
      pieceSize: 1024,
      holdAfterFirstPiece: held,
    }));
    const proxy = w.proxy();
    w.uploader();
    await proxy.line(/Proxy listening/);
    const res = await request(`http://127.0.0.1:${w.proxyPort}${path}`);
    const body = res.body.arrayBuffer();
    proxy.child.kill('SIGTERM');
    await proxy.line(/Shutting down/);
    proxy.child.kill('SIGTERM'); // an impatient second signal changes nothing
    await expect(request(`http://127.0.0.1:${w.proxyPort}/sig/new.png`)).rejects.toThrow(); // no longer accepting
    release();
    expect(Buffer.from(await body).equals(w.stub.imageFor(path))).toBe(true);
    expect(await proxy.exited()).toBe(0);
    await w.waitForAll([path]);
  });

  it('SIGTERM to an uploader: uploads it cannot finish in time go back to the queue, not to failed', async () => {
    const w = await setup({ SHUTDOWN_TIMEOUT_MS: '300' });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    w.tap.fault = (r) => (isPut(r) ? { kind: 'hold', until: held } : undefined);
    const proxy = w.proxy();
    const first = w.uploader();
    await proxy.line(/Proxy listening/);
    const images = paths('drain', 3);
    await serveAll(w, images);
    await waitFor(() => w.tap.held >= 3, { what: 'uploads in flight' });
    first.child.kill('SIGTERM');
    expect(await first.exited()).toBe(0);
    expect(first.output()).toMatch(/putting them back in the queue/);
    const counts = await w.queue().getJobCounts('waiting', 'active', 'failed');
    expect(counts).toEqual({ waiting: 3, active: 0, failed: 0 });
    release();
    w.tap.fault = undefined;
    w.uploader();
    await w.waitForAll(images);
  });
});
