import { createHash } from 'node:crypto';
import {
  decodePayload,
  type JobStates,
  type Logger,
  objectFieldsOfPayload,
  objectKeyOf,
  type PayloadStore,
  sourceTagOfPath,
  type UploadJobData,
} from '@imgproxy-cache/shared';
import { type Job, UnrecoverableError } from 'bullmq';
import { type ObjectStore, type PutRequest, S3OperationError, type StoredObject } from './s3-store.js';

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
  jobs: JobStates;
  /** the image is in the bucket: remember it as uploaded and drop its payload (marker first) */
  markUploaded: (cacheKey: string) => Promise<void>;
  store: ObjectStore;
  folder: string;
  /** S3_CONDITIONAL_WRITES: create with If-None-Match: *, look at the object only when it exists */
  conditionalWrites: boolean;
  /** IMGPROXY_BASE_URL: the prefix of relative sources, for the source tag */
  baseUrl?: string;
  logger: Logger;
  /** an object of `size` bytes was written */
  written?: (size: number) => void;
  /** S3 asked us to slow down: pause the whole queue and put this job back without an attempt */
  throttle: (error: S3OperationError) => Promise<Error>;
}

export function createProcessor(deps: ProcessorDeps) {
  const { payloads, jobs, store, logger } = deps;

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
    const { cacheKey, path } = job.data;
    const stored = await payloads.read(cacheKey);
    if (stored === null && (await jobs.isUploaded(cacheKey))) {
      // This job ran before and finished its upload, but its uploader lost the job's lock before
      // it could say so (a stalled event loop), and BullMQ handed the job out again.
      logger.info(
        { path, key: objectKeyOf(deps.folder, cacheKey), attempt: job.attemptsMade + 1, requestId: job.data.requestId },
        'Already in S3, not written again',
      );
      return 'already-present';
    }
    if (stored === null) {
      throw permanent(
        `Image bytes are gone from Redis: they expired (CACHE_PAYLOAD_TTL_SEC) or were evicted; ` +
          `the next request for the image stores them again and retries this job`,
      );
    }
    const decoded = decodePayload(stored);
    if ('problem' in decoded) {
      await payloads.drop(cacheKey);
      throw permanent(`The image's payload in Redis is unusable: ${decoded.problem}; nothing was written`);
    }
    const { meta, body: bytes } = decoded;
    const digest = createHash('md5').update(bytes).digest('hex');

    const key = objectKeyOf(deps.folder, cacheKey);
    // imgproxy's headers, validators and CSP among them; a payload of an earlier proxy has three
    const objectFields = objectFieldsOfPayload(meta);
    const sourceTag = sourceTagOfPath(path, deps.baseUrl);
    const object = {
      key,
      body: bytes,
      contentType: objectFields.contentType ?? null,
      cacheControl: objectFields.cacheControl ?? null,
      contentDisposition: objectFields.contentDisposition ?? null,
      metadata: sourceTag ? { ...objectFields.metadata, 'source-tag': sourceTag } : objectFields.metadata,
      md5: digest,
    };
    let result: UploadResult;
    if (deps.conditionalWrites) {
      // The common case, a new image, costs one request: a create that S3 refuses (412) when the
      // object is already there. Only then is it looked at.
      const put = await store.put({ ...object, ifAbsent: true });
      result = put === 'written' ? 'uploaded' : await settleExisting(path, object, await store.head(key));
    } else {
      result = await settleExisting(path, object, await store.head(key));
    }
    await deps.markUploaded(cacheKey);

    const fields = {
      path,
      bucket: store.bucket,
      key,
      size: bytes.length,
      durationMs: Date.now() - started,
      attempt: job.attemptsMade + 1,
      requestId: meta.requestId,
    };
    if (result === 'uploaded') {
      deps.written?.(bytes.length);
      logger.info(fields, `Uploaded to S3 path=${path} bucket=${store.bucket} key=${key}`);
    } else {
      logger.info(fields, 'Already in S3, not written again');
    }
    return result;
  }
}
