import { BucketClient, type Logger, StartupError, type UploaderConfig } from '@imgproxy-cache/shared';
import { lowerPriority } from './priority.js';
import { S3ObjectStore } from './s3-store.js';
import { type RunningUploader, startUploader } from './uploader.js';

// The uploader as a service: its bucket checked, its CPU priority lowered, its workers started.
// Run by its own process (index.ts), or inside `npm start`'s with the proxy (UPLOADER_IN_PROXY).

/** S3 error codes that mean the keys themselves are wrong. */
const REFUSED_KEYS = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'InvalidToken', 'ExpiredToken', 'CredentialsError']);

export interface UploaderService {
  uploader: RunningUploader;
  /** finishes the uploads in flight (at most `timeoutMs`), then closes the S3 client */
  close(timeoutMs: number): Promise<void>;
}

export interface UploaderServiceOptions {
  /** aborts the wait for Redis at start: the promise then resolves undefined */
  signal: AbortSignal;
  /** UPLOAD_NICE applies to every thread of the process: not when the proxy shares it */
  ownProcess: boolean;
}

export async function startUploaderService(config: UploaderConfig, logger: Logger, options: UploaderServiceOptions): Promise<UploaderService | undefined> {
  if (options.ownProcess && config.uploader.nice > 0) {
    const { failed } = lowerPriority(config.uploader.nice);
    if (failed.length > 0) logger.warn({ nice: config.uploader.nice, failed }, 'Could not lower the CPU priority of some threads (UPLOAD_NICE)');
  }
  const client = new BucketClient(config.s3, { sockets: config.uploader.concurrency });
  const store = new S3ObjectStore(client, config.s3.folder);

  // A bucket that does not exist is a configuration error. Keys S3 refuses are said at once (and
  // /readyz fails until they work); S3 down is left to the uploads, which retry.
  const probe = await store.probe();
  if (probe.code === 'NoSuchBucket') {
    client.close();
    throw new StartupError(`S3_BUCKET "${config.s3.bucket}" does not exist at S3_ENDPOINT ${config.s3.endpoint}`);
  }
  // a bucket that answers elsewhere for good: every upload would be refused
  if (probe.code === 'PermanentRedirect') {
    client.close();
    throw new StartupError(probe.message ?? 'S3 redirects the bucket: set S3_ENDPOINT and S3_REGION to its own');
  }
  if (!probe.ok) {
    const why = REFUSED_KEYS.has(probe.code ?? '') ? 'S3 refuses the credentials' : 'Could not check the bucket at start; uploads will retry';
    logger.warn({ bucket: config.s3.bucket, endpoint: config.s3.endpoint, code: probe.code, err: probe.message }, `${why} (${probe.code})`);
  }

  let uploader: RunningUploader;
  try {
    uploader = await startUploader({ config, store, logger, signal: options.signal });
  } catch (error) {
    client.close();
    if (options.signal.aborted) return undefined; // stopped before Redis answered
    throw error;
  }
  logger.info(
    {
      queue: config.queue.name,
      bucket: config.s3.bucket,
      folder: config.s3.folder,
      concurrency: config.uploader.concurrency,
      nice: options.ownProcess ? config.uploader.nice : 0,
    },
    'Uploader started',
  );
  return {
    uploader,
    async close(timeoutMs) {
      await uploader.close(timeoutMs);
      client.close();
    },
  };
}
