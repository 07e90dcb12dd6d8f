import { Worker } from 'bullmq';
import {
  BULL_PREFIX,
  createWorkerRedis,
  rateLimited,
  redisKeys,
  type Config,
  type Logger,
  type Redis,
  type UploadJobData,
} from '@imgproxy-cache/shared';
import { createProcessor, type UploadResult } from './processor.js';
import type { ObjectStore } from './s3-writer.js';

export interface RunningUploader {
  worker: Worker<UploadJobData, UploadResult>;
  /**
   * Stops taking jobs and waits for the ones in flight, at most `timeoutMs`; past it, closes anyway
   * and their locks lapse, so BullMQ's stall check hands them to another uploader (they are not
   * failed).
   */
  close(timeoutMs?: number): Promise<void>;
}

export interface UploaderOptions {
  config: Config;
  store: ObjectStore;
  logger: Logger;
  onResult?: (result: UploadResult | 'failed', job: UploadJobData) => void;
}

export function startUploader({ config, store, logger, onResult }: UploaderOptions): RunningUploader {
  const logRedisError = rateLimited(10_000);
  const onError = (error: Error) =>
    logRedisError((suppressed) => logger.warn({ err: error.message, suppressed }, 'Redis connection error; uploads resume when it is back'));
  const connection: Redis = createWorkerRedis(config.redisUrl, { onError });
  const payloads: Redis = createWorkerRedis(config.redisUrl, { onError });

  const processor = createProcessor({
    redis: payloads,
    store,
    keys: redisKeys(config.queue.name),
    folder: config.s3.folder,
    uploadedTtlSec: config.queue.uploadedTtlSec,
    logger,
  });

  const worker = new Worker<UploadJobData, UploadResult>(config.queue.name, processor, {
    connection,
    prefix: BULL_PREFIX,
    concurrency: config.uploader.concurrency,
  });

  worker.on('completed', (job, result) => onResult?.(result, job.data));
  worker.on('failed', (job, error) => {
    if (!job) return;
    const attempts = job.opts.attempts ?? 1;
    const final = job.attemptsMade >= attempts || error.name === 'UnrecoverableError';
    const fields = { path: job.data.path, key: job.data.cacheKey, attempt: job.attemptsMade, attempts, reason: error.message };
    if (final) {
      logger.error(fields, 'Upload failed for good; kept in the failed set');
      onResult?.('failed', job.data);
    } else {
      logger.warn(fields, 'Upload failed; will retry');
    }
  });
  worker.on('error', (error) => onError(error));

  return {
    worker,
    async close(timeoutMs = 25_000) {
      let timer: NodeJS.Timeout | undefined;
      const gave = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      const outcome = await Promise.race([worker.close().then(() => 'closed' as const), gave]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        logger.warn({ timeoutMs }, 'Uploads still running at shutdown deadline; they go back to the queue');
        await worker.close(true).catch(() => undefined);
      }
      connection.disconnect();
      payloads.disconnect();
    },
  };
}
