import { Worker, type Job } from 'bullmq';
import {
  BULL_PREFIX,
  Intake,
  PayloadStore,
  createRegistry,
  createUploaderMetrics,
  startAdminServer,
  type AdminServer,
  type UploaderMetrics,
  createWorkerRedis,
  rateLimited,
  redisKeys,
  type Config,
  type Logger,
  type Redis,
  type UploadJobData,
} from '@imgproxy-cache/shared';
import { createProcessor, type UploadResult } from './processor.js';
import { IntakePump } from './intake-pump.js';
import { createUploadQueue } from './upload-queue.js';
import type { ObjectStore } from './s3-writer.js';

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
  /** how often the intake pump looks for images left claimed by an uploader that died (tests) */
  intakeRescanMs?: number;
}

export async function startUploader({ config, store, logger, onResult, intakeRescanMs }: UploaderOptions): Promise<RunningUploader> {
  const logRedisError = rateLimited(10_000);
  const onError = (error: Error) =>
    logRedisError((suppressed) => logger.warn({ err: error.message, suppressed }, 'Redis connection error; uploads resume when it is back'));
  const connection: Redis = createWorkerRedis(config.redisUrl, { onError });
  const payloadRedis: Redis = createWorkerRedis(config.payloadRedisUrl ?? config.redisUrl, { onError });
  const queue = createUploadQueue(config.queue.name, connection);
  const logThrottle = rateLimited(10_000);
  const keys = redisKeys(config.queue.name);
  const payloads = new PayloadStore(payloadRedis, keys);
  const intake = new Intake(connection, keys, (id, error) =>
    logger.error({ key: id, err: error.message }, 'Dropped an unreadable intake entry; the image is cached again on its next request'),
  );
  const metrics = createUploaderMetrics(
    createRegistry('uploader'),
    async () => ({ ...(await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'failed')), intake: await intake.size() }),
    () => payloads.backlogBytes(),
  );

  const processor = createProcessor({
    payloads,
    store,
    folder: config.s3.folder,
    uploadedTtlSec: config.queue.uploadedTtlSec,
    conditionalWrites: config.s3.conditionalWrites,
    logger,
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
        if (result === 'uploaded') metrics.uploadBytes.inc(job.data.size);
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
      prefix: BULL_PREFIX,
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

  // The proxies put teed images on the intake; this uploader turns them into jobs, with the others.
  const pump = new IntakePump({
    intake,
    queue,
    blocking: createWorkerRedis(config.redisUrl, { onError }),
    config,
    logger,
    rescanMs: intakeRescanMs,
  });

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

  // Ready when Redis and S3 answer.
  const admin = config.metricsBind
    ? await startAdminServer(config.metricsBind, metrics.registry, async () => ({
        redis: connection.status === 'ready' && payloadRedis.status === 'ready',
        s3: await store.reachable(),
      }))
    : undefined;

  return {
    worker,
    metrics,
    admin,
    async close(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      // Images it claimed and has not made into jobs yet stay claimed: another uploader's scan takes them.
      await Promise.race([pump.close(), deadline]);
      const closing = worker.close();
      const outcome = await Promise.race([closing.then(() => 'closed' as const), deadline]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        const unfinished = [...active.values()];
        logger.warn({ timeoutMs, jobs: unfinished.map((a) => a.job.data.path) }, 'Uploads still running at the shutdown deadline: putting them back in the queue');
        await Promise.all(unfinished.map(({ job, token }) => job.moveToWait(token).catch(() => undefined)));
        // worker.close() keeps waiting for the abandoned uploads (a second close(true) only
        // returns the same promise): disconnect instead; the process is about to exit.
        closing.catch(() => undefined);
      }
      await admin?.close();
      await queue.close().catch(() => undefined);
      connection.disconnect();
      payloadRedis.disconnect();
    },
  };
}
