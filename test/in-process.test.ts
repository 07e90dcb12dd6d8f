import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { type ImgproxyStub, startImgproxyStub } from './support/imgproxy-stub.js';
import { anyProcessMentions, childrenOf, commandsOfChildren } from './support/proc.js';
import { createBucket, testS3Client } from './support/s3.js';
import { type Service, spawnService } from './support/service.js';

// UPLOADER_IN_PROXY=true (npm start's default): the proxy and the uploader in npm start's own
// process, for a small machine. Its start-up, serving and stop are services.test.ts's (both
// layouts); here its failures, its default and PROXY_WORKERS.

const ALL = ['apps/launcher/dist/index.js'];

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

describe('npm start with UPLOADER_IN_PROXY=true', () => {
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
    const commands = commandsOfChildren(workers.child.pid!);
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
    expect(anyProcessMentions(dataDir)).toBe(false);
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
