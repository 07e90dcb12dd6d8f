import type { Server } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type AdminServer,
  BucketClient,
  connectForRole,
  countAsHeld,
  createProxyMetrics,
  createRegistry,
  createSubscriberRedis,
  draining,
  type Logger,
  listen,
  type ProxyConfig,
  type ProxyMetrics,
  Purger,
  purgeChannel,
  QueueRegistry,
  type Readiness,
  type Redis,
  type RoleRedis,
  rateLimited,
  SourceIndex,
  startAdminServer,
} from '@imgproxy-cache/shared';
import type { AwsCredentialIdentity } from '@smithy/types';
import { Pool } from 'undici';
import { purgeRoutes } from '../admin/purge-routes.js';
import { CaptureTally } from '../coalescing/capture.js';
import { type Enqueuer, type EnqueuerOptions, RedisEnqueuer } from '../handoff/enqueue.js';
import type { Inflight } from '../handoff/inflight.js';
import { RecentKeys } from '../handoff/recent-keys.js';
import { createApp } from '../http/app.js';
import { imgproxyHealth } from '../imgproxy/health.js';
import type { CacheOutcome } from '../serving/forward.js';
import { BucketReader } from '../stored/bucket-reader.js';
import { MemoryTier } from '../stored/memory-tier.js';

export interface RunningProxy {
  server: Server;
  port: number;
  upstream: Pool;
  /** hand-offs to Redis still running */
  inflight: Inflight;
  /** bytes of response bodies held for caching */
  tally: CaptureTally;
  metrics: ProxyMetrics;
  /** /metrics, /livez, /readyz on METRICS_BIND (undefined when off) */
  admin: AdminServer | undefined;
  /** what /readyz checks: imgproxy healthy, Redis connected */
  readiness: Readiness;
  /** clients waiting to share a response already requested from imgproxy (coalescing) */
  waitingFollowers(): number;
  /** Stops accepting, lets in-flight responses and their hand-offs finish (bounded), closes all. */
  close(timeoutMs?: number): Promise<void>;
}

export interface StartOptions {
  /** replaces the Redis enqueuer (tests) */
  enqueuer?: Enqueuer;
  onOutcome?: (outcome: CacheOutcome, path: string) => void;
  /** see EnqueuerOptions (tests) */
  enqueuerOptions?: EnqueuerOptions;
  /** a Redis that may evict keys was found (default: log it and exit 2) */
  onRedisRefused?: (problem: string) => void;
  /** the bucket's credentials (tests); default: the AWS SDK's chain */
  s3Credentials?: AwsCredentialIdentity;
}

function readyWithin(redis: Redis, ms: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      redis.off('ready', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    redis.once('ready', done);
  });
}

/** Builds the proxy from its configuration and listens on IMGPROXY_BIND (port 0 picks a free one). */
export async function startProxy(config: ProxyConfig, logger: Logger, options: StartOptions = {}): Promise<RunningProxy> {
  const upstream = new Pool(config.proxy.imgproxyUrl.origin, {
    connections: 128,
    keepAliveTimeout: 4_000,
    pipelining: 1,
  });
  let connections: RoleRedis | undefined;
  let closeEnqueuer: () => Promise<void> = async () => {};
  let subscriber: Redis | undefined;
  let purger: Purger | undefined;
  let sources: SourceIndex | undefined;
  const recent = new RecentKeys(config.proxy.recentKeys);
  const tally = new CaptureTally();
  // evictions happen on requests, once the metrics exist
  const memory = new MemoryTier(config.proxy.memoryBytes, (reason) => metrics.memoryEvictions.inc({ reason }));
  const metrics = createProxyMetrics(
    createRegistry('proxy'),
    () => tally.held,
    () => memory,
    config.proxy.backlogMaxBytes,
  );
  // the images in memory are meant to stay: not a reason for the forced collections (memory.ts)
  const uncount = countAsHeld(() => memory.bytes);
  let registering: NodeJS.Timeout | undefined;
  let enqueuer = options.enqueuer;
  if (!enqueuer) {
    const logRedisError = rateLimited(10_000);
    const onError = (error: Error) =>
      logRedisError((suppressed) =>
        logger.warn({ err: error.message, suppressed }, 'Redis connection error; images are served but not cached until it is back'),
      );
    connections = connectForRole(config, 'proxy', onError);
    const { redis, payloadRedis } = connections;
    // Purged images are forgotten by every proxy (the Purger announces them).
    subscriber = createSubscriberRedis(config.redisUrl, { onError, cluster: config.redisCluster });
    subscriber.on('message', (_channel: string, key: string) => {
      recent.forget(key);
      memory.purge(key);
    });
    void subscriber.subscribe(purgeChannel(config.queue.name)).catch(() => undefined);
    // A Redis that may evict keys loses queued images: stop as soon as one is seen (at start, or
    // when a Redis that was away at start first answers).
    const refuse =
      options.onRedisRefused ??
      ((problem: string) => {
        logger.fatal(problem);
        process.exit(2);
      });
    connections.refuseEvicting(refuse);
    const redisEnqueuer = new RedisEnqueuer(redis, payloadRedis, config, logger, options.enqueuerOptions);
    sources = new SourceIndex(redis, config.queue.name, config.imgproxyBaseUrl);
    enqueuer = redisEnqueuer;
    closeEnqueuer = () => redisEnqueuer.close();
    // Uploaders find the queues to work in the registry, those of an earlier QUEUE_SHARDS too.
    const registry = new QueueRegistry(redis, config.queue.name);
    const register = () => void registry.register(redisEnqueuer.queueNames).catch(() => undefined);
    redis.on('ready', register);
    registering = setInterval(register, 60_000);
    registering.unref();
    // Give Redis a moment so that the first images are cached, but never hold the proxy back:
    // while Redis is away, images are served and not cached.
    await Promise.all(connections.targets.map((t) => readyWithin(t.client, 2_000)));
  }
  const onOutcome = (outcome: CacheOutcome, path: string) => {
    metrics.cacheDecisions.inc({ outcome });
    options.onOutcome?.(outcome, path);
  };
  // The bucket, when one is configured: stored images answer for a failing imgproxy, and with
  // CACHE_READ_THROUGH before asking it.
  const credentials = options.s3Credentials;
  const bucketClient = config.s3.bucket ? new BucketClient(config.s3, { sockets: 16, credentials: credentials && (async () => credentials) }) : undefined;
  const bucket = bucketClient ? new BucketReader(bucketClient, config.s3.folder, config.proxy.s3ReadTimeoutMs, config.proxy.cacheMaxBytes) : undefined;
  const { listener, inflight, flights } = createApp({ config, upstream, enqueuer, logger, onOutcome, metrics, tally, bucket, memory, recent, sources });
  const headersTimeout = config.proxy.clientHeadersTimeoutMs;
  const server: Server = createServer(
    {
      // Slow-loris: a client that does not finish its headers in time gets 408 and is closed.
      headersTimeout,
      requestTimeout: headersTimeout * 2,
      connectionsCheckingInterval: Math.min(1_000, Math.ceil(headersTimeout / 2)),
      keepAliveTimeout: 5_000,
    },
    listener,
  );
  const drain = draining(server, (req, res) => metrics.requests.inc({ method: req.method ?? '', status: res.statusCode }));

  const release = async () => {
    uncount();
    clearInterval(registering);
    await closeEnqueuer();
    subscriber?.disconnect();
    await purger?.close();
    bucketClient?.close();
    connections?.disconnect();
    await upstream.close();
  };
  try {
    await listen(server, config.proxy.bind, 'IMGPROXY_BIND');
  } catch (error) {
    await release();
    throw error;
  }
  const port = (server.address() as AddressInfo).port;

  // Ready when imgproxy is healthy and Redis reachable (the proxy serves without Redis, but does
  // not cache: an orchestrator should know), and not stopping (a balancer stops sending at once).
  const readiness = async () => ({
    serving: !drain.stopping,
    imgproxy: await imgproxyHealth(upstream, config.proxy.imgproxyBasePath, 1_000),
    redis: connections?.check() ?? true,
  });
  let admin: AdminServer | undefined;
  try {
    const purge =
      connections && bucketClient
        ? purgeRoutes(
            config.proxy.adminToken,
            () => (purger ??= new Purger(config, connections!.redis, connections!.payloadRedis, bucketClient)),
            config.imgproxyBaseUrl,
          )
        : undefined;
    admin = config.metricsBind ? await startAdminServer(config.metricsBind, metrics.registry, readiness, 'METRICS_BIND', purge) : undefined;
  } catch (error) {
    server.close();
    await release();
    throw error;
  }

  return {
    server,
    port,
    upstream,
    inflight,
    tally,
    metrics,
    admin,
    readiness,
    waitingFollowers: () => [...flights.values()].reduce((n, c) => n + c.waiting.size, 0),
    async close(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      // every connection ends with its response; the admin port answers (not ready) meanwhile
      await drain.close(timeoutMs);
      await inflight.drain(Math.max(0, deadline - Date.now()));
      await admin?.close(Math.max(0, deadline - Date.now()));
      await release();
    },
  };
}
