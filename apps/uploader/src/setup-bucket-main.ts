import '@imgproxy-cache/shared/require-node';
import { BucketClient, configOrExit, runMain, S3OperationError } from '@imgproxy-cache/shared';
import { SetupError, setupBucket } from './setup-bucket.js';

// `docker run IMAGE setup-bucket` (the compose file's s3-init): the bucket for a local S3 server
// (setup-bucket.ts). Exit 0 when the bucket is ready, 1 with one line when S3 refuses or does not
// answer, 2 for bad configuration.

async function main(): Promise<void> {
  const config = configOrExit(process.env, 'setup-bucket');
  const { bucket, folder, endpoint, region, requestTimeoutMs } = config.s3;
  const client = new BucketClient(config.s3, { sockets: 1 });
  const say = (line: string) => console.log(`imgproxy-cache setup-bucket: ${line} (${endpoint})`);
  try {
    await setupBucket(client, { bucket, folder, region, waitMs: requestTimeoutMs, say });
  } catch (error) {
    if (error instanceof SetupError || error instanceof S3OperationError) {
      console.error(`imgproxy-cache setup-bucket: ${error.message} (S3_ENDPOINT ${endpoint}, S3_BUCKET ${bucket})`);
      process.exitCode = 1;
      return;
    }
    throw error;
  } finally {
    client.close();
  }
}

runMain('setup-bucket', main);
