import {
  type Config,
  type DedupOutcome,
  dedup,
  type JobState,
  JobStates,
  type Logger,
  PayloadStore,
  type Redis,
  rateLimited,
  redisKeys,
  type StoreResult,
  storeMode,
  UPLOAD_JOB_NAME,
  type UploadJobData,
  uploadJobOptions,
} from '@imgproxy-cache/shared';
import { Job, type Queue } from 'bullmq';

// Hands a complete, cacheable image to the uploaders: its payload (metadata and bytes) into a key
// of its own with a TTL, then its BullMQ job, whose id is the cache key. What happens for an image
// Redis already knows is the dedup rule's (shared/src/dedup.ts). It runs after the client's
// response has ended, never throws, and never waits for a Redis that is not there.

export type EnqueueOutcome =
  | DedupOutcome
  | 'backlog-full' // CACHE_BACKLOG_MAX_BYTES of bytes already wait for upload
  | 'redis-down' // not connected: skipped at once
  | 'redis-busy' // too many bytes already on their way to a Redis that does not answer: skipped at once
  | 'timeout' // Redis did not answer within ENQUEUE_TIMEOUT_MS
  | 'error';

export interface TeedImage {
  data: UploadJobData;
  /** the encoded payload (shared/src/payload.ts) */
  payload: Buffer;
}

export interface Enqueuer {
  /**
   * Why a new image would only be refused right now, if it would: the backlog was full a moment
   * ago, or Redis is not answering. The response is then not copied at all.
   */
  shedding(): 'backlog-full' | 'redis-busy' | undefined;
  enqueue(image: TeedImage): Promise<EnqueueOutcome>;
}

export interface EnqueuerOptions {
  /**
   * While the backlog is full, one image in this interval still goes to Redis and finds out
   * whether there is room again; the others are shed without a copy or a trip to Redis.
   */
  backlogRecheckMs?: number;
  /** the clock (tests) */
  now?: () => number;
  /**
   * Most bytes of images sent to Redis and not answered yet. A Redis that is alive but does not
   * answer (stopped, swapping, blocked by a slow script) would otherwise collect every image in
   * the proxy's memory. Default: 2 × CACHE_MAX_BYTES, at least 32 MiB.
   */
  maxPendingBytes?: number;
}

class TimeoutError extends Error {}

export class RedisEnqueuer implements Enqueuer {
  private readonly payloads: PayloadStore;
  private readonly jobs: JobStates;
  private readonly split: boolean;
  private readonly logFailure = rateLimited(10_000);
  private readonly backlogRecheckMs: number;
  private readonly now: () => number;
  private backlogFull = false;
  /** when Redis last said the backlog is full, or the last image was let through to ask again */
  private backlogCheckedAt = 0;
  private readonly maxPendingBytes: number;
  /** bytes of payloads sent to Redis whose answer has not come (whatever ENQUEUE_TIMEOUT_MS said) */
  private pendingBytes = 0;

  /** `payloadRedis` is the queue's `redis` unless PAYLOAD_REDIS_URL names another. */
  constructor(
    private readonly redis: Redis,
    private readonly payloadRedis: Redis,
    private readonly queue: Queue<UploadJobData>,
    private readonly config: Config,
    private readonly logger: Logger,
    options: EnqueuerOptions = {},
  ) {
    this.backlogRecheckMs = options.backlogRecheckMs ?? 100;
    this.now = options.now ?? Date.now;
    this.maxPendingBytes = options.maxPendingBytes ?? Math.max(2 * config.proxy.cacheMaxBytes, 32 * 2 ** 20);
    const keys = redisKeys(config.queue.name);
    this.payloads = new PayloadStore(payloadRedis, keys);
    this.jobs = new JobStates(redis, keys);
    this.split = payloadRedis !== redis;
  }

  shedding(): 'backlog-full' | 'redis-busy' | undefined {
    if (this.pendingBytes >= this.maxPendingBytes) {
      this.reportBusy();
      return 'redis-busy';
    }
    if (!this.backlogFull) return undefined;
    const now = this.now();
    if (now - this.backlogCheckedAt < this.backlogRecheckMs) return 'backlog-full';
    this.backlogCheckedAt = now; // this image goes to Redis and asks
    return undefined;
  }

  async enqueue(image: TeedImage): Promise<EnqueueOutcome> {
    for (const r of new Set([this.redis, this.payloadRedis])) {
      if (r.status !== 'ready') {
        this.report('redis-down', image, new Error(`Redis is ${r.status}`));
        return 'redis-down';
      }
    }
    if (this.pendingBytes + image.payload.length > this.maxPendingBytes) {
      this.reportBusy();
      return 'redis-busy';
    }
    try {
      return await withTimeout(this.handOff(image), this.config.proxy.enqueueTimeoutMs);
    } catch (error) {
      const outcome = error instanceof TimeoutError ? 'timeout' : 'error';
      this.report(outcome, image, error as Error);
      return outcome;
    }
  }

  private async handOff({ data, payload }: TeedImage): Promise<EnqueueOutcome> {
    const id = data.cacheKey;
    const opts = { ttlSec: this.config.queue.payloadTtlSec, backlogMaxBytes: this.config.proxy.backlogMaxBytes };
    let state: JobState;
    let result: StoreResult;
    if (this.split) {
      state = await this.jobs.of(id);
      const mode = storeMode(state);
      result = mode === 'never' ? 'skipped' : await this.sending(payload, this.payloads.store(id, payload, mode, opts));
    } else {
      ({ state, result } = await this.sending(payload, this.payloads.tee(id, payload, opts)));
    }
    if (result === 'lost') throw new Error('the image bytes did not reach Redis');
    if (result === 'backlog-full') {
      this.noteBacklog(true);
      return 'backlog-full';
    }
    if (result === 'stored') this.noteBacklog(false);
    const decision = dedup(state, result === 'present');
    if (decision.next === 'add') await this.queue.add(UPLOAD_JOB_NAME, data, uploadJobOptions(this.config.queue, id));
    if (decision.next === 'retry') await this.retry(data, state as 'failed' | 'completed');
    return decision.outcome;
  }

  /** Counts the payload's bytes as held for Redis until it answers, even past ENQUEUE_TIMEOUT_MS. */
  private sending<T>(payload: Buffer, sent: Promise<T>): Promise<T> {
    this.pendingBytes += payload.length;
    const answered = () => {
      this.pendingBytes -= payload.length;
    };
    sent.then(answered, answered);
    return sent;
  }

  /** The image's finished job runs again, and finds the bytes just stored. */
  private async retry(data: UploadJobData, state: 'failed' | 'completed'): Promise<void> {
    const job = await Job.fromId<UploadJobData>(this.queue, data.cacheKey);
    if (!job) {
      // removed since (retention, or by hand): a new one
      await this.queue.add(UPLOAD_JOB_NAME, data, uploadJobOptions(this.config.queue, data.cacheKey));
      return;
    }
    try {
      await job.retry(state, { resetAttemptsMade: true, resetAttemptsStarted: true });
    } catch {
      // Another response for the image retried it first (or someone did from the dashboard):
      // it runs either way, and reads the newest bytes.
    }
  }

  /** Logs once when the backlog fills up and once when it has room again. */
  private noteBacklog(full: boolean): void {
    if (full) this.backlogCheckedAt = this.now();
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

  private reportBusy(): void {
    this.logFailure((suppressed) =>
      this.logger.warn(
        { outcome: 'redis-busy', pendingBytes: this.pendingBytes, suppressed },
        'Redis is not answering and enough image bytes already wait for it: new images are served but not cached until it answers',
      ),
    );
  }

  private report(outcome: EnqueueOutcome, image: TeedImage, error: Error): void {
    this.logFailure((suppressed) =>
      this.logger.warn(
        { outcome, path: image.data.path, key: image.data.cacheKey, err: error.message, suppressed },
        'Could not queue image for upload; the client was served, the image was not cached',
      ),
    );
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
