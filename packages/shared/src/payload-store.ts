import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { RedisKeys } from './redis-keys.js';
import { INTAKE_PUSH_LUA } from './intake.js';
import type { UploadJobData } from './queue.js';

// The teed bytes in Redis, and their accounting. Every change to a payload goes through one of the
// scripts below, so that the backlog counter (the bytes waiting for upload, bounded by
// CACHE_BACKLOG_MAX_BYTES) stays exact: a payload is counted when written and uncounted when
// uploaded, discarded, replaced or expired (expired ones are swept by the next tee).

export type TeeResult =
  | 'uploaded' // the image was uploaded recently
  | 'already-queued' // a job for it exists and has not failed
  | 'pending' // its bytes are teed and its job is about to be created
  | 'backlog-full' // CACHE_BACKLOG_MAX_BYTES reached
  | 'lost' // the staged bytes were not there (their SET failed): nothing written
  | 'failed' // bytes written; the image's earlier job had failed and will be replaced
  | 'new'; // bytes written; its job will be created

/**
 * 'check': the bytes share the queue's Redis, and the tee script does everything: the dedup checks
 * against the intake and the job, and the intake entry. Otherwise (PAYLOAD_REDIS_URL) what the
 * queue's Redis said of the image's job ('none' or 'failed'); the caller pushes the intake entry.
 */
export type JobState = 'check' | 'none' | 'failed';

/**
 * Staged bytes that no script claimed (the script failed, or the producer died in between) expire
 * after this. They are not counted in the backlog, so this is kept short: the script normally runs
 * right behind the SET, and a producer gives up after ENQUEUE_TIMEOUT_MS anyway.
 */
const STAGED_TTL_SEC = 15;

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

// KEYS: uploaded, payload, backlog bytes, backlog sizes, backlog expiry, job hash, failed set, staged,
//       intake list, intake entries
// ARGV: id, ttl sec, orphan age sec, backlog max, job state, the job's data as JSON ('check' only)
//
// The bytes arrive by a plain SET of the staged key just before this script runs, never as a
// script argument: Redis copies a script's arguments into Lua strings, which made the tee three
// times as expensive as the SET itself (bench/PROFILE.md). The script then keeps them (RENAME,
// O(1)) or drops them. With 'check', it also records the image on the intake, in the same atomic
// step as the bytes: an uploader makes the job (intake.ts).
const TEE = `${RELEASE}${INTAKE_PUSH_LUA}
local function drop(result)
  redis.call('DEL', KEYS[8])
  return result
end
if redis.call('EXISTS', KEYS[1]) == 1 then return drop('uploaded') end
local check = ARGV[5] == 'check'
local failed = ARGV[5] == 'failed'
if check then
  if redis.call('HEXISTS', KEYS[10], ARGV[1]) == 1 then return drop('pending') end
  if redis.call('EXISTS', KEYS[6]) == 1 then
    if redis.call('ZSCORE', KEYS[7], ARGV[1]) then failed = true else return drop('already-queued') end
  end
elseif not failed then
  -- bytes whose intake entry is not written yet (it is, in the queue's Redis, right after this
  -- script), or never will be (that producer died in between)
  local ttl = redis.call('TTL', KEYS[2])
  if ttl > 0 and (tonumber(ARGV[2]) - ttl) < tonumber(ARGV[3]) then return drop('pending') end
end
local size = redis.call('STRLEN', KEYS[8])
if size == 0 then return 'lost' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 100)) do
  release(KEYS[4], KEYS[5], KEYS[3], gone)
end
release(KEYS[4], KEYS[5], KEYS[3], ARGV[1])
if tonumber(redis.call('GET', KEYS[3]) or '0') + size > tonumber(ARGV[4]) then return drop('backlog-full') end
redis.call('RENAME', KEYS[8], KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('INCRBY', KEYS[3], size)
redis.call('HSET', KEYS[4], ARGV[1], size)
redis.call('ZADD', KEYS[5], now + tonumber(ARGV[2]) * 1000, ARGV[1])
if check then intake_push(KEYS[9], KEYS[10], ARGV[1], failed, ARGV[6]) end
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
  icTee(...args: (string | number)[]): Promise<TeeResult>;
  icDone(...args: (string | number)[]): Promise<number>;
}

/** Staged keys of concurrent tees of one image, from any proxy, must differ. */
const ATTEMPT_PREFIX = `${randomBytes(6).toString('hex')}-`;

export class PayloadStore {
  private readonly redis: Redis & Scripts;
  private attempts = 0;

  constructor(
    redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    if (!(redis as Partial<Scripts>).icTee) {
      redis.defineCommand('icTee', { numberOfKeys: 10, lua: TEE });
      redis.defineCommand('icDone', { numberOfKeys: 5, lua: DONE });
    }
    this.redis = redis as Redis & Scripts;
  }

  /**
   * Dedup checks and, when the image needs uploading, its bytes: one round trip carrying a SET of
   * the bytes under a key of their own and the script that keeps or drops them. Both are written
   * in the same tick on one connection, so Redis runs them in that order. With jobState 'check',
   * a kept image is also on the intake when this resolves.
   */
  async tee(
    data: UploadJobData,
    bytes: Buffer,
    opts: { ttlSec: number; orphanAgeSec: number; backlogMaxBytes: number; jobState: JobState },
  ): Promise<TeeResult> {
    const k = this.keys;
    const id = data.cacheKey;
    const staged = k.staged(id, `${ATTEMPT_PREFIX}${(this.attempts++).toString(36)}`);
    const [, result] = await Promise.all([
      this.redis.set(staged, bytes, 'EX', STAGED_TTL_SEC),
      this.redis.icTee(
        k.uploaded(id), k.payload(id), k.backlogBytes(), k.backlogSizes(), k.backlogExpiry(), k.job(id), k.failed(), staged,
        k.intake(), k.intakeEntries(),
        id, opts.ttlSec, opts.orphanAgeSec, opts.backlogMaxBytes, opts.jobState, opts.jobState === 'check' ? JSON.stringify(data) : '',
      ),
    ]);
    return result;
  }

  read(id: string): Promise<Buffer | null> {
    return this.redis.getBuffer(this.keys.payload(id));
  }

  /** Whether the image was uploaded recently (its `uploaded:` marker is set). */
  async isUploaded(id: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.uploaded(id))) === 1;
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
