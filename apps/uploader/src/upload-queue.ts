import { Queue } from 'bullmq';
import { BULL_PREFIX, type Redis, type UploadJobData } from '@imgproxy-cache/shared';

/** The upload queue on a connection the caller owns (nothing connects here). */
export function createUploadQueue(name: string, connection: Redis): Queue<UploadJobData> {
  return new Queue<UploadJobData>(name, { connection, prefix: BULL_PREFIX });
}
