import {
  UPLOAD_JOB_NAME,
  createUploadQueue,
  rateLimited,
  redisKeys,
  uploadJobOptions,
  type Config,
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

// One round trip decides and tees atomically, so that of several requests for one image finishing
// together exactly one writes the bytes and adds the job. A payload without a job that is older
// than ARGV[4] seconds was left by a producer whose add() failed (Redis dropped mid-way): it is
// overwritten rather than blocking the image until its TTL.
const TEE_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 'uploaded' end
local failed = false
if redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('ZSCORE', KEYS[3], ARGV[1]) then failed = true else return 'already-queued' end
end
if not failed then
  local ttl = redis.call('TTL', KEYS[4])
  if ttl > 0 and (tonumber(ARGV[3]) - ttl) < tonumber(ARGV[4]) then return 'pending' end
end
redis.call('SET', KEYS[4], ARGV[2], 'EX', ARGV[3])
if failed then return 'failed' end
return 'new'
`;

type TeeResult = 'uploaded' | 'already-queued' | 'pending' | 'failed' | 'new';

interface TeeCommand {
  icTee(uploaded: string, job: string, failed: string, payload: string, jobId: string, bytes: Buffer, ttl: number, orphanAge: number): Promise<TeeResult>;
}

class TimeoutError extends Error {}

export class RedisEnqueuer implements Enqueuer {
  private readonly queue: Queue<UploadJobData>;
  private readonly keys: RedisKeys;
  private readonly logFailure = rateLimited(10_000);
  private readonly orphanAgeSec: number;

  constructor(
    private readonly redis: Redis,
    private readonly config: Config,
    private readonly logger: Logger,
  ) {
    this.keys = redisKeys(config.queue.name);
    this.queue = createUploadQueue(config.queue.name, redis);
    this.queue.on('error', () => {
      /* connection errors are logged once, by the Redis client's owner */
    });
    this.orphanAgeSec = Math.max(30, Math.ceil((config.proxy.enqueueTimeoutMs * 3) / 1000));
    if (!(redis as unknown as Partial<TeeCommand>).icTee) {
      redis.defineCommand('icTee', { numberOfKeys: 4, lua: TEE_SCRIPT });
    }
  }

  async enqueue(image: TeedImage): Promise<EnqueueOutcome> {
    if (this.redis.status !== 'ready') {
      this.report('redis-down', image, new Error(`Redis is ${this.redis.status}`));
      return 'redis-down';
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
    const redis = this.redis as unknown as TeeCommand;
    const result = await redis.icTee(
      this.keys.uploaded(cacheKey),
      this.keys.job(cacheKey),
      this.keys.failed(),
      this.keys.payload(cacheKey),
      cacheKey,
      bytes,
      this.config.queue.payloadTtlSec,
      this.orphanAgeSec,
    );
    if (result === 'uploaded' || result === 'already-queued' || result === 'pending') return result;
    try {
      // A failed job keeps its id for the dashboard; a new complete body for the image replaces it.
      if (result === 'failed') await this.queue.remove(cacheKey);
      await this.queue.add(UPLOAD_JOB_NAME, data, uploadJobOptions(this.config, cacheKey));
    } catch (error) {
      // Without a job nobody will ever read the bytes: free them now rather than at their TTL.
      await this.redis.del(this.keys.payload(cacheKey)).catch(() => undefined);
      throw error;
    }
    return result === 'failed' ? 'requeued' : 'queued';
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
