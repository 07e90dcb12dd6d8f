import '@imgproxy-cache/shared/require-node';
import { BucketClient, configOrExit, createLogger, exitOnSignal, runMain, StartupError, tuneGarbageCollection } from '@imgproxy-cache/shared';
import { lowerPriority } from './priority.js';
import { S3ObjectStore } from './s3-store.js';
import { type RunningUploader, startUploader } from './uploader.js';

// Entry point of one upload worker. Run as many as you like: nothing in them is per-instance.

/** S3 error codes that mean the keys themselves are wrong. */
const REFUSED_KEYS = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'InvalidToken', 'ExpiredToken', 'CredentialsError']);

tuneGarbageCollection();

async function main(): Promise<void> {
  const config = configOrExit(process.env, 'uploader');
  const logger = createLogger('uploader', config.logLevel);
  if (config.uploader.nice > 0) {
    const { failed } = lowerPriority(config.uploader.nice);
    if (failed.length > 0) logger.warn({ nice: config.uploader.nice, failed }, 'Could not lower the CPU priority of some threads (UPLOAD_NICE)');
  }
  const client = new BucketClient(config.s3, { connections: config.uploader.concurrency });
  const store = new S3ObjectStore(client, config.s3.folder);

  // A bucket that does not exist is a configuration error. Keys S3 refuses are said at once (and
  // /readyz fails until they work); S3 down is left to the uploads, which retry.
  const probe = await store.probe();
  if (probe.code === 'NoSuchBucket') {
    throw new StartupError(`S3_BUCKET "${config.s3.bucket}" does not exist at S3_ENDPOINT ${config.s3.endpoint}`);
  }
  if (!probe.ok) {
    const why = REFUSED_KEYS.has(probe.code ?? '') ? 'S3 refuses the credentials' : 'Could not check the bucket at start; uploads will retry';
    logger.warn({ bucket: config.s3.bucket, endpoint: config.s3.endpoint, code: probe.code, err: probe.message }, `${why} (${probe.code})`);
  }

  // Signals are handled from here on, also while waiting for Redis at start.
  const starting = new AbortController();
  let uploader: RunningUploader | undefined;
  exitOnSignal(logger, { stopping: 'Shutting down: finishing uploads in flight', stopped: 'Uploader stopped' }, async () => {
    starting.abort();
    await uploader?.close(config.shutdownTimeoutMs);
    await client.close();
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
