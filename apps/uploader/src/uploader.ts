import {
  type AdminServer,
  type Config,
  connectChecked,
  createRegistry,
  createUploaderMetrics,
  createUploadQueue,
  createWorkerRedis,
  JobStates,
  type Logger,
  PayloadStore,
  queuePrefix,
  type Redis,
  rateLimited,
  redisKeys,
  startAdminServer,
  type UploaderMetrics,
  type UploadJobData,
} from '@imgproxy-cache/shared';
import { type Job, Worker } from 'bullmq';
import { createProcessor, type UploadResult } from './processor.js';
import type { ObjectStore } from './s3-store.js';

export interface RunningUploader {
  worker: Worker<UploadJobData, UploadResult>;
  metrics: UploaderMetrics;
  /** /metrics, /livez, /readyz on METRICS_BIND (undefined when off) */
  admin: AdminServer | undefined;
  /**
   * Stops taking jobs and waits for the ones in flight, at most `timeoutMs`; past it, puts them
   * back in the queue (not in the failed set) for another uploader, and closes.
   */
  close(timeoutMs: number): Promise<void>;
}

export interface UploaderOptions {
  config: Config;
  store: ObjectStore;
  logger: Logger;
  onResult?: (result: UploadResult | 'failed', job: UploadJobData) => void;
  /** aborts the wait for Redis at start (SIGTERM before Redis ever answered) */
  signal?: AbortSignal;
}

/**
 * Waits for Redis, refuses one that may evict keys (StartupError), then runs the BullMQ worker and
 * the admin server.
 */
export async function startUploader({ config, store, logger, onResult, signal }: UploaderOptions): Promise<RunningUploader> {
  const logRedisError = rateLimited(10_000);
  const onError = (error: Error) =>
    logRedisError((suppressed) => logger.warn({ err: error.message, suppressed }, 'Redis connection error; uploads resume when it is back'));
  const connection: Redis = createWorkerRedis(config.redisUrl, { onError });
  const payloadRedis: Redis = config.payloadRedisUrl ? createWorkerRedis(config.payloadRedisUrl, { onError }) : connection;
  const connections = [...new Set([connection, payloadRedis])];
  try {
    await connectChecked(
      [
        { client: connection, holds: 'queue', variable: 'REDIS_URL' },
        {
          client: payloadRedis,
          holds: payloadRedis === connection ? 'queue' : 'payloads',
          variable: config.payloadRedisUrl ? 'PAYLOAD_REDIS_URL' : 'REDIS_URL',
        },
      ],
      logger,
      signal,
    );
  } catch (error) {
    for (const c of connections) c.disconnect();
    throw error;
  }

  const queue = createUploadQueue(config.queue.name, connection);
  const logThrottle = rateLimited(10_000);
  const keys = redisKeys(config.queue.name);
  const payloads = new PayloadStore(payloadRedis, keys);
  const jobs = new JobStates(connection, keys);
  const metrics = createUploaderMetrics(
    createRegistry('uploader'),
    () => queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'failed'),
    () => payloads.backlogBytes(),
  );

  const processor = createProcessor({
    payloads,
    jobs,
    store,
    folder: config.s3.folder,
    markUploaded:
      payloadRedis === connection
        ? (id) => payloads.markUploaded(id, config.queue.uploadedTtlSec)
        : // marker first (from here on the proxy skips the image), then the bytes in the other Redis
          async (id) => {
            await jobs.markUploaded(id, config.queue.uploadedTtlSec);
            await payloads.drop(id);
          },
    conditionalWrites: config.s3.conditionalWrites,
    logger,
    written: (size) => metrics.uploadBytes.inc(size),
    async throttle(error) {
      logThrottle((suppressed) =>
        logger.warn({ reason: error.message, pauseMs: config.uploader.throttleDelayMs, suppressed }, 'S3 asks to slow down: pausing uploads'),
      );
      metrics.uploads.inc({ result: 'throttled' });
      await queue.rateLimit(config.uploader.throttleDelayMs);
      return Worker.RateLimitError();
    },
  });

  // Jobs in flight, so that a shutdown past its deadline can hand them back to the queue.
  const active = new Map<string, { job: Job<UploadJobData>; token: string }>();

  const worker = new Worker<UploadJobData, UploadResult>(
    config.queue.name,
    async (job, token) => {
      active.set(job.id!, { job, token: token! });
      const stop = metrics.uploadSeconds.startTimer();
      try {
        const result = await processor(job);
        stop({ result });
        metrics.uploads.inc({ result });
        return result;
      } catch (error) {
        stop({ result: 'error' });
        throw error;
      } finally {
        active.delete(job.id!);
      }
    },
    {
      connection,
      prefix: queuePrefix(config.queue.name),
      concurrency: config.uploader.concurrency,
      // A killed uploader's jobs return to the queue once their lock lapses and the stall check
      // runs: within lockDuration + stalledInterval.
      lockDuration: config.uploader.lockMs,
      stalledInterval: Math.ceil(config.uploader.lockMs / 2),
      maxStalledCount: 3,
      // Only so that queue.rateLimit() (503 SlowDown) pauses the queue: BullMQ honours a manual
      // rate limit only when a limiter is set. The limit itself is never reached.
      limiter: { max: 1_000_000, duration: 1_000 },
    },
  );

  worker.on('completed', (job, result) => onResult?.(result, job.data));
  worker.on('failed', (job, error) => {
    if (!job) return;
    const attempts = job.opts.attempts ?? 1;
    const final = job.attemptsMade >= attempts || error.name === 'UnrecoverableError';
    const fields = { path: job.data.path, key: job.data.cacheKey, attempt: job.attemptsMade, attempts, reason: error.message };
    if (final) {
      metrics.uploads.inc({ result: 'failed' });
      logger.error(fields, 'Upload failed for good; kept in the failed set');
      onResult?.('failed', job.data);
    } else {
      metrics.uploads.inc({ result: 'retried' });
      logger.warn(fields, 'Upload failed; will retry');
    }
  });
  worker.on('error', (error) => onError(error));
  const gathering = gatherWhenDry(worker, config.uploader.gatherMs);

  // Ready when Redis and S3 answer.
  const admin = config.metricsBind
    ? await startAdminServer(config.metricsBind, metrics.registry, async () => ({
        redis: connections.every((c) => c.status === 'ready'),
        s3: (await store.probe(Math.min(config.s3.requestTimeoutMs, 3_000))).ok,
      })).catch(async (error: Error) => {
        await worker.close(true).catch(() => undefined);
        for (const c of connections) c.disconnect();
        throw error;
      })
    : undefined;

  return {
    worker,
    metrics,
    admin,
    async close(timeoutMs) {
      gathering.stop();
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      // With nothing in flight there is nothing to wait for, even if Redis is away.
      const closing = active.size === 0 ? worker.close(true) : worker.close();
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
      await queue.close().catch(() => undefined);
      for (const c of connections) c.disconnect();
    },
  };
}

/**
 * Once the queue has run dry, the worker pauses for `gatherMs` before it takes jobs again: the
 * images that arrive meanwhile are then taken together, each finished job handing over the next
 * (BullMQ's moveToFinished fetches it), instead of each waking the worker on its own.
 */
function gatherWhenDry(worker: Worker, gatherMs: number): { stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  let gathering = false;
  let stopped = false;
  const onDrained = () => {
    if (stopped || gathering) return;
    gathering = true;
    void worker.pause(true).then(() => {
      timer = setTimeout(() => {
        gathering = false;
        if (!stopped) worker.resume();
      }, gatherMs);
    });
  };
  if (gatherMs > 0) worker.on('drained', onDrained);
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      worker.off('drained', onDrained);
    },
  };
}
