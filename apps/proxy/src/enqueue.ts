import {
  PayloadStore,
  UPLOAD_JOB_NAME,
  createUploadQueue,
  rateLimited,
  redisKeys,
  uploadJobOptions,
  type Config,
  type JobState,
  type Logger,
  type Redis,
  type RedisKeys,
  type UploadJobData,
} from '@imgproxy-cache/shared';
import type { Queue } from 'bullmq';

// Hands a complete, cacheable body to the uploaders: the bytes go into their own Redis key with a
// TTL, and a BullMQ job whose id is the cache key carries the metadata. It runs after the client's
// response has ended, never throws, and never waits for a Redis that is not there.

export type EnqueueOutcome =
  | 'queued' // bytes teed, job added
  | 'requeued' // the image's earlier job had failed: replaced by a fresh one with these bytes
  | 'uploaded' // the image was uploaded recently: nothing to do
  | 'already-queued' // a job for the image exists and is not failed
  | 'pending' // another request is teeing the same image right now
  | 'backlog-full' // CACHE_BACKLOG_MAX_BYTES of bytes already wait for upload
  | 'redis-down' // not connected: skipped at once
  | 'timeout' // Redis did not answer within ENQUEUE_TIMEOUT_MS
  | 'error';

export interface TeedImage {
  data: UploadJobData;
  bytes: Buffer;
}

export interface Enqueuer {
  enqueue(image: TeedImage): Promise<EnqueueOutcome>;
  close(): Promise<void>;
}

class TimeoutError extends Error {}

export class RedisEnqueuer implements Enqueuer {
  private readonly queue: Queue<UploadJobData>;
  private readonly keys: RedisKeys;
  private readonly payloads: PayloadStore;
  private readonly logFailure = rateLimited(10_000);
  private readonly orphanAgeSec: number;
  private backlogFull = false;

  /** `payloadRedis` is the queue's `redis` unless PAYLOAD_REDIS_URL names another. */
  constructor(
    private readonly redis: Redis,
    private readonly payloadRedis: Redis,
    private readonly config: Config,
    private readonly logger: Logger,
  ) {
    this.keys = redisKeys(config.queue.name);
    this.payloads = new PayloadStore(payloadRedis, this.keys);
    this.queue = createUploadQueue(config.queue.name, redis);
    this.queue.on('error', () => {
      /* connection errors are logged, rate-limited, by the Redis client's owner */
    });
    // Bytes without a job older than this were left by a producer whose add() failed.
    this.orphanAgeSec = Math.max(30, Math.ceil((config.proxy.enqueueTimeoutMs * 3) / 1000));
  }

  async enqueue(image: TeedImage): Promise<EnqueueOutcome> {
    for (const r of new Set([this.redis, this.payloadRedis])) {
      if (r.status !== 'ready') {
        this.report('redis-down', image, new Error(`Redis is ${r.status}`));
        return 'redis-down';
      }
    }
    try {
      return await withTimeout(this.tee(image), this.config.proxy.enqueueTimeoutMs);
    } catch (error) {
      const outcome = error instanceof TimeoutError ? 'timeout' : 'error';
      this.report(outcome, image, error as Error);
      return outcome;
    }
  }

  private async tee({ data, bytes }: TeedImage): Promise<EnqueueOutcome> {
    const { cacheKey } = data;
    let jobState: JobState = 'check'; // one Redis: the tee script looks at the job itself
    if (this.payloadRedis !== this.redis) {
      const [exists, failedScore] = (await this.redis.multi().exists(this.keys.job(cacheKey)).zscore(this.keys.failed(), cacheKey).exec())!;
      if (exists![1] === 1 && failedScore![1] === null) return 'already-queued';
      jobState = exists![1] === 1 ? 'failed' : 'none';
    }
    const result = await this.payloads.tee(cacheKey, bytes, {
      ttlSec: this.config.queue.payloadTtlSec,
      orphanAgeSec: this.orphanAgeSec,
      backlogMaxBytes: this.config.proxy.backlogMaxBytes,
      jobState,
    });
    if (result === 'lost') throw new Error('the image bytes did not reach Redis');
    if (result === 'backlog-full') this.noteBacklog(true);
    if (result !== 'new' && result !== 'failed') return result;
    this.noteBacklog(false);
    try {
      // A failed job keeps its id for the dashboard; a new complete body for the image replaces it.
      if (result === 'failed') await this.queue.remove(cacheKey);
      await this.queue.add(UPLOAD_JOB_NAME, data, uploadJobOptions(this.config, cacheKey));
    } catch (error) {
      // Without a job nobody will ever read the bytes: free them now rather than at their TTL.
      await this.payloads.discard(cacheKey).catch(() => undefined);
      throw error;
    }
    return result === 'failed' ? 'requeued' : 'queued';
  }

  /** Logs once when the backlog fills up and once when it has room again. */
  private noteBacklog(full: boolean): void {
    if (full === this.backlogFull) return;
    this.backlogFull = full;
    if (full) {
      this.logger.warn(
        { backlogMaxBytes: this.config.proxy.backlogMaxBytes },
        'Upload backlog is full (CACHE_BACKLOG_MAX_BYTES): new images are served but not cached until uploads catch up',
      );
    } else {
      this.logger.info('Upload backlog has room again: caching resumed');
    }
  }

  private report(outcome: EnqueueOutcome, image: TeedImage, error: Error): void {
    this.logFailure((suppressed) =>
      this.logger.warn(
        { outcome, path: image.data.path, key: image.data.cacheKey, err: error.message, suppressed },
        'Could not queue image for upload; the client was served, the image was not cached',
      ),
    );
  }

  async close(): Promise<void> {
    await this.queue.close().catch(() => undefined);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`no answer from Redis within ${ms} ms`)), ms);
  });
  promise.catch(() => undefined); // a late failure after the timeout is already reported
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
