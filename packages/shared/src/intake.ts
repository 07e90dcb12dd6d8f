import type { Redis } from 'ioredis';
import type { UploadJobData } from './queue.js';
import type { RedisKeys } from './redis-keys.js';

// The intake: images whose bytes are teed and whose upload job is yet to be created. The proxy
// only records them: inside its tee script when the bytes and the queue share a Redis, with push()
// when PAYLOAD_REDIS_URL keeps the bytes elsewhere. Uploaders turn them into BullMQ jobs
// (apps/uploader/src/intake-pump.ts). BullMQ's add() cost the proxy about 140 µs of CPU per image
// (bench/PROFILE.md); an entry written by the tee script costs it nothing.
//
// An entry lives in a hash (cache key → entry) and its cache key in a list, first in first out.
// While the entry exists, further tees of the image answer 'pending'. An uploader moves keys from
// the list to the claimed list, adds their jobs, then deletes the entries and the claimed keys
// (release). A key left in the claimed list by an uploader that died is picked up by the next scan
// of another (add() is idempotent by job id, so a job is never created twice).

export interface IntakeEntry {
  data: UploadJobData;
  /** the image's earlier job failed: remove it before adding the new one */
  replace: boolean;
}

/** Lua: records an entry (one per image: a second push updates it). */
export const INTAKE_PUSH_LUA = `
local function intake_push(list, entries, id, replace, data)
  local entry = '{"replace":' .. (replace and 'true' or 'false') .. ',"data":' .. data .. '}'
  if redis.call('HSET', entries, id, entry) == 1 then redis.call('RPUSH', list, id) end
end
`;

// KEYS: entries, job hash, failed set. ARGV: id
const CHECK = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'pending' end
if redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 'failed' end
  return 'already-queued'
end
return 'none'
`;

// KEYS: intake, entries. ARGV: id, replace ('1' or '0'), the job's data as JSON
const PUSH = `${INTAKE_PUSH_LUA}
intake_push(KEYS[1], KEYS[2], ARGV[1], ARGV[2] == '1', ARGV[3])
return 1
`;

// KEYS: intake, claimed, entries. ARGV: most keys to take
// Returns id, entry, id, entry, ... Keys without an entry are dropped.
const CLAIM = `
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not id then break end
  local entry = redis.call('HGET', KEYS[3], id)
  if entry then
    out[#out + 1] = id
    out[#out + 1] = entry
  else
    redis.call('LREM', KEYS[2], 1, id)
  end
end
return out
`;

// KEYS: claimed, entries. ARGV: ids
const RELEASE = `
for _, id in ipairs(ARGV) do
  redis.call('LREM', KEYS[1], 1, id)
  redis.call('HDEL', KEYS[2], id)
end
return #ARGV
`;

/** What the queue's Redis knows of an image before its bytes are teed elsewhere. */
export type IntakeCheck = 'pending' | 'already-queued' | 'failed' | 'none';

interface Scripts {
  icIntakeCheck(...args: string[]): Promise<IntakeCheck>;
  icIntakePush(...args: string[]): Promise<number>;
  icIntakeClaim(...args: (string | number)[]): Promise<string[]>;
  icIntakeRelease(...args: string[]): Promise<number>;
}

export class Intake {
  private readonly redis: Redis & Scripts;

  /**
   * `redis` is the queue's Redis. An entry that cannot be read (never written by this tool) is
   * dropped and reported to `onUnreadable`, so that it cannot hold back the images claimed with it.
   */
  constructor(
    redis: Redis,
    private readonly keys: RedisKeys,
    private readonly onUnreadable: (id: string, error: Error) => void = () => undefined,
  ) {
    if (!(redis as Partial<Scripts>).icIntakeClaim) {
      redis.defineCommand('icIntakeCheck', { numberOfKeys: 3, lua: CHECK });
      redis.defineCommand('icIntakePush', { numberOfKeys: 2, lua: PUSH });
      redis.defineCommand('icIntakeClaim', { numberOfKeys: 3, lua: CLAIM });
      redis.defineCommand('icIntakeRelease', { numberOfKeys: 2, lua: RELEASE });
    }
    this.redis = redis as Redis & Scripts;
  }

  /** For PAYLOAD_REDIS_URL: whether the image needs its bytes teed at all. */
  check(id: string): Promise<IntakeCheck> {
    const k = this.keys;
    return this.redis.icIntakeCheck(k.intakeEntries(), k.job(id), k.failed(), id);
  }

  /** For PAYLOAD_REDIS_URL: records an image whose bytes are teed. */
  async push(data: UploadJobData, replace: boolean): Promise<void> {
    const k = this.keys;
    await this.redis.icIntakePush(k.intake(), k.intakeEntries(), data.cacheKey, replace ? '1' : '0', JSON.stringify(data));
  }

  /** Takes up to `max` images off the intake, oldest first, into the claimed list. */
  async claim(max: number): Promise<Map<string, IntakeEntry>> {
    const k = this.keys;
    return this.parse(await this.redis.icIntakeClaim(k.intake(), k.intakeClaimed(), k.intakeEntries(), max));
  }

  /**
   * Waits up to `timeoutSec` for an image on the intake and claims it. `blocking` must be a
   * connection of its own: it is busy for the whole wait.
   */
  async waitAndClaim(blocking: Redis, timeoutSec: number): Promise<Map<string, IntakeEntry>> {
    const k = this.keys;
    const id = await blocking.blmove(k.intake(), k.intakeClaimed(), 'LEFT', 'RIGHT', timeoutSec);
    return id ? this.read([id]) : new Map();
  }

  /** The entries of claimed images (an image whose entry is gone is released). */
  async read(ids: string[]): Promise<Map<string, IntakeEntry>> {
    if (ids.length === 0) return new Map();
    const raw = await this.redis.hmget(this.keys.intakeEntries(), ...ids);
    const found: string[] = [];
    const gone: string[] = [];
    ids.forEach((id, i) => (raw[i] === null ? gone.push(id) : found.push(id, raw[i]!)));
    if (gone.length > 0) await this.release(gone);
    return this.parse(found);
  }

  /** Cache keys in the claimed list right now (at most `max`). */
  claimed(max = 1000): Promise<string[]> {
    return this.redis.lrange(this.keys.intakeClaimed(), 0, max - 1);
  }

  /** The images' jobs exist: forget their entries. */
  async release(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    const k = this.keys;
    await this.redis.icIntakeRelease(k.intakeClaimed(), k.intakeEntries(), ...ids);
  }

  /** Images waiting to become jobs, claimed ones included. */
  size(): Promise<number> {
    return this.redis.hlen(this.keys.intakeEntries());
  }

  /** id, entry, id, entry, ... → a map (unreadable entries are released and reported) */
  private async parse(flat: string[]): Promise<Map<string, IntakeEntry>> {
    const entries = new Map<string, IntakeEntry>();
    const unreadable: string[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      const id = flat[i]!;
      try {
        const entry = JSON.parse(flat[i + 1]!) as IntakeEntry;
        if (entry?.data?.cacheKey !== id || typeof entry.replace !== 'boolean') throw new Error('not an intake entry for this image');
        entries.set(id, entry);
      } catch (error) {
        unreadable.push(id);
        this.onUnreadable(id, error as Error);
      }
    }
    await this.release(unreadable);
    return entries;
  }
}
