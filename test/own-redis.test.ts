import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheKeyOf } from '@imgproxy-cache/shared';
import { request } from 'undici';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { freePort } from './support/free-port.js';
import { type ImgproxyStub, startImgproxyStub } from './support/imgproxy-stub.js';
import { createBucket, testS3Client, waitForObjectBytes } from './support/s3.js';
import { type S3Tap, startS3Tap } from './support/s3-tap.js';
import { type Service, spawnService } from './support/service.js';
import { waitFor } from './support/wait.js';

// `npm start` without REDIS_URL runs a Redis of its own in DATA_DIR (apps/launcher/src/own-redis.ts): one
// process group needing nothing but a bucket, whose queue survives restarts.

const ALL = ['apps/launcher/dist/index.js'];
const running: Service[] = [];
const dirs: string[] = [];
let stub: ImgproxyStub | undefined;
let tap: S3Tap | undefined;
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
  await stub?.close();
  await tap?.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  stub = tap = undefined;
});

function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'imgproxy-cache-data-'));
  dirs.push(dir);
  return dir;
}

interface World {
  env: Record<string, string>;
  port: number;
  s3: ReturnType<typeof testS3Client>;
  bucket: string;
  get(path: string): Promise<Buffer>;
  /** `npm start` as a process group of its own (so that the group can be killed) */
  start(extra?: Record<string, string>): Service;
}

async function world(): Promise<World> {
  stub = await startImgproxyStub();
  tap = await startS3Tap(inject('s3rverPort'));
  const bucket = `own-${randomUUID().slice(0, 8)}`;
  const s3 = testS3Client(`http://127.0.0.1:${inject('s3rverPort')}`);
  await createBucket(s3, bucket);
  const port = await freePort();
  const env = {
    IMGPROXY_URL: stub.url,
    IMGPROXY_BIND: `127.0.0.1:${port}`,
    DATA_DIR: dataDir(),
    S3_BUCKET: bucket,
    S3_ENDPOINT: tap.endpoint,
    S3_REGION: 'us-east-1',
    UPLOAD_BACKOFF_MS: '100',
    UPLOAD_GATHER_MS: '0',
    METRICS_BIND: '127.0.0.1:0',
  };
  return {
    env,
    port,
    s3,
    bucket,
    async get(path) {
      const res = await request(`http://127.0.0.1:${port}${path}`);
      return Buffer.from(await res.body.arrayBuffer());
    },
    start(extra = {}) {
      const service = spawnService(ALL, { ...env, ...extra });
      running.push(service);
      return service;
    },
  };
}

const refusePuts = (t: S3Tap) => {
  t.fault = (r) => (r.method === 'PUT' ? { kind: 'status', status: 503, code: 'ServiceUnavailable' } : undefined);
};

describe('npm start without REDIS_URL', () => {
  it('runs a Redis of its own in DATA_DIR, on a socket, and caches an image end to end', async () => {
    const w = await world();
    const all = w.start();
    await all.line(/Proxy listening/);
    await all.line(/Uploader started/);
    const path = '/sig/plain/https://example.com/own.jpg@png';
    expect((await w.get(path)).equals(stub!.imageFor(path))).toBe(true);
    await waitForObjectBytes(w.s3, w.bucket, cacheKeyOf(path), stub!.imageFor(path));
    all.child.kill('SIGTERM');
    expect(await all.exited()).toBe(0);
    expect(all.output()).toMatch(/Proxy stopped/);
    expect(all.output()).toMatch(/Uploader stopped/);
    // Redis's ordinary start and stop lines are info, not warnings
    const redisLines = all.logs().filter((l) => l.service === 'redis');
    for (const msg of [/Redis is starting/, /Server initialized/, /ready to exit/]) {
      expect(
        redisLines.find((l) => msg.test(String(l.msg))),
        String(msg),
      ).toMatchObject({ level: 30 });
    }
    expect(redisLines.filter((l) => l.level === 40 && !/^WARNING /.test(String(l.msg)))).toEqual([]);
  });

  it('keeps the queue across a stop and a start: every image queued while S3 refused lands after the restart', async () => {
    const w = await world();
    refusePuts(tap!);
    const first = w.start({ UPLOAD_ATTEMPTS: '20' });
    await first.line(/Uploader started/);
    await first.line(/Proxy listening/);
    const paths = [1, 2, 3, 4, 5].map((i) => `/sig/plain/https://example.com/kept-${i}.jpg@png`);
    for (const p of paths) expect((await w.get(p)).equals(stub!.imageFor(p))).toBe(true);
    await waitFor(() => tap!.puts().length >= paths.length, { what: 'the uploads to be refused once' });
    first.child.kill('SIGTERM');
    expect(await first.exited()).toBe(0);

    tap!.fault = undefined;
    const second = w.start();
    await second.line(/Uploader started/);
    await second.line(/Proxy listening/);
    for (const p of paths) await waitForObjectBytes(w.s3, w.bucket, cacheKeyOf(p), stub!.imageFor(p));
  });

  it('loses no queued image when the whole group is killed (Redis writes its append-only file before it answers)', async () => {
    const w = await world();
    refusePuts(tap!);
    // a short lock: the uploads the killed uploader held return to the queue soon after the restart
    const first = w.start({ UPLOAD_ATTEMPTS: '20', LOG_LEVEL: 'debug', UPLOAD_LOCK_MS: '2000' });
    await first.line(/Uploader started/);
    await first.line(/Proxy listening/);
    const paths = [1, 2, 3, 4, 5].map((i) => `/sig/plain/https://example.com/killed-${i}.jpg@png`);
    for (const p of paths) await w.get(p);
    // every hand-off acknowledged by Redis (bytes and job), then SIGKILL to every process at once
    await waitFor(() => paths.every((p) => first.logs().some((l) => l.msg === 'Cache hand-off' && l.path === p && l.outcome === 'queued')), {
      what: 'the hand-offs',
    });
    process.kill(-first.child.pid!, 'SIGKILL');
    await first.exited();

    tap!.fault = undefined;
    const second = w.start({ UPLOAD_LOCK_MS: '2000' });
    await second.line(/Uploader started/);
    await second.line(/Proxy listening/);
    for (const p of paths) await waitForObjectBytes(w.s3, w.bucket, cacheKeyOf(p), stub!.imageFor(p));
  });
});

describe('npm start signalled while its Redis starts', () => {
  it('starts no service, stops its Redis once it is up (its append-only file synced), frees DATA_DIR and exits 0', async () => {
    const w = await world();
    // the real redis-server behind a gate the test opens: the signal lands while it is starting
    const bin = dataDir();
    const gate = join(bin, 'gate');
    execFileSync('mkfifo', [gate]);
    const real = execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim();
    const wrapper = `#!/bin/sh\n[ "$1" = --version ] && exec ${real} --version\necho 'gate: held' >&2\nread _ < ${gate}\nexec ${real} "$@"\n`;
    writeFileSync(join(bin, 'redis-server'), wrapper, { mode: 0o755 });
    const all = w.start({ PATH: `${bin}:${process.env.PATH}` });
    await all.line(/gate: held/);
    all.child.kill('SIGTERM');
    await all.line(/SIGTERM before the services started: stopping without starting them/);
    await writeFile(gate, 'go\n');
    expect(await all.exited()).toBe(0);
    expect(all.output()).not.toMatch(/Proxy listening|Uploader started/);
    expect(all.logs().some((l) => l.service === 'redis' && /Redis is now ready to exit/.test(String(l.msg)))).toBe(true);
    expect(existsSync(join(w.env.DATA_DIR!, 'npm-start.pid'))).toBe(false);
  });
});

describe('npm start without REDIS_URL refuses, with one line and exit 2', () => {
  it('without redis-server installed', async () => {
    const w = await world();
    const all = w.start({ PATH: '/nonexistent' });
    expect(await all.exited()).toBe(2);
    expect(all.output().trim()).toBe(
      'imgproxy-cache npm start: npm start runs its own Redis when REDIS_URL is not set, and redis-server is not installed: install Redis (apt-get install redis-server) or set REDIS_URL',
    );
  });

  it('with a DATA_DIR it cannot write', async () => {
    const w = await world();
    const file = join(dataDir(), 'a-file');
    writeFileSync(file, 'not a directory');
    const all = w.start({ DATA_DIR: `${file}/data` });
    expect(await all.exited()).toBe(2);
    expect(all.output()).toMatch(new RegExp(`^imgproxy-cache npm start: DATA_DIR ${file}/data cannot be written \\(ENOTDIR\\)`));
    expect(all.output().trim().split('\n')).toHaveLength(1);
  });

  it('when another npm start uses the same DATA_DIR', async () => {
    const w = await world();
    const first = w.start();
    await first.line(/Proxy listening/);
    const second = w.start({ IMGPROXY_BIND: '127.0.0.1:0' });
    expect(await second.exited()).toBe(2);
    expect(second.output().trim()).toBe(
      `imgproxy-cache npm start: DATA_DIR ${w.env.DATA_DIR} is in use by another npm start (pid ${first.child.pid}) and its Redis: one npm start per directory`,
    );
    // the first is unharmed
    const path = '/sig/plain/https://example.com/first.jpg@png';
    expect((await w.get(path)).equals(stub!.imageFor(path))).toBe(true);
    await waitForObjectBytes(w.s3, w.bucket, cacheKeyOf(path), stub!.imageFor(path));
  });
});
