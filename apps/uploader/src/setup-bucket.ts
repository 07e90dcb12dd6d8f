import { setTimeout as sleep } from 'node:timers/promises';
import { type BucketClient, S3OperationError } from '@imgproxy-cache/shared';

// The bucket the compose file's local S3 server needs before anything is stored: created when it
// is missing, and its S3_FOLDER opened to anonymous reads with a bucket policy, because pages load
// images straight from the bucket (the README's flow). Run again, it changes nothing. Real
// providers have their own ways (and public-access blocks) for both: this is for local servers.

export interface BucketSetup {
  bucket: string;
  /** S3_FOLDER, normalised ('' or 'processed/') */
  folder: string;
  region: string;
  /** how long S3 may take to answer at all */
  waitMs: number;
  /** one line per step */
  say: (line: string) => void;
}

export class SetupError extends Error {
  override readonly name = 'SetupError';
}

/** The policy that lets anyone GET the objects under `folder` (and nothing else). */
export function publicReadPolicy(bucket: string, folder: string): string {
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'ImgproxyCachePublicRead',
        Effect: 'Allow',
        Principal: '*',
        Action: ['s3:GetObject'],
        Resource: [`arn:aws:s3:::${bucket}/${folder}*`],
      },
    ],
  });
}

export async function setupBucket(client: BucketClient, { bucket, folder, region, waitMs, say }: BucketSetup): Promise<'created' | 'existed'> {
  const status = await headBucket(client, waitMs, say);
  if (status === 403) throw new SetupError(`S3 refuses HeadBucket for ${bucket} (403): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`);
  if (status >= 300 && status < 400)
    throw new SetupError(`S3 redirects bucket ${bucket} (${status}): it is in another region than S3_REGION=${region}, or behind another S3_ENDPOINT`);
  let outcome: 'created' | 'existed' = 'existed';
  if (status === 404) {
    try {
      await client.createBucket(region);
      outcome = 'created';
    } catch (error) {
      // created meanwhile by another run: fine; owned by someone else: not
      if (!(error instanceof S3OperationError && error.code === 'BucketAlreadyOwnedByYou')) throw error;
    }
  } else if (status !== 200) {
    throw new SetupError(`HeadBucket ${bucket} answered ${status}`);
  }
  say(outcome === 'created' ? `created bucket ${bucket}` : `bucket ${bucket} exists`);
  await client.putBucketPolicy(publicReadPolicy(bucket, folder));
  say(`anyone may read ${bucket}/${folder}* (bucket policy)`);
  return outcome;
}

/** HeadBucket's status, once S3 answers at all; network errors are waited out for `waitMs`. */
async function headBucket(client: BucketClient, waitMs: number, say: (line: string) => void): Promise<number> {
  const deadline = Date.now() + waitMs;
  let waiting = false;
  for (;;) {
    try {
      return await client.headBucket(AbortSignal.timeout(Math.max(100, Math.min(5_000, deadline - Date.now()))));
    } catch (error) {
      if (!(error instanceof S3OperationError)) throw error;
      if (Date.now() >= deadline) throw new SetupError(`S3 did not answer within ${waitMs} ms (S3_REQUEST_TIMEOUT_MS): ${error.message}`);
      if (!waiting) say(`waiting for S3 (${error.code})`);
      waiting = true;
      await sleep(500);
    }
  }
}
