import {
  createUploadQueue,
  JobStates,
  type Logger,
  PayloadStore,
  queuePrefix,
  type Redis,
  rateLimited,
  rateLimitedBy,
  redisKeys,
  type UploaderConfig,
  type UploaderMetrics,
  type UploadJobData,
} from '@imgproxy-cache/shared';
import { type Job, type Queue, Worker } from 'bullmq';
import { createProcessor, type UploadResult } from './processor.js';
import { type ObjectStore, S3OperationError } from './s3-store.js';
import type { WatchedWorker } from './shard-watchdog.js';

// The BullMQ worker of one upload queue (one shard): runs its uploads, reports their results, and
// gathers jobs once the queue runs dry (UPLOAD_GATHER_MS).

export interface QueueWorkerOptions {
  name: string;
  config: UploaderConfig;
  /** the queue's Redis, and the payloads' (the same one unless PAYLOAD_REDIS_URL) */
  connection: Redis;
  payloadRedis: Redis;
  store: ObjectStore;
  logger: Logger;
  metrics: UploaderMetrics;
  concurrency: number;
  /** S3 asked to slow down: pause every queue this uploader works */
  throttleAll: (delayMs: number) => Promise<void>;
  /** until when S3 asked every queue to wait (ms since the epoch) */
  throttledUntil: () => number;
  /** jobs in flight, for a shutdown past its deadline */
  active: Map<string, { job: Job<UploadJobData>; token: string }>;
  onResult?: (result: UploadResult | 'failed', job: UploadJobData) => void;
  onError: (error: Error) => void;
}

export interface QueueWorker extends WatchedWorker {
  name: string;
  queue: Queue<UploadJobData>;
  worker: Worker<UploadJobData, UploadResult>;
  payloads: PayloadStore;
  /** stops taking jobs: `force` does not wait for those in flight */
  close(force: boolean): Promise<void>;
}

export function startQueueWorker(options: QueueWorkerOptions): QueueWorker {
  const { name, config, connection, payloadRedis, logger, metrics, active } = options;
  const queue = createUploadQueue(name, connection);
  const keys = redisKeys(name);
  const payloads = new PayloadStore(payloadRedis, keys);
  const jobs = new JobStates(connection, keys);
  const logThrottle = rateLimited(10_000);
  // an S3 fault fails every attempt: one line per cause per interval, each attempt still counted
  const logRetry = rateLimitedBy(10_000);

  const processor = createProcessor({
    payloads,
    jobs,
    store: options.store,
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
    baseUrl: config.imgproxyBaseUrl,
    logger,
    written: (size) => metrics.uploadBytes.inc(size),
    async throttle(error) {
      logThrottle((suppressed) =>
        logger.warn({ reason: error.message, pauseMs: config.uploader.throttleDelayMs, suppressed }, 'S3 asks to slow down: pausing uploads'),
      );
      metrics.uploads.inc({ result: 'throttled', queue: name });
      await options.throttleAll(config.uploader.throttleDelayMs);
      return Worker.RateLimitError();
    },
  });

  let running = 0; // jobs of this worker in flight
  const worker = new Worker<UploadJobData, UploadResult>(
    name,
    async (job, token) => {
      running += 1;
      active.set(`${name}/${job.id}`, { job, token: token! });
      const stop = metrics.uploadSeconds.startTimer();
      try {
        const result = await processor(job);
        stop({ result });
        metrics.uploads.inc({ result, queue: name });
        return result;
      } catch (error) {
        stop({ result: 'error' });
        throw error;
      } finally {
        running -= 1;
        active.delete(`${name}/${job.id}`);
      }
    },
    {
      connection,
      prefix: queuePrefix(name),
      concurrency: options.concurrency,
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

  // every result's series from the start, at 0: a counter that first appears at its failure's
  // count would never show an increase to increase() or rate(), and the alerts would stay silent
  for (const result of ['uploaded', 'already-present', 'retried', 'throttled', 'failed']) metrics.uploads.inc({ result, queue: name }, 0);
  worker.on('completed', (job, result) => options.onResult?.(result, job.data));
  worker.on('failed', (job, error) => {
    if (!job) return;
    const attempts = job.opts.attempts ?? 1;
    const final = job.attemptsMade >= attempts || error.name === 'UnrecoverableError';
    const fields = { path: job.data.path, key: job.data.cacheKey, attempt: job.attemptsMade, attempts, reason: error.message };
    metrics.uploadErrors.inc({ code: error instanceof S3OperationError ? error.code : 'other' });
    if (final) {
      metrics.uploads.inc({ result: 'failed', queue: name });
      logger.error(fields, 'Upload failed for good; kept in the failed set');
      options.onResult?.('failed', job.data);
    } else {
      metrics.uploads.inc({ result: 'retried', queue: name });
      logRetry(retryCause(error), (suppressed) => logger.warn({ ...fields, suppressed }, 'Upload failed; will retry'));
    }
  });
  worker.on('error', (error) => options.onError(error));
  // what the watchdog looks at: when the worker last took a job, finished one, or found none
  let lastActivity = Date.now();
  const touched = () => (lastActivity = Date.now());
  for (const event of ['active', 'completed', 'failed', 'drained'] as const) worker.on(event, touched);
  const gathering = gatherWhenDry(worker, config.uploader.gatherMs);
  return {
    name,
    queue,
    worker,
    payloads,
    lastActivity: () => lastActivity,
    canTake: () => worker.isRunning() && !worker.isPaused() && running < options.concurrency && options.throttledUntil() <= Date.now(),
    // 'wait' alone: a queue paused from the dashboard keeps its jobs in 'paused', rightly untaken
    waiting: () => queue.getJobCountByTypes('wait'),
    async close(force) {
      gathering.stop();
      await worker.close(force);
      await queue.close().catch(() => undefined);
    },
  };
}

/** What makes failures alike for the log: an S3 error's status and code, else the message. */
function retryCause(error: Error): string {
  return error instanceof S3OperationError ? `S3 ${error.status} ${error.code}` : error.message;
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
