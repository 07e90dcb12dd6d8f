import { type JobsOptions, Queue } from 'bullmq';
import type { Config } from '../config/index.js';
import type { Redis } from '../redis/connect.js';
import { queuePrefix } from './redis-keys.js';

// The contract between the proxy (which makes the upload jobs) and the uploaders (which run
// them). Nothing here connects: the factories take connections their callers own.

/**
 * Job data: what an operator looks for on the dashboard. The bytes, their checksum and headers
 * are in the image's payload (payload.ts), never in the job.
 */
export interface UploadJobData {
  /** lowercase hex MD5 of the raw request path; also the job id */
  cacheKey: string;
  /** the raw request path */
  path: string;
  /** X-Request-ID of the request that made the job */
  requestId?: string;
}

export const UPLOAD_JOB_NAME = 'upload';

/**
 * `jobId` = cache key makes BullMQ ignore a second add for the same image while the first exists
 * in any state; completed jobs are removed at once (the uploaded marker takes over the dedup),
 * failed ones are kept for the dashboard until a new response for the image retries them.
 */
export function uploadJobOptions(queue: Config['queue'], cacheKey: string): JobsOptions {
  return {
    jobId: cacheKey,
    attempts: queue.attempts,
    backoff: { type: 'exponential', delay: queue.backoffMs, jitter: 0.5 },
    removeOnComplete: true,
    removeOnFail: { age: queue.failedRetentionSec },
  };
}

/**
 * The upload queue on a connection the caller owns. Its errors are the connection's, which the
 * caller already reports: the listener here only keeps BullMQ from throwing them.
 */
export function createUploadQueue(name: string, connection: Redis, options: { skipVersionCheck?: boolean } = {}): Queue<UploadJobData> {
  const queue = new Queue<UploadJobData>(name, { connection, prefix: queuePrefix(name), skipVersionCheck: options.skipVersionCheck });
  queue.on('error', () => undefined);
  return queue;
}
