import { HeadBucketCommand, S3ServiceException } from '@aws-sdk/client-s3';
import { configOrExit, createLogger, exitOnSignal, runMain } from '@imgproxy-cache/shared';
import { lowerPriority } from './priority.js';
import { createS3Client, S3ObjectStore } from './s3-writer.js';
import { type RunningUploader, startUploader } from './uploader.js';

// Entry point of one upload worker. Run as many as you like: nothing in them is per-instance.

async function main(): Promise<void> {
  const config = configOrExit(process.env, 'uploader');
  const logger = createLogger('uploader', config.logLevel);
  if (config.uploader.nice > 0) {
    const { failed } = lowerPriority(config.uploader.nice);
    if (failed.length > 0) logger.warn({ nice: config.uploader.nice, failed }, 'Could not lower the CPU priority of some threads (UPLOAD_NICE)');
  }
  const client = createS3Client(config);

  // A bucket that does not exist is a configuration error; anything else (S3 down, a key allowed
  // to put but not to list) is left to the uploads themselves, which retry.
  try {
    await client.send(new HeadBucketCommand({ Bucket: config.s3.bucket }), { abortSignal: AbortSignal.timeout(config.s3.requestTimeoutMs) });
  } catch (error) {
    const status = error instanceof S3ServiceException ? error.$metadata?.httpStatusCode : undefined;
    if (status === 404) {
      logger.fatal(
        { bucket: config.s3.bucket, endpoint: config.s3.endpoint },
        `S3_BUCKET "${config.s3.bucket}" does not exist at S3_ENDPOINT ${config.s3.endpoint}`,
      );
      process.exitCode = 2;
      return;
    }
    logger.warn({ bucket: config.s3.bucket, status, err: (error as Error).message }, 'Could not check the bucket at start; uploads will retry');
  }

  const store = new S3ObjectStore(client, config.s3.bucket, config.s3.requestTimeoutMs);
  // Signals are handled from here on, also while waiting for Redis at start.
  const starting = new AbortController();
  let uploader: RunningUploader | undefined;
  exitOnSignal(logger, { stopping: 'Shutting down: finishing uploads in flight', stopped: 'Uploader stopped' }, async () => {
    starting.abort();
    await uploader?.close(config.shutdownTimeoutMs);
    client.destroy();
  });
  try {
    uploader = await startUploader({ config, store, logger, signal: starting.signal });
  } catch (error) {
    if (starting.signal.aborted) return; // stopped before Redis answered: exitOnSignal exits
    throw error;
  }
  logger.info(
    { queue: config.queue.name, bucket: config.s3.bucket, folder: config.s3.folder, concurrency: config.uploader.concurrency, nice: config.uploader.nice },
    'Uploader started',
  );
}

runMain('uploader', main);
