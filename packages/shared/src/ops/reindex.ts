import type { SourceIndex } from '../redis/source-index.js';
import type { BucketClient } from '../s3/bucket.js';
import { listKeys } from '../s3/list.js';

// Rebuilding the source index from the bucket (`npm run reindex`): for buckets filled before the
// index existed, or after a Redis was lost. Every object under S3_FOLDER/ is listed, and a HEAD
// reads the source tag the uploader stored with it (x-amz-meta-source-tag); objects stored before
// the uploaders wrote tags have none, and are counted.

export interface ReindexProgress {
  listed: number;
  looked: number;
  indexed: number;
  untagged: number;
  failed: number;
}

export async function reindex(options: {
  bucket: BucketClient;
  folder: string;
  index: SourceIndex;
  concurrency: number;
  onProgress?: (progress: ReindexProgress) => void;
}): Promise<ReindexProgress> {
  const { bucket, folder, index } = options;
  const progress: ReindexProgress = { listed: 0, looked: 0, indexed: 0, untagged: 0, failed: 0 };
  const keys = (await listKeys(bucket, folder, Number.POSITIVE_INFINITY, (page) => {
    progress.listed += page.length;
    options.onProgress?.(progress);
  }))!;
  let next = 0;
  const one = async (objectKey: string) => {
    const cacheKey = objectKey.slice(folder.length);
    if (!/^[0-9a-f]{32}$/.test(cacheKey)) return; // not one of ours
    try {
      const info = await bucket.headObject(objectKey);
      const tag = info?.metadata['source-tag'];
      if (info === undefined) progress.failed += 1;
      else if (typeof tag === 'string' && /^[0-9a-f]{32}$/.test(tag)) {
        await index.addTag(tag, cacheKey);
        progress.indexed += 1;
      } else progress.untagged += 1;
    } catch {
      progress.failed += 1;
    }
    progress.looked += 1;
  };
  await Promise.all(
    Array.from({ length: Math.max(1, options.concurrency) }, async () => {
      while (next < keys.length) {
        await one(keys[next++]!);
        if (progress.looked % 500 === 0) options.onProgress?.(progress);
      }
    }),
  );
  return progress;
}
