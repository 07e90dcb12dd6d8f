import {
  Intake,
  PayloadStore,
  rateLimited,
  redisKeys,
  type Config,
  type JobState,
  type Logger,
  type Redis,
  type UploadJobData,
} from '@imgproxy-cache/shared';

// Hands a complete, cacheable body to the uploaders: the bytes go into their own Redis key with a
// TTL, and an intake entry carries the metadata; an uploader turns the entry into a BullMQ job
// whose id is the cache key (shared/src/intake.ts). It runs after the client's response has ended,
// never throws, and never waits for a Redis that is not there.

export type EnqueueOutcome =
  | 'queued' // bytes teed, on the intake
  | 'requeued' // the image's earlier job had failed: on the intake again with these bytes
  | 'uploaded' // the image was uploaded recently: nothing to do
  | 'already-queued' // a job for the image exists and is not failed
  | 'pending' // the image is teed already and its job about to be created
  | 'backlog-full' // CACHE_BACKLOG_MAX_BYTES of bytes already wait for upload
  | 'redis-down' // not connected: skipped at once
  | 'redis-busy' // too many bytes already on their way to a Redis that does not answer: skipped at once
  | 'timeout' // Redis did not answer within ENQUEUE_TIMEOUT_MS
  | 'error';

export interface TeedImage {
  data: UploadJobData;
  bytes: Buffer;
}

export interface Enqueuer {
  /**
   * Why a new image would only be refused right now, if it would: the backlog was full a moment
   * ago, or Redis is not answering. The response is then not copied at all.
   */
  shedding(): 'backlog-full' | 'redis-busy' | undefined;
  enqueue(image: TeedImage): Promise<EnqueueOutcome>;
  close(): Promise<void>;
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
  private readonly intake: Intake;
  private readonly payloads: PayloadStore;
  private readonly logFailure = rateLimited(10_000);
  private readonly orphanAgeSec: number;
  private readonly backlogRecheckMs: number;
  private readonly now: () => number;
  private backlogFull = false;
  /** when Redis last said the backlog is full, or the last image was let through to ask again */
  private backlogCheckedAt = 0;
  private readonly maxPendingBytes: number;
  /** bytes of tees sent to Redis whose answer has not come (whatever ENQUEUE_TIMEOUT_MS said) */
  private pendingBytes = 0;

  /** `payloadRedis` is the queue's `redis` unless PAYLOAD_REDIS_URL names another. */
  constructor(
    private readonly redis: Redis,
    private readonly payloadRedis: Redis,
    private readonly config: Config,
    private readonly logger: Logger,
    options: EnqueuerOptions = {},
  ) {
    this.backlogRecheckMs = options.backlogRecheckMs ?? 100;
    this.now = options.now ?? Date.now;
    this.maxPendingBytes = options.maxPendingBytes ?? Math.max(2 * config.proxy.cacheMaxBytes, 32 * 2 ** 20);
    const keys = redisKeys(config.queue.name);
    this.intake = new Intake(redis, keys);
    this.payloads = new PayloadStore(payloadRedis, keys);
    // With PAYLOAD_REDIS_URL: bytes without an intake entry older than this were left by a
    // producer that died, or whose push failed, between the two Redis.
    this.orphanAgeSec = Math.max(30, Math.ceil((config.proxy.enqueueTimeoutMs * 3) / 1000));
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
    if (this.pendingBytes + image.bytes.length > this.maxPendingBytes) {
      this.reportBusy();
      return 'redis-busy';
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
    const split = this.payloadRedis !== this.redis;
    let jobState: JobState = 'check'; // one Redis: the tee script does everything
    if (split) {
      const known = await this.intake.check(data.cacheKey);
      if (known === 'pending' || known === 'already-queued') return known;
      jobState = known;
    }
    const sent = this.payloads.tee(data, bytes, {
      ttlSec: this.config.queue.payloadTtlSec,
      orphanAgeSec: this.orphanAgeSec,
      backlogMaxBytes: this.config.proxy.backlogMaxBytes,
      jobState,
    });
    // The bytes stay in the Redis client until Redis answers, even past ENQUEUE_TIMEOUT_MS.
    this.pendingBytes += bytes.length;
    const answered = () => void (this.pendingBytes -= bytes.length);
    sent.then(answered, answered);
    const result = await sent;
    if (result === 'lost') throw new Error('the image bytes did not reach Redis');
    if (result === 'backlog-full') this.noteBacklog(true);
    if (result !== 'new' && result !== 'failed') return result;
    this.noteBacklog(false);
    if (split) {
      try {
        await this.intake.push(data, result === 'failed');
      } catch (error) {
        // Without an entry nobody will ever read the bytes: free them now rather than at their TTL.
        await this.payloads.discard(data.cacheKey).catch(() => undefined);
        throw error;
      }
    }
    return result === 'failed' ? 'requeued' : 'queued';
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

  async close(): Promise<void> {
    // the Redis connections belong to the server
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
