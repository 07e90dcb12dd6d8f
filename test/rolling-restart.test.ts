import { randomUUID } from 'node:crypto';
import { queuePrefix } from '@imgproxy-cache/shared';
import { Queue } from 'bullmq';
import { Pool, request } from 'undici';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { freePort } from './support/free-port.js';
import { expectSpacedBy } from './support/logs.js';
import { spawnRedisServer, type TestRedis } from './support/redis-server.js';
import { type Service, spawnService } from './support/service.js';
import { type Stack, startStack } from './support/stack.js';
import { waitFor } from './support/wait.js';

// Rolling restarts as users meet them: a proxy stopped under steady keep-alive traffic ends its
// connections as their responses end and exits when they are done, cutting none; a Redis restart
// with images waiting warns of no leak; an S3 outage under load logs one line per cause per interval.

let stack: Stack | undefined;
let redis: TestRedis | undefined;
const running: Service[] = [];
afterEach(async (ctx) => {
  if (ctx.task.result?.state === 'fail') for (const s of running) console.log(s.output().split('\n').slice(-30).join('\n'));
  await Promise.all(running.splice(0).map((s) => s.stop()));
  await stack?.stop();
  await redis?.stop();
  stack = redis = undefined;
});
const run = (args: string[], env: Record<string, string>) => {
  const service = spawnService(args, env);
  running.push(service);
  return service;
};

/** What a client of the proxy saw for each request. */
interface Tally {
  /** complete 200s, byte-exact */
  complete: number;
  /** refused or reset before any byte of the answer (fair during a restart) */
  refused: number;
  /** the answer began and was cut, or was wrong: never acceptable */
  cut: string[];
  /** the last new image served whole */
  lastNew?: string;
}

/**
 * Keep-alive load on `origin` from `connections` clients sending back to back: new images, and now
 * and then a repeated one, until `stop()`.
 */
function keepAliveLoad(origin: string, connections: number, expected: (path: string) => Buffer) {
  const pool = new Pool(origin, { connections, pipelining: 1 });
  const tally: Tally = { complete: 0, refused: 0, cut: [] };
  let stopped = false;
  let n = 0;
  const loop = async (client: number) => {
    while (!stopped) {
      const i = n++;
      const path = i % 5 === 4 ? '/sig/plain/https://example.com/rolling-hot.jpg@png' : `/sig/plain/https://example.com/rolling-${client}-${i}.jpg@png`;
      let res: Awaited<ReturnType<Pool['request']>>;
      try {
        res = await pool.request({ path, method: 'GET' });
      } catch {
        tally.refused += 1; // no byte of an answer arrived
        continue;
      }
      try {
        const body = Buffer.from(await res.body.arrayBuffer());
        if (res.statusCode !== 200 || !body.equals(expected(path))) tally.cut.push(`${path}: ${res.statusCode}, ${body.length} bytes`);
        else {
          tally.complete += 1;
          if (!path.endsWith('rolling-hot.jpg@png')) tally.lastNew = path;
        }
      } catch (error) {
        tally.cut.push(`${path}: cut (${(error as Error).message})`);
      }
    }
  };
  const loops = Array.from({ length: connections }, (_, c) => loop(c));
  return {
    tally,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      await pool.destroy();
    },
  };
}

describe('SIGTERM under keep-alive load', () => {
  it.each([
    ['one process', {}],
    ['PROXY_WORKERS=2', { PROXY_WORKERS: '2' }],
  ])(
    '%s: exits 0 once its responses and hand-offs are done, not at the deadline; none is cut; /readyz says not ready at once; the last image is stored',
    async (_name, extra: Record<string, string>) => {
      stack = await startStack({ env: { UPLOAD_GATHER_MS: '0' } });
      const s = stack;
      // each image takes a while to arrive, so that every connection is busy when the signal comes
      s.stub.on('/sig/plain/https://example.com/rolling-', (req) => ({
        status: 200,
        headers: { 'content-type': 'image/png', 'cache-control': 'max-age=31536000, public' },
        pieceSize: 1024,
        delayMs: 15,
        body: s.stub.imageFor(req.url!),
      }));
      const [port, adminPort] = [await freePort(), await freePort()];
      const proxy = run(['apps/proxy/dist/index.js'], {
        IMGPROXY_URL: s.stub.url,
        IMGPROXY_BIND: `127.0.0.1:${port}`,
        METRICS_BIND: `127.0.0.1:${adminPort}`,
        REDIS_URL: inject('redisUrl'),
        QUEUE_NAME: s.config.queue.name,
        S3_BUCKET: s.bucket,
        S3_ENDPOINT: s.tap.endpoint,
        S3_REGION: 'us-east-1',
        // a deadline far beyond the test's own timeout: the proxy exits within it only by
        // finishing its work, never by reaching the deadline
        SHUTDOWN_TIMEOUT_MS: '3600000',
        LOG_LEVEL: 'info',
        ...extra,
      });
      await proxy.line(/Proxy listening/);
      const readyz = () => request(`http://127.0.0.1:${adminPort}/readyz`).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }));
      await waitFor(async () => (await readyz()).status === 200, { what: 'the proxy to be ready' });

      const load = keepAliveLoad(`http://127.0.0.1:${port}`, 4, (path) => s.stub.imageFor(path));
      // every connection busy and 40 responses served before the signal
      await waitFor(() => load.tally.complete >= 40, { what: 'steady traffic' });
      proxy.child.kill('SIGTERM');
      // not ready from the first moment, while responses are still being finished
      const notReady = await waitFor(
        async () => {
          const r = await readyz().catch(() => undefined);
          return r?.status === 503 ? r : undefined;
        },
        { what: '/readyz to say not ready' },
      );
      expect(JSON.parse(notReady.body).checks.serving).toBe(false);
      expect(await proxy.exited(45_000)).toBe(0);
      await load.stop();

      expect(load.tally.cut).toEqual([]);
      expect(proxy.output()).toMatch(/Proxy stopped/);
      expect(proxy.output()).not.toMatch(/MaxListenersExceededWarning/);
      // the last new image served whole was handed off before the exit, and lands
      const last = load.tally.lastNew!;
      await s.waitForObject(last);
      console.log(`${_name}: ${load.tally.complete} complete, ${load.tally.refused} refused before any byte, 0 cut`);
    },
    60_000,
  );
});

describe('a Redis restart with images waiting for it', () => {
  it('50 images waiting for Redis add no listener each: no MaxListenersExceededWarning, and all are handed off once it is back', async () => {
    redis = await spawnRedisServer();
    const port = redis.port!;
    stack = await startStack({ redisUrl: redis.url, noUploader: true });
    const s = stack;
    const queueName = `w-${randomUUID().slice(0, 8)}`;
    const proxyPort = await freePort();
    const proxy = run(['apps/proxy/dist/index.js'], {
      IMGPROXY_URL: s.stub.url,
      IMGPROXY_BIND: `127.0.0.1:${proxyPort}`,
      METRICS_BIND: 'off',
      REDIS_URL: redis.url,
      QUEUE_NAME: queueName,
      ENQUEUE_WAIT_MS: '60000',
      LOG_LEVEL: 'info',
      NODE_OPTIONS: '--trace-warnings',
    });
    await proxy.line(/Proxy listening/);
    await redis.stop();
    const images = Array.from({ length: 50 }, (_, i) => `/sig/plain/https://example.com/waiting-${i}.jpg@png`);
    for (const reply of await Promise.all(images.map((p) => request(`http://127.0.0.1:${proxyPort}${p}`)))) {
      expect(reply.statusCode).toBe(200);
      await reply.body.arrayBuffer();
    }
    redis = await spawnRedisServer(port);
    const queue = new Queue(queueName, { connection: { port }, prefix: queuePrefix(queueName) });
    try {
      await waitFor(async () => (await queue.getJobCountByTypes('waiting')) === 50, { what: 'all 50 images to be handed off', timeoutMs: 30_000 });
    } finally {
      await queue.close();
    }
    expect(proxy.output()).not.toMatch(/MaxListenersExceededWarning|memory leak/);
  }, 60_000);
});

describe('an S3 outage under load', () => {
  it('logs one retry line per cause per interval, counts every failed attempt, and logs every final failure', async () => {
    stack = await startStack({ env: { UPLOAD_GATHER_MS: '0', UPLOAD_ATTEMPTS: '14', UPLOAD_BACKOFF_MS: '10', LOG_LEVEL: 'info' } });
    const s = stack;
    let down = true;
    s.tap.fault = (r) => (down && r.method === 'PUT' ? { kind: 'status', status: 500, code: 'InternalError' } : undefined);
    const images = Array.from({ length: 30 }, (_, i) => `/sig/plain/https://example.com/outage-${i}.jpg@png`);
    for (const p of images) await s.get(p);
    const refused = () => s.tap.requests.filter((r) => r.method === 'PUT' && r.status === 500).length;
    const retryLines = () => s.logs.filter((l) => l.msg === 'Upload failed; will retry');
    // an outage past one interval (10 s), so that the cause is said a second time; the backoff
    // (14 attempts from 10 ms, doubling) keeps every job retrying that long
    await waitFor(() => refused() >= 200 && retryLines().length >= 2, { what: 'the outage to refuse many attempts, over one interval', timeoutMs: 45_000 });
    down = false;
    // the jobs' next attempts need not wait out their backoff
    await waitFor(
      async () => {
        for (const q of s.queues) await q.promoteJobs();
        return (await s.keys()).length === images.length;
      },
      { what: 'every image to land' },
    );
    for (const p of images) await s.waitForObject(p);
    await s.drained();

    // each attempt is a PutObject, sent once or twice (the SDK retries while its retry quota lasts,
    // under the same invocation id): a failed attempt is an invocation whose every request was refused
    const refusedInvocations = new Set<string>();
    const answered = new Set<string>();
    for (const r of s.tap.requests) {
      if (r.method !== 'PUT') continue;
      const invocation = String(r.headers['amz-sdk-invocation-id']);
      if (r.status === 500) refusedInvocations.add(invocation);
      else answered.add(invocation);
    }
    const failedAttempts = [...refusedInvocations].filter((id) => !answered.has(id)).length;
    const { values } = await s.uploader!.metrics.uploads.get();
    expect(values.find((v) => v.labels.result === 'retried')?.value).toBe(failedAttempts);
    expect(failedAttempts).toBeGreaterThan(50);

    // one cause (S3's 500), said at most once per 10 s, by the lines' own clock
    const lines = retryLines();
    expect(new Set(lines.map((l) => l.reason)).size).toBe(1);
    expectSpacedBy(lines, 10_000);
    // each line counts the failures not logged since the one before: together, no more than failed
    expect(lines[0]!.suppressed).toBe(0);
    expect(lines.slice(1).every((l) => typeof l.suppressed === 'number' && l.suppressed > 0)).toBe(true);
    expect(lines.reduce((n, l) => n + 1 + Number(l.suppressed), 0)).toBeLessThanOrEqual(failedAttempts);
  }, 90_000);

  it('a job failing for good is always logged, however many fail', async () => {
    stack = await startStack({ env: { UPLOAD_GATHER_MS: '0', UPLOAD_ATTEMPTS: '2', UPLOAD_BACKOFF_MS: '20', LOG_LEVEL: 'info' } });
    const s = stack;
    s.tap.fault = (r) => (r.method === 'PUT' ? { kind: 'status', status: 500, code: 'InternalError' } : undefined);
    const images = Array.from({ length: 12 }, (_, i) => `/sig/plain/https://example.com/gone-${i}.jpg@png`);
    for (const p of images) await s.get(p);
    await waitFor(async () => (await s.queue.getFailedCount()) === 12, { what: 'every job to fail for good' });
    // the worker logs once Redis has answered its move to the failed set, which the count may see first
    const finals = () => s.logs.filter((l) => l.msg === 'Upload failed for good; kept in the failed set').map((l) => l.path);
    await waitFor(() => finals().length >= 12, { what: 'a line for each' });
    expect(new Set(finals())).toEqual(new Set(images));
    // the 12 first failures share one rate-limited line (another only past 10 s, by the lines' own clock)
    const retries = s.logs.filter((l) => l.msg === 'Upload failed; will retry');
    expect(retries.length).toBeGreaterThanOrEqual(1);
    expectSpacedBy(retries, 10_000);
  });
});
