import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import {
  BULL_PREFIX,
  BucketClient,
  cacheKeyOf,
  createLogger,
  dataNodes,
  loadConfig,
  objectKeyOf,
  type ProxyConfig,
  type ProxyMetrics,
  queuePrefix,
  type Redis,
  shardQueueNames,
  type UploaderConfig,
  type UploadJobData,
} from '@imgproxy-cache/shared';
import { Queue } from 'bullmq';
import { Cluster, Redis as Standalone } from 'ioredis';
import { request } from 'undici';
import { expect, inject } from 'vitest';
import type { EnqueuerOptions } from '../../apps/proxy/src/handoff/enqueue.js';
import type { CacheOutcome } from '../../apps/proxy/src/handoff/outcome.js';
import { type RunningProxy, startProxy } from '../../apps/proxy/src/server/start-proxy.js';
import { S3ObjectStore } from '../../apps/uploader/src/s3-store.js';
import { type RunningUploader, startUploader } from '../../apps/uploader/src/uploader.js';
import { type ImgproxyStub, type StubOptions, startImgproxyStub } from './imgproxy-stub.js';
import { createBucket, getObject, listKeys, S3RVER_CREDENTIALS, type StoredObject, testS3Client, waitForObjectBytes } from './s3.js';
import { type S3Tap, startS3Tap } from './s3-tap.js';
import { waitFor } from './wait.js';

// The whole pipeline in one test process: the imgproxy stand-in, the proxy, an uploader, the
// shared test Redis (own queue name) and s3rver (own bucket) behind a recording tap.

export interface Stack {
  config: ProxyConfig;
  /** the uploaders' configuration, from the same environment */
  uploaderConfig: UploaderConfig;
  stub: ImgproxyStub;
  tap: S3Tap;
  proxy: RunningProxy;
  uploader: RunningUploader | undefined;
  /** starts the stack's uploader (for stacks started with noUploader, or after stopping it), its settings overridden */
  startUploader(overrides?: Partial<UploaderConfig['uploader']>): Promise<RunningUploader>;
  s3: S3Client;
  /** the test's own connection to the stack's Redis (a Cluster connection with `cluster`) */
  redis: Redis;
  /** the first queue shard (the queue, with one shard) */
  queue: Queue<UploadJobData>;
  /** every queue shard */
  queues: Queue<UploadJobData>[];
  bucket: string;
  baseUrl: string;
  logs: Record<string, unknown>[];
  outcomes: { outcome: CacheOutcome; path: string }[];
  get(path: string, init?: { method?: string; headers?: Record<string, string> }): Promise<Reply>;
  keyFor(path: string): string;
  object(path: string): Promise<StoredObject | undefined>;
  /** waits for the object to hold exactly `expected` (by default what the stub serves for `path`) */
  waitForObject(path: string, expected?: Buffer): Promise<StoredObject>;
  /** resolves with the proxy's final cache outcome for the n-th request of `path` (1-based) */
  outcomeOf(path: string, nth?: number): Promise<CacheOutcome>;
  /** resolves once the proxy has handed off every response and the queue holds no job waiting, active or delayed */
  drained(): Promise<void>;
  keys(): Promise<string[]>;
  stop(): Promise<void>;
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface StackOptions {
  env?: Record<string, string>;
  stub?: StubOptions;
  /** start without an uploader (jobs stay queued) */
  noUploader?: boolean;
  /** a Redis of the test's own for everything (tests that pause or kill Redis must not share it) */
  redisUrl?: string;
  /** a path after the stub's address in IMGPROXY_URL (imgproxy behind a path prefix) */
  imgproxyPath?: string;
  /** the proxy's enqueuer: backlog recheck interval, clock */
  enqueuerOptions?: EnqueuerOptions;
  /** seed nodes of a Redis Cluster (REDIS_CLUSTER=true) instead of the shared Redis */
  cluster?: string;
  /** the queue name (default: one of the test's own) */
  queueName?: string;
  /** the S3 server behind the tap: s3rver (default), or Ceph RGW, a real S3 implementation */
  s3?: 's3rver' | 'rgw';
}

/** Where the stack's S3 server listens, and the keys it takes. */
export function s3Target(kind: 's3rver' | 'rgw' = 's3rver'): { port: number; credentials: { accessKeyId: string; secretAccessKey: string } } {
  if (kind === 's3rver') return { port: inject('s3rverPort'), credentials: S3RVER_CREDENTIALS };
  const rgw = inject('rgw');
  if (!rgw) throw new Error('Ceph RGW is not running (see test/support/global-setup.ts)');
  return { port: rgw.port, credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey } };
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const id = randomUUID().slice(0, 8);
  const redisUrl = options.cluster ?? options.redisUrl ?? inject('redisUrl');
  const bucket = `b-${id}`;
  const queueName = options.queueName ?? `t-${id}`;
  const stub = await startImgproxyStub(options.stub);
  const target = s3Target(options.s3);
  const tap = await startS3Tap(target.port, { conditional: options.s3 !== 'rgw' });
  const s3 = testS3Client(`http://127.0.0.1:${target.port}`, target.credentials);
  await createBucket(s3, bucket);

  const env = {
    IMGPROXY_BIND: '127.0.0.1:0',
    IMGPROXY_URL: `${stub.url}${options.imgproxyPath ?? ''}`,
    REDIS_URL: redisUrl,
    QUEUE_NAME: queueName,
    S3_BUCKET: bucket,
    S3_ENDPOINT: tap.endpoint,
    S3_REGION: 'us-east-1',
    UPLOAD_BACKOFF_MS: '50',
    LOG_LEVEL: 'debug',
    METRICS_BIND: '127.0.0.1:0',
    ...(options.cluster ? { REDIS_CLUSTER: 'true' } : {}),
    ...options.env,
  };
  const proxyConfig = loadConfig(env, 'proxy');
  const uploaderConfig = loadConfig(env, 'uploader');

  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const outcomes: { outcome: CacheOutcome; path: string }[] = [];
  const proxy = await startProxy(proxyConfig, createLogger('proxy', proxyConfig.logLevel, sink), {
    // one outcome per response: why it was not cached, or what the hand-off to Redis did
    onOutcome: (outcome, path) => outcomes.push({ outcome, path }),
    enqueuerOptions: options.enqueuerOptions,
    s3Credentials: target.credentials,
  });
  const newUploader = (overrides: Partial<UploaderConfig['uploader']> = {}) =>
    startUploader({
      config: { ...uploaderConfig, uploader: { ...uploaderConfig.uploader, ...overrides } },
      store: new S3ObjectStore(new BucketClient(uploaderConfig.s3, { credentials: async () => target.credentials }), uploaderConfig.s3.folder),
      logger: createLogger('uploader', uploaderConfig.logLevel, sink),
    });
  const uploader = options.noUploader ? undefined : await newUploader();

  const redis: Redis = options.cluster
    ? new Cluster(
        options.cluster.split(',').map((u) => ({ host: new URL(u).hostname, port: Number(new URL(u).port) })),
        { redisOptions: { maxRetriesPerRequest: null } },
      )
    : new Standalone(redisUrl, { maxRetriesPerRequest: null });
  redis.on('error', () => undefined);
  const queues = shardQueueNames(queueName, proxyConfig.queue.shards).map(
    (name) => new Queue<UploadJobData>(name, { connection: redis, prefix: queuePrefix(name) }),
  );
  const queue = queues[0]!;
  const baseUrl = `http://127.0.0.1:${proxy.port}`;
  const keyFor = (path: string) => objectKeyOf(uploaderConfig.s3.folder, cacheKeyOf(path));

  const stack: Stack = {
    config: proxyConfig,
    uploaderConfig,
    stub,
    tap,
    proxy,
    uploader,
    async startUploader(overrides) {
      stack.uploader ??= await newUploader(overrides);
      return stack.uploader;
    },
    s3,
    redis,
    queue,
    queues,
    bucket,
    baseUrl,
    logs,
    outcomes,
    async get(path, init = {}) {
      const res = await request(`${baseUrl}${path}`, { method: (init.method ?? 'GET') as 'GET', headers: init.headers });
      const body = Buffer.from(await res.body.arrayBuffer());
      return { status: res.statusCode, headers: res.headers, body };
    },
    keyFor,
    object: (path) => getObject(s3, bucket, keyFor(path)),
    waitForObject: (path, expected) => waitForObjectBytes(s3, bucket, keyFor(path), expected ?? stub.imageFor(path)),
    outcomeOf: (path, nth = 1) => waitFor(() => outcomes.filter((o) => o.path === path)[nth - 1]?.outcome, { what: `cache outcome #${nth} of ${path}` }),
    async drained() {
      await waitFor(
        async () => {
          if (proxy.inflight.size > 0) return false;
          for (const q of queues) if ((await q.getJobCountByTypes('waiting', 'active', 'delayed', 'prioritized')) > 0) return false;
          return true;
        },
        { what: 'the upload queue to drain' },
      );
    },
    keys: () => listKeys(s3, bucket),
    async stop() {
      await proxy.close(2_000);
      await stack.uploader?.close(2_000);
      for (const q of queues) {
        await q.obliterate({ force: true }).catch(() => undefined);
        await q.close();
      }
      for (const node of dataNodes(redis)) {
        for (const key of await node.keys(`${BULL_PREFIX}:{${queueName}*`).catch(() => [])) await node.del(key).catch(() => undefined);
      }
      redis.disconnect();
      await stub.close();
      await tap.close();
      s3.destroy();
    },
  };
  return stack;
}

/** Waits for the request's cache outcome and for the queue to empty, then returns the bucket. */
export async function settledBucket(s: Stack, path: string, expectedOutcome: string): Promise<string[]> {
  expect(await s.outcomeOf(path)).toBe(expectedOutcome);
  await s.drained();
  return s.keys();
}

/** How many times imgproxy rendered `path`. */
export const rendered = (s: Stack, path: string): number => s.stub.requests.filter((r) => r.url === path).length;

/** `200 HIT`, `304 MISS`...: a reply's status and X-Cache. */
export const xCache = (reply: { status: number; headers: Record<string, unknown> }): string => `${reply.status} ${reply.headers['x-cache']}`;

/** Requests to the bucket for `path`'s key with this method, from request number `from` on. */
export const bucketRequests = (s: Stack, path: string, method: string, from = 0) =>
  s.tap.requests.slice(from).filter((r) => r.method === method && r.url.split('?')[0]!.endsWith(`/${cacheKeyOf(path)}`));

type CounterName = { [K in keyof ProxyMetrics]: ProxyMetrics[K] extends { inc: unknown } ? K : never }[keyof ProxyMetrics];

/** A proxy counter's (or gauge's) total, or that of its series with `label` among their label values. */
export async function counter(proxy: RunningProxy, name: CounterName, label?: string): Promise<number> {
  const { values } = await proxy.metrics[name].get();
  return values.filter((v) => label === undefined || Object.values(v.labels).includes(label)).reduce((n, v) => n + v.value, 0);
}
