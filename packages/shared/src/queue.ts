import type { JobsOptions } from 'bullmq';
import type { Config } from './config.js';

// The contract between the proxy (producer) and the uploaders (consumers). Types only from BullMQ:
// the proxy never loads it (its jobs are made by the uploaders, apps/uploader/src/upload-queue.ts).

/** Job payload: metadata only. The bytes live in their own Redis key (see redis-keys.ts). */
export interface UploadJobData {
  /** lowercase hex MD5 of the raw request path; also the job id */
  cacheKey: string;
  /** the raw request path, for logs and the dashboard */
  path: string;
  contentType: string | null;
  cacheControl: string | null;
  contentDisposition: string | null;
  /** byte length of the teed body */
  size: number;
  /**
   * CRC-32 of the body (8 lowercase hex digits), checked before upload. CRC-32 rather than MD5
   * because the proxy computes it on every cached response (five times cheaper); the uploader
   * computes the MD5 for Content-MD5 itself.
   */
  crc32: string;
  /** epoch milliseconds when the proxy finished receiving the body */
  receivedAt: number;
  /** X-Request-ID of the request that teed the bytes, for following one image through the logs */
  requestId?: string;
}

export const UPLOAD_JOB_NAME = 'upload';

/**
 * Job options, set by the uploader that makes the job from the intake. `jobId` = cache key makes BullMQ ignore a second add for the
 * same image while the first exists in any state; completed jobs are removed at once (the
 * `uploaded:` marker takes over the dedup), failed ones are kept for the dashboard.
 */
export function uploadJobOptions(config: Config, cacheKey: string): JobsOptions {
  return {
    jobId: cacheKey,
    attempts: config.queue.attempts,
    backoff: { type: 'exponential', delay: config.queue.backoffMs, jitter: 0.5 },
    removeOnComplete: true,
    removeOnFail: { age: config.queue.failedRetentionSec },
  };
}
