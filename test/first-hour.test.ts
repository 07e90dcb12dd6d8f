import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { request } from 'undici';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { freePort } from './support/free-port.js';
import { type ImgproxyStub, startImgproxyStub } from './support/imgproxy-stub.js';
import { spawnRedisServer } from './support/redis-server.js';
import { createBucket, testS3Client } from './support/s3.js';
import { ROOT, type Service, spawnService } from './support/service.js';
import { waitFor } from './support/wait.js';

// What a new user meets in their first hour, as found by following the README: two services on
// one host, a port already taken, Redis down or set to evict, `npm start` stopped by its npm.

const PROXY = ['apps/proxy/dist/index.js'];
const UPLOADER = ['apps/uploader/dist/index.js'];

const running: Service[] = [];
const cleanups: (() => Promise<unknown> | unknown)[] = [];
let stub: ImgproxyStub | undefined;
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await stub?.close();
  stub = undefined;
});
const run = (args: string[], env: Record<string, string>) => {
  const service = spawnService(args, env);
  running.push(service);
  return service;
};

/** A line that only a stack trace prints. */
const STACK_LINE = /^\s+at .+\(.+:\d+:\d+\)$|^\s+at .+:\d+:\d+$/m;

async function bucket(): Promise<Record<string, string>> {
  const name = `b-${randomUUID().slice(0, 8)}`;
  const s3 = testS3Client(`http://127.0.0.1:${inject('s3rverPort')}`);
  await createBucket(s3, name);
  s3.destroy();
  return { S3_BUCKET: name, S3_ENDPOINT: `http://127.0.0.1:${inject('s3rverPort')}`, S3_REGION: 'us-east-1', QUEUE_NAME: `fh-${name}` };
}

async function takenPort(): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return (server.address() as AddressInfo).port;
}

const ok = async (url: string) => (await request(url)).statusCode;

describe('two services on one host', () => {
  it('proxy and uploader started separately with the defaults both run, each with its own admin port', async () => {
    stub = await startImgproxyStub();
    const env = { ...(await bucket()), REDIS_URL: inject('redisUrl'), METRICS_BIND: '' };
    const proxy = run(PROXY, { ...env, IMGPROXY_URL: stub.url, IMGPROXY_BIND: '127.0.0.1:0' });
    const uploader = run(UPLOADER, env);
    await proxy.line(/Proxy listening/);
    await uploader.line(/Uploader started/);
    expect(await ok('http://127.0.0.1:9464/livez')).toBe(200);
    expect(await ok('http://127.0.0.1:9465/livez')).toBe(200);
    expect(await ok('http://127.0.0.1:9464/metrics')).toBe(200);
  });

  it.each([
    ['proxy', 'METRICS_BIND', PROXY],
    ['uploader', 'METRICS_BIND', UPLOADER],
    ['proxy', 'IMGPROXY_BIND', PROXY],
  ])('the %s stops with one line naming %s when its address is taken, exit 2', async (_name, variable, entry) => {
    stub = await startImgproxyStub();
    const port = await takenPort();
    const service = run(entry, {
      ...(await bucket()),
      REDIS_URL: inject('redisUrl'),
      IMGPROXY_URL: stub.url,
      IMGPROXY_BIND: '127.0.0.1:0',
      [variable]: `127.0.0.1:${port}`,
    });
    expect(await service.exited()).toBe(2);
    expect(service.output()).toContain(`${variable} 127.0.0.1:${port} is already in use by another process`);
    expect(service.output()).not.toMatch(STACK_LINE);
  });
});

describe('Redis down', () => {
  it('an uploader started without Redis waits, says so without stack traces, and stops at once on SIGTERM', async () => {
    const port = await freePort();
    // a shutdown deadline past the test's own timeout: a stop that waited for it would fail the test
    const uploader = run(UPLOADER, { ...(await bucket()), REDIS_URL: `redis://127.0.0.1:${port}`, SHUTDOWN_TIMEOUT_MS: '120000' });
    await uploader.line(/Waiting for Redis \(REDIS_URL\) to answer/);
    await waitFor(() => uploader.logs().length >= 2, { what: 'a second line' });
    uploader.child.kill('SIGTERM');
    expect(await uploader.exited()).toBe(0);
    expect(uploader.output()).not.toMatch(STACK_LINE);
    expect(uploader.output()).not.toMatch(/uploads still running/i);
    // at most one line of each kind per 10 s
    const messages = uploader.logs().map((l) => l.msg);
    expect(messages.filter((m) => m === 'Waiting for Redis (REDIS_URL) to answer')).toHaveLength(1);
    expect(messages.filter((m) => String(m).startsWith('Redis connection error'))).toHaveLength(1);
  });

  it('an uploader that loses Redis logs it once, with no stack traces, and stops at once on SIGTERM', async () => {
    const redis = await spawnRedisServer();
    cleanups.push(() => redis.stop());
    // a shutdown deadline past the test's own timeout: a stop that waited for it would fail the test
    const uploader = run(UPLOADER, { ...(await bucket()), REDIS_URL: redis.url, SHUTDOWN_TIMEOUT_MS: '120000' });
    await uploader.line(/Uploader started/);
    await redis.stop();
    await uploader.line(/Redis connection error/);
    // Then a Redis that accepts and drops every connection, so that the retries of every client
    // (BullMQ's and ours) can be counted: each failure must stay silent after the first line.
    let attempts = 0;
    const dropper = createNetServer((socket) => {
      attempts++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => dropper.listen(redis.port, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => dropper.close(resolve)));
    await waitFor(() => attempts >= 6, { what: 'the uploader to retry a few times' });
    uploader.child.kill('SIGTERM');
    expect(await uploader.exited()).toBe(0);
    expect(uploader.output()).not.toMatch(STACK_LINE);
    expect(uploader.output()).not.toMatch(/uploads still running/i);
    expect(uploader.logs().filter((l) => String(l.msg).startsWith('Redis connection error'))).toHaveLength(1);
  });
});

describe('a Redis that may evict keys', () => {
  const startEvicting = async (policy: string) => {
    const evicting = await spawnRedisServer(undefined, ['--maxmemory-policy', policy]);
    cleanups.push(() => evicting.stop());
    return evicting.url;
  };

  it.each([
    ['uploader', UPLOADER],
    ['proxy', PROXY],
  ])('as the queue is refused by the %s at start: one line naming the policy and the fix, exit 2', async (_name, entry) => {
    stub = await startImgproxyStub();
    const url = await startEvicting('allkeys-lru');
    const service = run(entry, { ...(await bucket()), REDIS_URL: url, IMGPROXY_URL: stub.url, IMGPROXY_BIND: '127.0.0.1:0' });
    expect(await service.exited()).toBe(2);
    expect(service.output()).toMatch(/REDIS_URL points at a Redis with maxmemory-policy allkeys-lru.*run it with maxmemory-policy noeviction/);
    expect(service.output()).not.toMatch(/IMPORTANT! Eviction policy/); // BullMQ's own warning
    expect(service.output()).not.toMatch(STACK_LINE);
  });

  it('for the bytes (PAYLOAD_REDIS_URL): allkeys-* is refused, volatile-lru is fine', async () => {
    const allkeys = await startEvicting('allkeys-lru');
    const refused = run(UPLOADER, { ...(await bucket()), REDIS_URL: inject('redisUrl'), PAYLOAD_REDIS_URL: allkeys });
    expect(await refused.exited()).toBe(2);
    expect(refused.output()).toMatch(/PAYLOAD_REDIS_URL points at a Redis with maxmemory-policy allkeys-lru.*volatile-lru/);

    const volatile = await startEvicting('volatile-lru');
    const accepted = run(UPLOADER, { ...(await bucket()), REDIS_URL: inject('redisUrl'), PAYLOAD_REDIS_URL: volatile });
    await accepted.line(/Uploader started/);
  });
});

describe('a bucket in another region', () => {
  it('the uploader stops at start with one line naming where S3 points and S3_ENDPOINT/S3_REGION, exit 2', async () => {
    // AWS answers a bucket addressed at another region's endpoint with 301 PermanentRedirect: no
    // server here does, so a scripted one answers it
    const body =
      '<?xml version="1.0" encoding="UTF-8"?><Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message><Endpoint>images.s3.eu-west-1.amazonaws.com</Endpoint></Error>';
    const s3: Server = createServer((req, res) => {
      req.resume();
      res.writeHead(301, { 'content-type': 'application/xml', 'x-amz-bucket-region': 'eu-west-1' });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
    await new Promise<void>((resolve) => s3.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => s3.close(resolve)));
    const endpoint = `http://127.0.0.1:${(s3.address() as AddressInfo).port}`;
    const uploader = run(UPLOADER, { S3_BUCKET: 'images', S3_ENDPOINT: endpoint, S3_REGION: 'us-east-1', REDIS_URL: inject('redisUrl') });
    expect(await uploader.exited()).toBe(2);
    expect(uploader.output()).toContain(
      `GetObject 301 PermanentRedirect: S3 redirects this bucket (at images.s3.eu-west-1.amazonaws.com, in region eu-west-1); set S3_ENDPOINT (now ${endpoint}) and S3_REGION (now us-east-1) to the bucket's own`,
    );
    expect(uploader.output()).not.toMatch(STACK_LINE);
  });
});

describe('wrong S3 credentials', () => {
  it('the uploader names S3’s error code at start, and its /readyz fails with the reason', async () => {
    const admin = await freePort();
    const uploader = run(UPLOADER, {
      ...(await bucket()),
      REDIS_URL: inject('redisUrl'),
      AWS_ACCESS_KEY_ID: 'WRONG',
      AWS_SECRET_ACCESS_KEY: 'WRONG',
      METRICS_BIND: `127.0.0.1:${admin}`,
    });
    await uploader.line(/Uploader started/);
    expect(uploader.logs()).toContainEqual(
      expect.objectContaining({ level: 40, code: 'InvalidAccessKeyId', msg: 'S3 refuses the credentials (InvalidAccessKeyId)' }),
    );
    const readyz = await request(`http://127.0.0.1:${admin}/readyz`);
    expect(readyz.statusCode).toBe(503);
    expect(await readyz.body.json()).toEqual({
      ready: false,
      checks: { redis: true, s3: false, shards: true },
      reasons: { s3: expect.stringMatching(/^GetObject 403 InvalidAccessKeyId: /) },
    });
  });

  it('with the right keys, /readyz passes', async () => {
    const admin = await freePort();
    const uploader = run(UPLOADER, { ...(await bucket()), REDIS_URL: inject('redisUrl'), METRICS_BIND: `127.0.0.1:${admin}` });
    await uploader.line(/Uploader started/);
    expect(uploader.output()).not.toMatch(/refuses the credentials/);
    expect(await ok(`http://127.0.0.1:${admin}/readyz`)).toBe(200);
  });
});

describe('npm start', () => {
  it('stops both services when npm itself gets SIGTERM', async () => {
    stub = await startImgproxyStub();
    const port = await freePort();
    const env = { ...(await bucket()), REDIS_URL: inject('redisUrl'), IMGPROXY_URL: stub.url, IMGPROXY_BIND: `127.0.0.1:${port}`, METRICS_BIND: '127.0.0.1:0' };
    const npm = spawn('npm', ['start'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    npm.stdout.on('data', (c: Buffer) => (out += c.toString()));
    npm.stderr.on('data', (c: Buffer) => (out += c.toString()));
    cleanups.push(() => npm.kill('SIGKILL'));
    await waitFor(() => /Proxy listening/.test(out) && /Uploader started/.test(out), { what: 'both services' });
    expect(await ok(`http://127.0.0.1:${port}/health`)).toBe(200);
    npm.kill('SIGTERM');
    await waitFor(() => /Proxy stopped/.test(out) && /Uploader stopped/.test(out), { what: 'both services to stop' });
    await waitFor(async () => (await ok(`http://127.0.0.1:${port}/health`).catch(() => 'refused')) === 'refused', { what: 'the port to be free' });
  });
});
