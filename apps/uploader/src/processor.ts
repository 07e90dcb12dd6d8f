import { createHash } from 'node:crypto';
import { UnrecoverableError, type Job } from 'bullmq';
import { crc32Of, objectKeyOf, type Logger, type PayloadStore, type UploadJobData } from '@imgproxy-cache/shared';
import { S3OperationError, type ObjectStore, type PutRequest, type StoredObject } from './s3-writer.js';

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
  /** S3_CONDITIONAL_WRITES: create with If-None-Match: *, look at the object only when it exists */
  conditionalWrites: boolean;
  logger: Logger;
  /** S3 asked us to slow down: pause the whole queue and put this job back without an attempt */
  throttle: (error: S3OperationError) => Promise<Error>;
}

export function createProcessor(deps: ProcessorDeps) {
  const { payloads, store, logger } = deps;

  /**
   * The object may exist: identical bytes are left alone; different ones (imgproxy's output
   * changed since) are replaced, and said so. Without conditional writes, a new object is written
   * here too.
   */
  async function settleExisting(path: string, object: Omit<PutRequest, 'ifAbsent'>, existing: StoredObject | undefined): Promise<UploadResult> {
    if (existing && (existing.md5 ? existing.md5 === object.md5 : existing.size === object.body.length)) return 'already-present';
    if (existing) {
      logger.warn(
        { path, bucket: store.bucket, key: object.key, oldSize: existing.size, oldMd5: existing.md5, newSize: object.body.length, newMd5: object.md5 },
        'Replacing an object that holds different bytes for the same path (imgproxy output changed)',
      );
    }
    // Conditional when nothing was there, so that a concurrent writer is never overwritten.
    const put = await store.put({ ...object, ifAbsent: deps.conditionalWrites && existing === undefined });
    return put === 'written' ? 'uploaded' : 'already-present';
  }

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
    if (bytes === null && (await payloads.isUploaded(data.cacheKey))) {
      // This job ran before and finished its upload, but its uploader lost the job's lock before
      // it could say so (a stalled event loop), and BullMQ handed the job out again.
      logger.info({ path: data.path, key: objectKeyOf(deps.folder, data.cacheKey), attempt: job.attemptsMade + 1, requestId: data.requestId }, 'Already in S3, not written again');
      return 'already-present';
    }
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
    const object = { key, body: bytes, contentType: data.contentType, cacheControl: data.cacheControl, contentDisposition: data.contentDisposition, md5: digest };
    let result: UploadResult;
    if (deps.conditionalWrites) {
      // The common case, a new image, costs one request: a create that S3 refuses (412) when the
      // object is already there. Only then is it looked at.
      const put = await store.put({ ...object, ifAbsent: true });
      result = put === 'written' ? 'uploaded' : await settleExisting(data.path, object, await store.head(key));
    } else {
      result = await settleExisting(data.path, object, await store.head(key));
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
