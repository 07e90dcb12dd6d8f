// Every Redis key this tool writes, built in one place. They live under BullMQ's own namespace for
// the queue (`bull:<queue>:`) so that one QUEUE_NAME isolates a deployment (or a test) completely.
// BullMQ's job ids are our MD5 keys (32 hex digits), so `payload:`, `staged:`, `uploaded:` and
// `intake` cannot collide.

export const BULL_PREFIX = 'bull';

export interface RedisKeys {
  /** the teed image bytes waiting for upload */
  payload(cacheKey: string): string;
  /** bytes on their way in, before the tee script decides to keep them (one per attempt) */
  staged(cacheKey: string, attempt: string): string;
  /** set once the image is in the bucket, so that further requests skip it */
  uploaded(cacheKey: string): string;
  /** BullMQ's hash for the job whose id is the cache key */
  job(cacheKey: string): string;
  /** BullMQ's sorted set of failed jobs */
  failed(): string;
  /** total bytes of payloads waiting for upload */
  backlogBytes(): string;
  /** hash: cache key → payload size, for the backlog total */
  backlogSizes(): string;
  /** sorted set: cache key → when its payload expires (ms), to uncount expired payloads */
  backlogExpiry(): string;
  /** list of cache keys whose bytes are teed and whose job an uploader has yet to create */
  intake(): string;
  /** hash: cache key → its intake entry (the job's data, and whether a failed job is to be replaced) */
  intakeEntries(): string;
  /** list of cache keys an uploader took from the intake and is turning into jobs */
  intakeClaimed(): string;
}

export function redisKeys(queueName: string): RedisKeys {
  const base = `${BULL_PREFIX}:${queueName}`;
  return {
    payload: (cacheKey) => `${base}:payload:${cacheKey}`,
    staged: (cacheKey, attempt) => `${base}:staged:${cacheKey}:${attempt}`,
    uploaded: (cacheKey) => `${base}:uploaded:${cacheKey}`,
    job: (cacheKey) => `${base}:${cacheKey}`,
    failed: () => `${base}:failed`,
    backlogBytes: () => `${base}:backlog:bytes`,
    backlogSizes: () => `${base}:backlog:sizes`,
    backlogExpiry: () => `${base}:backlog:expiry`,
    intake: () => `${base}:intake`,
    intakeEntries: () => `${base}:intake:entries`,
    intakeClaimed: () => `${base}:intake:claimed`,
  };
}
