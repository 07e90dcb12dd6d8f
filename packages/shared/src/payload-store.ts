import type { Redis } from 'ioredis';
import type { RedisKeys } from './redis-keys.js';

// The teed bytes in Redis, and their accounting. Every change to a payload goes through one of the
// scripts below, so that the backlog counter (the bytes waiting for upload, bounded by
// CACHE_BACKLOG_MAX_BYTES) stays exact: a payload is counted when written and uncounted when
// uploaded, discarded, replaced or expired (expired ones are swept by the next tee).

export type TeeResult =
  | 'uploaded' // the image was uploaded recently
  | 'already-queued' // a job for it exists and has not failed
  | 'pending' // another request wrote its bytes a moment ago and is adding the job
  | 'backlog-full' // CACHE_BACKLOG_MAX_BYTES reached
  | 'failed' // bytes written; the image's earlier job had failed and must be replaced
  | 'new'; // bytes written; add the job

/** What the queue's Redis knows of the image's job, when the bytes live in another Redis. */
export type JobState = 'check' | 'none' | 'failed';

// KEYS: uploaded, payload, backlog bytes, backlog sizes, backlog expiry, job hash, failed set
// ARGV: id, bytes, ttl sec, orphan age sec, backlog max, job state ('check' = look at KEYS[6..7])
const RELEASE = `
local function release(sizes, expiry, counter, id)
  local size = redis.call('HGET', sizes, id)
  if size then
    redis.call('DECRBY', counter, size)
    redis.call('HDEL', sizes, id)
    redis.call('ZREM', expiry, id)
  end
end
`;

const TEE = `${RELEASE}
if redis.call('EXISTS', KEYS[1]) == 1 then return 'uploaded' end
local failed = ARGV[6] == 'failed'
if ARGV[6] == 'check' and redis.call('EXISTS', KEYS[6]) == 1 then
  if redis.call('ZSCORE', KEYS[7], ARGV[1]) then failed = true else return 'already-queued' end
end
if not failed then
  -- bytes without a job: a producer is between its SET and its add(), or died there
  local ttl = redis.call('TTL', KEYS[2])
  if ttl > 0 and (tonumber(ARGV[3]) - ttl) < tonumber(ARGV[4]) then return 'pending' end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 100)) do
  release(KEYS[4], KEYS[5], KEYS[3], gone)
end
release(KEYS[4], KEYS[5], KEYS[3], ARGV[1])
local size = string.len(ARGV[2])
if tonumber(redis.call('GET', KEYS[3]) or '0') + size > tonumber(ARGV[5]) then return 'backlog-full' end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('INCRBY', KEYS[3], size)
redis.call('HSET', KEYS[4], ARGV[1], size)
redis.call('ZADD', KEYS[5], now + tonumber(ARGV[3]) * 1000, ARGV[1])
if failed then return 'failed' end
return 'new'
`;

// KEYS: payload, backlog bytes, backlog sizes, backlog expiry, uploaded
// ARGV: id, uploaded marker TTL sec (0 = do not mark)
const DONE = `${RELEASE}
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[5], '1', 'EX', ARGV[2]) end
redis.call('DEL', KEYS[1])
release(KEYS[3], KEYS[4], KEYS[2], ARGV[1])
return 1
`;

interface Scripts {
  icTee(...args: (string | number | Buffer)[]): Promise<TeeResult>;
  icDone(...args: (string | number)[]): Promise<number>;
}

export class PayloadStore {
  private readonly redis: Redis & Scripts;

  constructor(
    redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    if (!(redis as Partial<Scripts>).icTee) {
      redis.defineCommand('icTee', { numberOfKeys: 7, lua: TEE });
      redis.defineCommand('icDone', { numberOfKeys: 5, lua: DONE });
    }
    this.redis = redis as Redis & Scripts;
  }

  /** Dedup checks and, when the image needs uploading, writes its bytes: one atomic round trip. */
  tee(id: string, bytes: Buffer, opts: { ttlSec: number; orphanAgeSec: number; backlogMaxBytes: number; jobState: JobState }): Promise<TeeResult> {
    const k = this.keys;
    return this.redis.icTee(
      k.uploaded(id), k.payload(id), k.backlogBytes(), k.backlogSizes(), k.backlogExpiry(), k.job(id), k.failed(),
      id, bytes, opts.ttlSec, opts.orphanAgeSec, opts.backlogMaxBytes, opts.jobState,
    );
  }

  read(id: string): Promise<Buffer | null> {
    return this.redis.getBuffer(this.keys.payload(id));
  }

  /** The image is in the bucket: remember it for `uploadedTtlSec`, drop its bytes. */
  async uploaded(id: string, uploadedTtlSec: number): Promise<void> {
    await this.done(id, uploadedTtlSec);
  }

  /** Drops bytes nobody will upload: they do not match their job, or their job could not be added. */
  async discard(id: string): Promise<void> {
    await this.done(id, 0);
  }

  private async done(id: string, uploadedTtlSec: number): Promise<void> {
    const k = this.keys;
    await this.redis.icDone(k.payload(id), k.backlogBytes(), k.backlogSizes(), k.backlogExpiry(), k.uploaded(id), id, uploadedTtlSec);
  }

  /** Bytes currently counted as waiting for upload. */
  async backlogBytes(): Promise<number> {
    return Number((await this.redis.get(this.keys.backlogBytes())) ?? 0);
  }
}
