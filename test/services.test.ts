import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cacheKeyOf } from '@imgproxy-cache/shared';
import { request } from 'undici';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { SERVICE_NODE_FLAGS } from '../apps/launcher/src/node-flags.js';
import { freePort } from './support/free-port.js';
import { type ImgproxyStub, startImgproxyStub } from './support/imgproxy-stub.js';
import { childrenOf, commandsOfChildren } from './support/proc.js';
import { createBucket, testS3Client, waitForObjectBytes } from './support/s3.js';
import { type Service, spawnService } from './support/service.js';
import { waitFor } from './support/wait.js';

// The built entry points, run the way users run them: configuration from the environment only,
// the original tool's log lines, clear failures for bad configuration, signals.

const PROXY = ['apps/proxy/dist/index.js'];
const UPLOADER = ['apps/uploader/dist/index.js'];
const ALL = ['apps/launcher/dist/index.js'];

const running: Service[] = [];
let stub: ImgproxyStub | undefined;
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
  await stub?.close();
  stub = undefined;
});
const run = (args: string[], env: Record<string, string>) => {
  const service = spawnService(args, env);
  running.push(service);
  return service;
};

describe('configuration', () => {
  it('the proxy refuses bad values at start, naming every variable, exit 2', async () => {
    const proxy = run(PROXY, { IMGPROXY_BIND: 'nonsense', CACHE_MAX_BYTES: 'lots' });
    expect(await proxy.exited()).toBe(2);
    expect(proxy.output()).toMatch(/IMGPROXY_BIND must be host:port or :port, got "nonsense"/);
    expect(proxy.output()).toMatch(/CACHE_MAX_BYTES must be a whole number/);
  });

  it('the uploader requires S3_BUCKET', async () => {
    const uploader = run(UPLOADER, {});
    expect(await uploader.exited()).toBe(2);
    expect(uploader.output()).toMatch(/S3_BUCKET is required/);
  });

  it('the uploader refuses a niceness outside 0–19', async () => {
    const uploader = run(UPLOADER, { S3_BUCKET: 'b', UPLOAD_NICE: '-5' });
    expect(await uploader.exited()).toBe(2);
    expect(uploader.output()).toMatch(/UPLOAD_NICE must be a whole number from 0 to 19, got "-5"/);
  });

  it('the uploader refuses a bucket that does not exist', async () => {
    const uploader = run(UPLOADER, {
      S3_BUCKET: 'no-such-bucket',
      S3_ENDPOINT: `http://127.0.0.1:${inject('s3rverPort')}`,
      S3_REGION: 'us-east-1',
      REDIS_URL: inject('redisUrl'),
    });
    expect(await uploader.exited()).toBe(2);
    expect(uploader.output()).toMatch(/S3_BUCKET \\?"no-such-bucket\\?" does not exist/);
  });
});

describe("the uploader's CPU priority", () => {
  /** niceness of every thread of a process (Linux keeps one per thread) */
  const threadNiceness = (pid: number) =>
    readdirSync(`/proc/${pid}/task`).map((tid) => Number(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]));

  async function startedUploader(env: Record<string, string>): Promise<Service> {
    const bucket = `b-${randomUUID().slice(0, 8)}`;
    const s3 = testS3Client(`http://127.0.0.1:${inject('s3rverPort')}`);
    await createBucket(s3, bucket);
    s3.destroy();
    const uploader = run(UPLOADER, {
      S3_BUCKET: bucket,
      S3_ENDPOINT: `http://127.0.0.1:${inject('s3rverPort')}`,
      S3_REGION: 'us-east-1',
      REDIS_URL: inject('redisUrl'),
      QUEUE_NAME: `nice-${bucket}`,
      ...env,
    });
    await uploader.line(/Uploader started/);
    return uploader;
  }

  it.runIf(existsSync('/proc/self/task'))('is lowered on every thread: 10 by default, UPLOAD_NICE otherwise, 0 leaves it', async () => {
    const inherited = threadNiceness(process.pid)[0]!; // never lowered below what it was started with
    const byDefault = await startedUploader({});
    expect(new Set(threadNiceness(byDefault.child.pid!))).toEqual(new Set([Math.max(10, inherited)]));
    const seven = await startedUploader({ UPLOAD_NICE: '7' });
    expect(new Set(threadNiceness(seven.child.pid!))).toEqual(new Set([Math.max(7, inherited)]));
    const untouched = await startedUploader({ UPLOAD_NICE: '0' });
    expect(new Set(threadNiceness(untouched.child.pid!))).toEqual(new Set([inherited]));
  });
});

describe('start-up', () => {
  it('waits for imgproxy, then serves; exits 1 when imgproxy never becomes healthy', async () => {
    const port = await freePort();
    const proxy = run(PROXY, { IMGPROXY_URL: `http://127.0.0.1:${port}`, HEALTH_CHECK_TIMEOUT_IN_SEC: '1', IMGPROXY_BIND: '127.0.0.1:0' });
    expect(await proxy.exited()).toBe(1);
    expect(proxy.output()).toMatch(/Waiting for imgproxy to be ready\.\.\./);
    expect(proxy.output()).toMatch(/imgproxy did not become healthy within 1s/);
  });

  it.each([
    ['a process each', 'false'],
    ['one process', 'true'],
  ])('npm start (%s: UPLOADER_IN_PROXY=%s) logs the original lines, serves and caches, and stops on SIGTERM with exit 0', async (_, inProxy) => {
    stub = await startImgproxyStub();
    stub.healthy = false; // not ready yet: the proxy must wait
    const bucket = `b-${randomUUID().slice(0, 8)}`;
    const s3 = testS3Client(`http://127.0.0.1:${inject('s3rverPort')}`);
    await createBucket(s3, bucket);
    const port = await freePort();
    const env = {
      IMGPROXY_URL: stub.url,
      IMGPROXY_BIND: `127.0.0.1:${port}`,
      REDIS_URL: inject('redisUrl'),
      QUEUE_NAME: `svc-${bucket}`,
      S3_BUCKET: bucket,
      S3_FOLDER: 'processed',
      S3_ENDPOINT: `http://127.0.0.1:${inject('s3rverPort')}`,
      S3_REGION: 'us-east-1',
    };
    const all = run(ALL, { ...env, UPLOADER_IN_PROXY: inProxy });
    await all.line(/Waiting for imgproxy to be ready\.\.\./);
    stub.healthy = true;
    await all.line(/imgproxy is ready/);
    await all.line(/Proxy listening/);
    await all.line(/Uploader started/);
    // npm start's own process runs both, or a child each, with the services' Node flags
    const children = commandsOfChildren(all.child.pid!).filter((c) => c.includes('/dist/'));
    if (inProxy === 'true') expect(children).toEqual([]);
    else expect(children.map((c) => /apps\/(proxy|uploader)\/dist/.exec(c)?.[1]).sort()).toEqual(['proxy', 'uploader']);
    for (const command of children) expect(command).toContain(SERVICE_NODE_FLAGS.join(' '));

    const path = `/sig/rs:fill:300:300/plain/https://example.com/cat-${inProxy}.jpg@png`;
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

  it('npm start with a process each (UPLOADER_IN_PROXY=false) stops both services when one of them exits', async () => {
    stub = await startImgproxyStub();
    const all = run(ALL, {
      UPLOADER_IN_PROXY: 'false',
      IMGPROXY_URL: stub.url,
      IMGPROXY_BIND: '127.0.0.1:0',
      REDIS_URL: inject('redisUrl'),
      S3_BUCKET: 'no-such-bucket', // the uploader exits at start
      S3_ENDPOINT: `http://127.0.0.1:${inject('s3rverPort')}`,
      S3_REGION: 'us-east-1',
    });
    expect(await all.exited()).toBe(2);
    expect(all.output()).toMatch(/uploader exited \(2\); stopping the other service/);
  });
});

describe('PROXY_WORKERS', () => {
  const metric = (text: string, name: string) =>
    text
      .split('\n')
      .filter((l) => l.startsWith(name))
      .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);

  it.runIf(existsSync('/proc/self/stat'))('serves from several workers, sums their metrics, replaces one that dies, and stops them all', async () => {
    stub = await startImgproxyStub();
    const bucket = `b-${randomUUID().slice(0, 8)}`;
    const s3 = testS3Client(`http://127.0.0.1:${inject('s3rverPort')}`);
    await createBucket(s3, bucket);
    const [port, adminPort] = [await freePort(), await freePort()];
    const env = {
      IMGPROXY_URL: stub.url,
      IMGPROXY_BIND: `127.0.0.1:${port}`,
      METRICS_BIND: `127.0.0.1:${adminPort}`,
      PROXY_WORKERS: '2',
      REDIS_URL: inject('redisUrl'),
      QUEUE_NAME: `workers-${bucket}`,
    };
    const proxy = run(PROXY, env);
    await proxy.line(/Proxy listening/);
    expect(proxy.output().match(/Proxy listening/g)).toHaveLength(1);
    expect(proxy.output().match(/imgproxy is ready/g)).toHaveLength(1);
    const workers = childrenOf(proxy.child.pid!);
    expect(workers).toHaveLength(2);

    // served and cached as by one process
    const paths = Array.from({ length: 20 }, (_, i) => `/sig/workers/plain/https://example.com/${i}.jpg@png`);
    for (const p of paths) {
      const res = await request(`http://127.0.0.1:${port}${p}`);
      expect(Buffer.from(await res.body.arrayBuffer()).equals(stub.imageFor(p))).toBe(true);
    }
    const uploader = run(UPLOADER, {
      ...env,
      METRICS_BIND: 'off',
      S3_BUCKET: bucket,
      S3_ENDPOINT: `http://127.0.0.1:${inject('s3rverPort')}`,
      S3_REGION: 'us-east-1',
    });
    await uploader.line(/Uploader started/);
    for (const p of paths) await waitForObjectBytes(s3, bucket, cacheKeyOf(p), stub.imageFor(p));

    // the primary answers for all: every response counted once, from whichever worker served it
    const scrape = async () => (await request(`http://127.0.0.1:${adminPort}/metrics`)).body.text();
    expect(metric(await scrape(), 'imgproxy_cache_requests_total{method="GET",status="200"')).toBe(paths.length);
    expect(metric(await scrape(), 'imgproxy_cache_cache_decisions_total{outcome="queued"')).toBe(paths.length);
    const ready = await request(`http://127.0.0.1:${adminPort}/readyz`);
    expect(ready.statusCode).toBe(200);
    expect(await ready.body.json()).toEqual({ ready: true, checks: { serving: true, workers: true, imgproxy: true, redis: true } });

    // a worker that dies is replaced; serving goes on meanwhile
    process.kill(workers[0]!, 'SIGKILL');
    await proxy.line(/A proxy worker exited; starting another/);
    await proxy.line(/The new proxy worker is listening/);
    const now = childrenOf(proxy.child.pid!);
    expect(now).toHaveLength(2);
    expect(now).not.toContain(workers[0]);
    const again = await request(`http://127.0.0.1:${port}${paths[0]}`);
    expect(again.statusCode).toBe(200);
    await again.body.dump();

    const current = childrenOf(proxy.child.pid!);
    proxy.child.kill('SIGTERM');
    await proxy.line(/Shutting down/);
    proxy.child.kill('SIGTERM'); // a second signal changes nothing
    expect(await proxy.exited()).toBe(0);
    expect(proxy.output().match(/Proxy stopped/g)).toHaveLength(1);
    for (const pid of current) expect(existsSync(`/proc/${pid}`), `worker ${pid} still running`).toBe(false);
    s3.destroy();
  });

  it.runIf(existsSync('/proc/self/stat'))('leaves no workers behind when its primary is killed outright', async () => {
    stub = await startImgproxyStub();
    const proxy = run(PROXY, { IMGPROXY_URL: stub.url, IMGPROXY_BIND: '127.0.0.1:0', METRICS_BIND: 'off', PROXY_WORKERS: '2', REDIS_URL: inject('redisUrl') });
    await proxy.line(/Proxy listening/);
    const workers = childrenOf(proxy.child.pid!);
    expect(workers).toHaveLength(2);
    proxy.child.kill('SIGKILL');
    await waitFor(() => workers.every((pid) => !existsSync(`/proc/${pid}`)), { what: 'the orphaned workers to exit' });
  });

  it('stops with exit 2 and the reason when its workers cannot start', async () => {
    stub = await startImgproxyStub();
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const proxy = run(PROXY, {
        IMGPROXY_URL: stub.url,
        IMGPROXY_BIND: `127.0.0.1:${(taken.address() as AddressInfo).port}`,
        METRICS_BIND: 'off',
        PROXY_WORKERS: '2',
        REDIS_URL: inject('redisUrl'),
      });
      expect(await proxy.exited()).toBe(2);
      expect(proxy.output()).toMatch(/A proxy worker failed to start; stopping/);
      expect(proxy.output()).toMatch(/IMGPROXY_BIND 127\.0\.0\.1:\d+ is already in use by another process/);
    } finally {
      taken.close();
    }
  });
});

describe('the container entry point', () => {
  it('refuses an unknown service name', async () => {
    const entry = run(['scripts/service.mjs', 'bogus'], {});
    expect(await entry.exited()).toBe(2);
    expect(entry.output()).toMatch(/unknown service "bogus"; expected one of proxy, uploader, dashboard, purge, warm, reindex, setup-bucket, all, all-in-one/);
  });

  it('loads the named service into its own process', async () => {
    const entry = run(['scripts/service.mjs', 'uploader'], {});
    expect(await entry.exited()).toBe(2);
    expect(entry.output()).toMatch(/imgproxy-cache uploader: Invalid configuration:\n {2}- S3_BUCKET is required/);
  });

  it('all-in-one stops everything when imgproxy cannot run', async () => {
    const entry = run(['scripts/service.mjs', 'all-in-one'], {
      PATH: '/nonexistent',
      S3_BUCKET: 'b',
      REDIS_URL: inject('redisUrl'),
      IMGPROXY_BIND: '127.0.0.1:0',
      HEALTH_CHECK_TIMEOUT_IN_SEC: '30',
    });
    expect(await entry.exited()).toBe(127);
    expect(entry.output()).toMatch(/could not start imgproxy/);
  });
});
