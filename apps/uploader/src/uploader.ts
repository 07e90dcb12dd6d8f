import { setTimeout as sleep } from 'node:timers/promises';
import {
  type AdminServer,
  type Check,
  connectForRole,
  createRegistry,
  createUploaderMetrics,
  type Logger,
  QueueRegistry,
  rateLimited,
  shardQueueNames,
  startAdminServer,
  type UploaderConfig,
  type UploaderMetrics,
  type UploadJobData,
} from '@imgproxy-cache/shared';
import type { Job } from 'bullmq';
import type { UploadResult } from './processor.js';
import { type QueueWorker, startQueueWorker } from './queue-worker.js';
import type { ObjectStore } from './s3-store.js';
import { reportShardRedis } from './shard-redis.js';
import { ShardWatchdog } from './shard-watchdog.js';

export interface RunningUploader {
  /** the queues this uploader works, by name: its shards, and any of an earlier QUEUE_SHARDS still holding jobs */
  queues: ReadonlyMap<string, QueueWorker>;
  metrics: UploaderMetrics;
  /** /metrics, /livez, /readyz on METRICS_BIND (undefined when off) */
  admin: AdminServer | undefined;
  /** looks for queues to work now (it does every `registryPollMs`) */
  refreshQueues(): Promise<void>;
  /** restarts shard workers that stop taking their jobs */
  watchdog: ShardWatchdog;
  /**
   * Stops taking jobs and waits for the ones in flight, at most `timeoutMs`; past it, puts them
   * back in the queue (not in the failed set) for another uploader, and closes.
   */
  close(timeoutMs: number): Promise<void>;
}

export interface UploaderOptions {
  config: UploaderConfig;
  store: ObjectStore;
  logger: Logger;
  onResult?: (result: UploadResult | 'failed', job: UploadJobData) => void;
  /** aborts the wait for Redis at start (SIGTERM before Redis ever answered) */
  signal?: AbortSignal;
  /** how often the registry of queues is read for queues of an earlier QUEUE_SHARDS (default 30 s) */
  registryPollMs?: number;
  /** how often the watchdog looks at each shard worker (default 5 s: an idle uploader asks Redis that often per shard) */
  watchdogIntervalMs?: number;
}

/**
 * Waits for Redis, refuses one that may evict keys (StartupError), then runs a BullMQ worker for
 * each queue it works, and the admin server.
 */
export async function startUploader({
  config,
  store,
  logger,
  onResult,
  signal,
  registryPollMs = 30_000,
  watchdogIntervalMs = 5_000,
}: UploaderOptions): Promise<RunningUploader> {
  const logRedisError = rateLimited(10_000);
  const onError = (error: Error) =>
    logRedisError((suppressed) => logger.warn({ err: error.message, suppressed }, 'Redis connection error; uploads resume when it is back'));
  const redis = connectForRole(config, 'uploader', onError);
  const { redis: connection, payloadRedis } = redis;
  await redis.ready(logger, signal);

  const queues = new Map<string, QueueWorker>();
  const all = () => [...queues.values()];
  const byQueue = async <T>(read: (q: QueueWorker) => Promise<T>) =>
    Object.fromEntries(await Promise.all(all().map(async (q) => [q.name, await read(q)] as const))) as Record<string, T>;
  const metrics = createUploaderMetrics(
    createRegistry('uploader'),
    () => byQueue((q) => q.queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'failed')),
    () => byQueue((q) => q.payloads.backlogBytes()),
  );

  let closed = false;
  // Jobs in flight, so that a shutdown past its deadline can hand them back to the queue.
  const active = new Map<string, { job: Job<UploadJobData>; token: string }>();
  const registry = new QueueRegistry(connection, config.queue.name);
  const current = shardQueueNames(config.queue.name, config.queue.shards).filter((_, shard) => config.uploader.shards?.includes(shard) ?? true);
  const concurrency = Math.max(1, Math.ceil(config.uploader.concurrency / current.length));
  let throttledUntil = 0;
  const startWorker = (name: string) =>
    queues.set(
      name,
      startQueueWorker({
        name,
        config,
        connection,
        payloadRedis,
        store,
        logger,
        metrics,
        concurrency,
        active,
        onResult,
        onError,
        throttleAll: async (delayMs) => {
          throttledUntil = Math.max(throttledUntil, Date.now() + delayMs);
          await Promise.all(all().map((q) => q.queue.rateLimit(delayMs)));
        },
        throttledUntil: () => throttledUntil,
      }),
    );
  for (const name of current) startWorker(name);
  reportShardRedis(connection, () => queues.keys(), logger);

  // A shard worker that stops taking its jobs (ioredis#709, see redis.ts) is replaced by a new one,
  // on a new blocking connection; the old one is let go without waiting for it.
  const watchdog = new ShardWatchdog(all, {
    stuckMs: config.uploader.stuckMs,
    intervalMs: watchdogIntervalMs,
    onStuck: (name, waiting) => {
      const stuck = queues.get(name);
      if (!stuck || closed) return;
      logger.warn(
        { queue: name, waiting, stuckMs: config.uploader.stuckMs },
        'A shard worker took none of its waiting jobs for UPLOAD_STUCK_MS: restarting it on a new connection',
      );
      metrics.workerRestarts.inc({ queue: name });
      startWorker(name);
      void Promise.race([stuck.close(true), sleep(5_000, undefined, { ref: false })]).catch(() => undefined);
    },
  });
  watchdog.start();

  // Queues of an earlier QUEUE_SHARDS: worked until they hold no job, then forgotten.
  const refreshQueues = async () => {
    for (const name of await registry.names()) {
      if (current.includes(name) || closed) continue;
      if (!queues.has(name)) {
        logger.info({ queue: name }, 'Draining a queue of an earlier QUEUE_SHARDS');
        startWorker(name);
      } else if ((await queues.get(name)!.queue.getJobCountByTypes('waiting', 'active', 'delayed', 'prioritized', 'failed')) === 0) {
        await registry.forget(name);
        await queues.get(name)!.close(false);
        queues.delete(name);
        logger.info({ queue: name }, 'A queue of an earlier QUEUE_SHARDS is empty: no longer worked');
      }
    }
  };
  await refreshQueues().catch(onError);
  const poll = setInterval(() => void refreshQueues().catch(onError), registryPollMs);
  poll.unref();

  // Ready when Redis and S3 answer, and every shard worker takes its jobs.
  const admin = config.metricsBind
    ? await startAdminServer(config.metricsBind, metrics.registry, async () => ({
        redis: redis.check(),
        s3: await s3Check(store, Math.min(config.s3.requestTimeoutMs, 3_000)),
        shards: watchdog.stuckWorkers.length === 0,
      })).catch(async (error: Error) => {
        clearInterval(poll);
        watchdog.stop();
        await Promise.all(all().map((q) => q.close(true).catch(() => undefined)));
        redis.disconnect();
        throw error;
      })
    : undefined;

  return {
    queues,
    metrics,
    admin,
    refreshQueues,
    watchdog,
    async close(timeoutMs) {
      closed = true;
      clearInterval(poll);
      watchdog.stop();
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      // With nothing in flight there is nothing to wait for, even if Redis is away.
      const closing = Promise.all(all().map((q) => q.close(active.size === 0)));
      const outcome = await Promise.race([
        closing.then(
          () => 'closed' as const,
          () => 'closed' as const,
        ),
        deadline,
      ]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        const unfinished = [...active.values()];
        logger.warn(
          { timeoutMs, jobs: unfinished.map((a) => a.job.data.path) },
          'Uploads still running at the shutdown deadline: putting them back in the queue',
        );
        await Promise.all(unfinished.map(({ job, token }) => job.moveToWait(token).catch(() => undefined)));
        // worker.close() keeps waiting for the abandoned uploads (a second close(true) only
        // returns the same promise): disconnect instead; the process is about to exit.
        closing.catch(() => undefined);
      }
      await admin?.close();
      redis.disconnect();
    },
  };
}

/** /readyz's S3 check: true, or the probe's one-line reason (the operation, status and code). */
async function s3Check(store: ObjectStore, timeoutMs: number): Promise<Check> {
  const probe = await store.probe(timeoutMs);
  return probe.ok ? true : (probe.message ?? probe.code ?? false);
}
