import { HeadBucketCommand, S3ServiceException } from '@aws-sdk/client-s3';
import { ConfigError, createLogger, loadConfig } from '@imgproxy-cache/shared';
import { S3ObjectStore, createS3Client } from './s3-writer.js';
import { startUploader } from './uploader.js';

// Entry point of one upload worker. Run as many as you like: nothing in them is per-instance.

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env, 'uploader');
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`imgproxy-cache uploader: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger('uploader', config.logLevel);
  const client = createS3Client(config);

  // A bucket that does not exist is a configuration error; anything else (S3 down, a key allowed
  // to put but not to list) is left to the uploads themselves, which retry.
  try {
    await client.send(new HeadBucketCommand({ Bucket: config.s3.bucket }), { abortSignal: AbortSignal.timeout(config.s3.requestTimeoutMs) });
  } catch (error) {
    const status = error instanceof S3ServiceException ? error.$metadata?.httpStatusCode : undefined;
    if (status === 404) {
      logger.fatal({ bucket: config.s3.bucket, endpoint: config.s3.endpoint }, `S3_BUCKET "${config.s3.bucket}" does not exist at S3_ENDPOINT ${config.s3.endpoint}`);
      process.exitCode = 2;
      return;
    }
    logger.warn({ bucket: config.s3.bucket, status, err: (error as Error).message }, 'Could not check the bucket at start; uploads will retry');
  }

  const store = new S3ObjectStore(client, config.s3.bucket, config.s3.requestTimeoutMs);
  const uploader = await startUploader({ config, store, logger });
  logger.info(
    { queue: config.queue.name, bucket: config.s3.bucket, folder: config.s3.folder, concurrency: config.uploader.concurrency },
    'Uploader started',
  );

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'Shutting down: finishing uploads in flight');
    uploader.close(config.shutdownTimeoutMs).then(
      () => {
        client.destroy();
        logger.info('Uploader stopped');
        process.exit(0);
      },
      (error: Error) => {
        logger.error({ err: error.message }, 'Error while shutting down');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main().catch((error: Error) => {
  console.error(`imgproxy-cache uploader: ${error.stack ?? error.message}`);
  process.exit(1);
});
