import calculateSlot from 'cluster-key-slot';

// Every Redis key this tool writes, built in one place. Each queue's keys carry a hash tag of
// their own (`bull:{<queue>}:<queue>:…`), so that every BullMQ script and every script of ours
// touches one Redis Cluster slot (BullMQ's `prefix: '{…}'` pattern), and one QUEUE_NAME isolates a
// deployment (or a test) completely. Job ids are our MD5 keys (32 hex digits), so `payload:`,
// `staged:`, `uploaded:` and `backlog:` cannot collide with BullMQ's own keys.

export const BULL_PREFIX = 'bull';

/** The BullMQ prefix of a queue: the queue's own hash tag. */
export function queuePrefix(queueName: string): string {
  return `${BULL_PREFIX}:{${queueName}}`;
}

export interface RedisKeys {
  /** the teed image (payload.ts) waiting for upload */
  payload(cacheKey: string): string;
  /** bytes on their way in, before the tee script keeps or drops them (one per attempt) */
  staged(cacheKey: string, attempt: string): string;
  /** set once the image is in the bucket, so that further requests skip it */
  uploaded(cacheKey: string): string;
  /** BullMQ's hash for the job whose id is the cache key */
  job(cacheKey: string): string;
  /** BullMQ's sorted sets of failed and completed jobs */
  failed(): string;
  completed(): string;
  /** total bytes of payloads waiting for upload */
  backlogBytes(): string;
  /** hash: cache key → payload size, for the backlog total */
  backlogSizes(): string;
  /** sorted set: cache key → when its payload expires (ms), to uncount expired payloads */
  backlogExpiry(): string;
}

export function redisKeys(queueName: string): RedisKeys {
  const base = `${queuePrefix(queueName)}:${queueName}`;
  return {
    payload: (cacheKey) => `${base}:payload:${cacheKey}`,
    staged: (cacheKey, attempt) => `${base}:staged:${cacheKey}:${attempt}`,
    uploaded: (cacheKey) => `${base}:uploaded:${cacheKey}`,
    job: (cacheKey) => `${base}:${cacheKey}`,
    failed: () => `${base}:failed`,
    completed: () => `${base}:completed`,
    backlogBytes: () => `${base}:backlog:bytes`,
    backlogSizes: () => `${base}:backlog:sizes`,
    backlogExpiry: () => `${base}:backlog:expiry`,
  };
}

/** The Redis Cluster slot of a queue's keys (its hash tag). */
export function slotOf(queueName: string): number {
  return calculateSlot(`{${queueName}}`);
}
