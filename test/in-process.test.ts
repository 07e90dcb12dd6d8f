import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheKeyOf } from '@imgproxy-cache/shared';
import { request } from 'undici';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { freePort } from './support/free-port.js';
import { type ImgproxyStub, startImgproxyStub } from './support/imgproxy-stub.js';
import { createBucket, testS3Client, waitForObjectBytes } from './support/s3.js';
import { type Service, spawnService } from './support/service.js';

// UPLOADER_IN_PROXY=true (npm start's default): the proxy and the uploader in npm start's own
// process, for a small machine: one Node process instead of three, the same lines, the same stop.

const ALL = ['scripts/start-all.mjs'];

const running: Service[] = [];
let stub: ImgproxyStub | undefined;
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
  await stub?.close();
  stub = undefined;
});
const run = (env: Record<string, string>) => {
  const service = spawnService(ALL, { UPLOADER_IN_PROXY: 'true', ...env });
  running.push(service);
  return service;
};

/** The processes `pid` started (from /proc: every process whose parent it is). */
function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        return Number(readFileSync(`/proc/${e}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]) === pid;
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

describe('npm start with UPLOADER_IN_PROXY=true', () => {
  it('serves and caches from one process, logs both services, and stops on SIGTERM with exit 0', async () => {
    stub = await startImgproxyStub();
    const bucket = `b-${randomUUID().slice(0, 8)}`;
    const s3 = testS3Client(`http://127.0.0.1:${inject('s3rverPort')}`);
    await createBucket(s3, bucket);
    const port = await freePort();
    const all = run({
      IMGPROXY_URL: stub.url,
      IMGPROXY_BIND: `127.0.0.1:${port}`,
      REDIS_URL: inject('redisUrl'),
      QUEUE_NAME: `inproc-${bucket}`,
      S3_BUCKET: bucket,
      S3_FOLDER: 'processed',
      S3_ENDPOINT: `http://127.0.0.1:${inject('s3rverPort')}`,
      S3_REGION: 'us-east-1',
      METRICS_BIND: '127.0.0.1:0',
    });
    await all.line(/Proxy listening/);
    await all.line(/Uploader started/);
    expect(childrenOf(all.child.pid!)).toEqual([]);

    const path = '/sig/rs:fill:300:300/plain/https://example.com/one-process.jpg@png';
    const res = await request(`http://127.0.0.1:${port}${path}`);
    expect(Buffer.from(await res.body.arrayBuffer()).equals(stub.imageFor(path))).toBe(true);
    await waitForObjectBytes(s3, bucket, `processed/${cacheKeyOf(path)}`, stub.imageFor(path));
    await all.line(new RegExp(`Uploaded to S3 path=${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} bucket=${bucket} key=processed/${cacheKeyOf(path)}`));

    all.child.kill('SIGTERM');
    expect(await all.exited()).toBe(0);
    expect(all.output()).toMatch(/Proxy stopped/);
    expect(all.output()).toMatch(/Uploader stopped/);
    s3.destroy();
  });

  it('stops with exit 2 and one line when the uploader cannot start (no such bucket)', async () => {
    stub = await startImgproxyStub();
    const all = run({
      IMGPROXY_URL: stub.url,
      IMGPROXY_BIND: '127.0.0.1:0',
      REDIS_URL: inject('redisUrl'),
      S3_BUCKET: 'no-such-bucket',
      S3_ENDPOINT: `http://127.0.0.1:${inject('s3rverPort')}`,
      S3_REGION: 'us-east-1',
    });
    expect(await all.exited()).toBe(2);
    expect(all.output()).toMatch(/^imgproxy-cache uploader: S3_BUCKET "no-such-bucket" does not exist at S3_ENDPOINT/m);
    expect(all.output()).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('is the default; with PROXY_WORKERS above 1 the uploader gets a process of its own', async () => {
    stub = await startImgproxyStub();
    const bucket = `b-${randomUUID().slice(0, 8)}`;
    const s3 = testS3Client(`http://127.0.0.1:${inject('s3rverPort')}`);
    await createBucket(s3, bucket);
    s3.destroy();
    const env = {
      IMGPROXY_URL: stub.url,
      IMGPROXY_BIND: '127.0.0.1:0',
      REDIS_URL: inject('redisUrl'),
      S3_BUCKET: bucket,
      S3_REGION: 'us-east-1',
      S3_ENDPOINT: `http://127.0.0.1:${inject('s3rverPort')}`,
    };
    const defaults = spawnService(ALL, env);
    running.push(defaults);
    await defaults.line(/Uploader started/);
    expect(childrenOf(defaults.child.pid!)).toEqual([]);

    const workers = spawnService(ALL, { ...env, PROXY_WORKERS: '2' });
    running.push(workers);
    await workers.line(/Uploader started/);
    const commands = childrenOf(workers.child.pid!).map((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
    expect(commands.some((c) => c.includes('apps/uploader/dist/index.js'))).toBe(true);
    expect(commands.some((c) => c.includes('apps/proxy/dist/index.js'))).toBe(true);
  });

  it("stops with exit 2 on a service's bad configuration, and stops the Redis it started", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'imgproxy-cache-inproc-'));
    // the proxy's own rule: read-through needs a bucket (and the uploader needs one too)
    const all = run({ DATA_DIR: dataDir, CACHE_READ_THROUGH: 'true', IMGPROXY_BIND: '127.0.0.1:0' });
    expect(await all.exited()).toBe(2);
    expect(all.output()).toMatch(/^imgproxy-cache proxy: Invalid configuration:\n {2}- CACHE_READ_THROUGH=true needs S3_BUCKET/m);
    expect(all.output()).toMatch(/^imgproxy-cache uploader: Invalid configuration:\n {2}- S3_BUCKET is required/m);
    expect(all.output()).toMatch(/Redis is starting/); // it had started one
    const redisOfIt = () =>
      readdirSync('/proc')
        .filter((e) => /^\d+$/.test(e))
        .some((e) => {
          try {
            return readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(dataDir);
          } catch {
            return false;
          }
        });
    expect(redisOfIt()).toBe(false);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('refuses PROXY_WORKERS above 1 when asked for explicitly, naming both variables, exit 2', async () => {
    const all = run({ PROXY_WORKERS: '2', REDIS_URL: inject('redisUrl') });
    expect(await all.exited()).toBe(2);
    expect(all.output()).toMatch(
      /^imgproxy-cache npm start: Invalid configuration:\n {2}- UPLOADER_IN_PROXY=true runs the proxy in one process: PROXY_WORKERS must be 1, got 2$/m,
    );
  });
});
