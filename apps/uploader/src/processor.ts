import { createHash } from 'node:crypto';
import { UnrecoverableError, type Job } from 'bullmq';
import { crc32Of, objectKeyOf, type Logger, type PayloadStore, type UploadJobData } from '@imgproxy-cache/shared';
import { S3OperationError, type ObjectStore } from './s3-writer.js';

// One upload: read the teed bytes, check them against the job, skip what the bucket already
// holds, write the rest with its metadata and Content-MD5, then forget the bytes and remember the
// image as uploaded. Every step is idempotent, so a job that runs twice (a worker killed mid-way,
// a stalled lock) writes nothing wrong.

export type UploadResult = 'uploaded' | 'already-present';

/** A failure no retry can fix, with its reason as its whole trace (it is shown on the dashboard). */
function permanent(reason: string): UnrecoverableError {
  const error = new UnrecoverableError(reason);
  error.stack = `${error.name}: ${reason}`;
  return error;
}

export interface ProcessorDeps {
  payloads: PayloadStore;
  store: ObjectStore;
  folder: string;
  uploadedTtlSec: number;
  logger: Logger;
  /** S3 asked us to slow down: pause the whole queue and put this job back without an attempt */
  throttle: (error: S3OperationError) => Promise<Error>;
}

export function createProcessor(deps: ProcessorDeps) {
  const { payloads, store, logger } = deps;

  return async function processUpload(job: Job<UploadJobData>): Promise<UploadResult> {
    try {
      return await upload(job);
    } catch (error) {
      if (error instanceof S3OperationError && error.throttled) throw await deps.throttle(error);
      throw error;
    }
  };

  async function upload(job: Job<UploadJobData>): Promise<UploadResult> {
    const started = Date.now();
    const data = job.data;
    const bytes = await payloads.read(data.cacheKey);
    if (bytes === null) {
      throw permanent(
        `Image bytes are gone from Redis: they expired (CACHE_PAYLOAD_TTL_SEC) or were evicted ` +
          `(the queue's Redis must run maxmemory-policy noeviction); the next request for the image queues it again`,
      );
    }
    const crc32 = crc32Of(bytes);
    if (bytes.length !== data.size || crc32 !== data.crc32) {
      await payloads.discard(data.cacheKey);
      throw permanent(
        `Image bytes in Redis do not match the job (size ${bytes.length}, crc32 ${crc32}; ` +
          `expected size ${data.size}, crc32 ${data.crc32}); nothing was written`,
      );
    }
    const digest = createHash('md5').update(bytes).digest('hex');

    const key = objectKeyOf(deps.folder, data.cacheKey);
    const existing = await store.head(key);
    let result: UploadResult;
    if (existing && (existing.md5 ? existing.md5 === digest : existing.size === bytes.length)) {
      result = 'already-present';
    } else {
      if (existing) {
        logger.warn(
          { path: data.path, bucket: store.bucket, key, oldSize: existing.size, oldMd5: existing.md5, newSize: bytes.length, newMd5: digest },
          'Replacing an object that holds different bytes for the same path (imgproxy output changed)',
        );
      }
      const put = await store.put({
        key,
        body: bytes,
        contentType: data.contentType,
        cacheControl: data.cacheControl,
        contentDisposition: data.contentDisposition,
        md5: digest,
        ifAbsent: existing === undefined,
      });
      result = put === 'written' ? 'uploaded' : 'already-present';
    }

    // Marked first, in the same script: from here on the proxy skips this image.
    await payloads.uploaded(data.cacheKey, deps.uploadedTtlSec);

    const fields = { path: data.path, bucket: store.bucket, key, size: bytes.length, durationMs: Date.now() - started, attempt: job.attemptsMade + 1, requestId: data.requestId };
    if (result === 'uploaded') {
      logger.info(fields, `Uploaded to S3 path=${data.path} bucket=${store.bucket} key=${key}`);
    } else {
      logger.info(fields, 'Already in S3, not written again');
    }
    return result;
  }
}
