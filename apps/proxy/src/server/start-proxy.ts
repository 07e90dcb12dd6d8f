import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type AdminServer,
  BucketClient,
  countAsHeld,
  createProxyMetrics,
  createRegistry,
  draining,
  type Logger,
  listen,
  type ProxyConfig,
  type ProxyMetrics,
  Purger,
  type Readiness,
  startAdminServer,
} from '@imgproxy-cache/shared';
import type { AwsCredentialIdentity } from '@smithy/types';
import { Pool } from 'undici';
import { purgeRoutes } from '../admin/purge-routes.js';
import { CaptureTally } from '../handoff/capture.js';
import type { Inflight } from '../handoff/inflight.js';
import type { CacheOutcome } from '../handoff/outcome.js';
import { RecentKeys } from '../handoff/recent-keys.js';
import { createApp } from '../http/app.js';
import { imgproxyHealth } from '../imgproxy/health.js';
import { forward } from '../serving/forward.js';
import { BucketReader } from '../stored/bucket-reader.js';
import { MemoryTier } from '../stored/memory-tier.js';
import { type HandOffSideOptions, startHandOffSide } from './hand-off-side.js';
import { buildServing } from './serving.js';

// The proxy's composition root: each client made once (imgproxy's pool, Redis, the bucket), the
// serving parts wired, the proxy port and the admin port started, and shutdown ordered (responses,
// then hand-offs, then the admin port, then the clients).

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

export interface StartOptions extends HandOffSideOptions {
  onOutcome?: (outcome: CacheOutcome, path: string) => void;
  /** the bucket's credentials (tests); default: the AWS SDK's chain */
  s3Credentials?: AwsCredentialIdentity;
}

/** Builds the proxy from its configuration and listens on IMGPROXY_BIND (port 0 picks a free one). */
export async function startProxy(config: ProxyConfig, logger: Logger, options: StartOptions = {}): Promise<RunningProxy> {
  const upstream = new Pool(config.proxy.imgproxyUrl.origin, { connections: 128, keepAliveTimeout: 4_000, pipelining: 1 });
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
  const side = await startHandOffSide(
    config,
    logger,
    (key) => {
      recent.forget(key);
      memory.purge(key);
    },
    options,
  );
  // The bucket, when one is configured: stored images answer for a failing imgproxy, and with
  // CACHE_READ_THROUGH before asking it.
  const credentials = options.s3Credentials;
  const bucketClient = config.s3.bucket ? new BucketClient(config.s3, { sockets: 16, credentials: credentials && (async () => credentials) }) : undefined;
  const bucket = bucketClient && new BucketReader(bucketClient, config.s3.folder, config.proxy.s3ReadTimeoutMs, config.proxy.cacheMaxBytes);
  const onOutcome = (outcome: CacheOutcome, path: string) => {
    metrics.cacheDecisions.inc({ outcome });
    options.onOutcome?.(outcome, path);
  };
  const { serving, inflight } = buildServing({
    config,
    upstream,
    enqueuer: side.enqueuer,
    logger,
    tally,
    recent,
    memory,
    bucket,
    sources: side.sources,
    metrics,
    onOutcome,
  });
  const { listener } = createApp({
    serve: (req, res) => forward(req, res, serving),
    logger,
    tagHeader: config.proxy.tagHeader,
    baseUrl: config.imgproxyBaseUrl,
  });
  const server = proxyServer(config, listener);
  const drain = draining(server, (req, res) => metrics.requests.inc({ method: req.method ?? '', status: res.statusCode }));

  let purger: Purger | undefined;
  const release = async () => {
    uncount();
    await side.close();
    await purger?.close();
    bucketClient?.close();
    await upstream.close();
  };
  // Ready when imgproxy is healthy and Redis reachable (the proxy serves without Redis, but does
  // not cache: an orchestrator should know), and not stopping (a balancer stops sending at once).
  const readiness = async () => ({
    serving: !drain.stopping,
    imgproxy: await imgproxyHealth(upstream, config.proxy.imgproxyBasePath, 1_000),
    redis: side.redis.check(),
  });
  let admin: AdminServer | undefined;
  try {
    await listen(server, config.proxy.bind, 'IMGPROXY_BIND');
    const { redis } = side;
    const purge = bucketClient
      ? purgeRoutes(config.proxy.adminToken, () => (purger ??= new Purger(config, redis.redis, redis.payloadRedis, bucketClient)), config.imgproxyBaseUrl)
      : undefined;
    admin = config.metricsBind ? await startAdminServer(config.metricsBind, metrics.registry, readiness, 'METRICS_BIND', purge) : undefined;
  } catch (error) {
    if (server.listening) server.close();
    await release();
    throw error;
  }

  return {
    server,
    port: (server.address() as AddressInfo).port,
    upstream,
    inflight,
    tally,
    metrics,
    admin,
    readiness,
    waitingFollowers: () => serving.flights.waiting,
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

/** The proxy port's server; a client that does not finish its headers in time gets 408 and is closed (slow-loris). */
function proxyServer(config: ProxyConfig, listener: Parameters<typeof createServer>[1]): Server {
  const headersTimeout = config.proxy.clientHeadersTimeoutMs;
  return createServer(
    {
      headersTimeout,
      requestTimeout: headersTimeout * 2,
      connectionsCheckingInterval: Math.min(1_000, Math.ceil(headersTimeout / 2)),
      keepAliveTimeout: 5_000,
    },
    listener,
  );
}
