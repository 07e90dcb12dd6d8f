import '@imgproxy-cache/shared/require-node';
import { parseArgs } from 'node:util';
import {
  BucketClient,
  configOrExit,
  connectForRole,
  createLogger,
  type ReindexProgress,
  reindex,
  runMain,
  SourceIndex,
  StartupError,
} from '@imgproxy-cache/shared';

// `npm run reindex`: rebuilds the source index (purge by source) from the bucket, with a progress
// line every few seconds. Exit 0 when every object was read, 1 when some could not be.

async function main(): Promise<void> {
  const config = configOrExit(process.env, 'reindex');
  try {
    parseArgs({ args: process.argv.slice(2), options: {}, strict: true });
  } catch {
    throw new StartupError('usage: npm run reindex (it reads S3_BUCKET, S3_FOLDER and REDIS_URL)');
  }
  const logger = createLogger('reindex', 'warn');
  const redis = connectForRole(config, 'reindex', () => undefined);
  const bucket = new BucketClient(config.s3, { sockets: 16 });
  try {
    await redis.ready(logger, AbortSignal.timeout(10_000)).catch((error: Error) => {
      throw error.name === 'TimeoutError' || error.name === 'AbortError' ? new StartupError('Redis (REDIS_URL) did not answer within 10 s') : error;
    });
    const started = Date.now();
    let last: ReindexProgress | undefined;
    const line = (p: ReindexProgress) =>
      `reindex: ${p.listed} objects listed, ${p.looked} read: ${p.indexed} indexed, ${p.untagged} without a source tag, ${p.failed} unreadable`;
    const ticker = setInterval(() => last && console.error(line(last)), 5_000);
    try {
      const result = await reindex({
        bucket,
        folder: config.s3.folder,
        index: new SourceIndex(redis.redis, config.queue.name),
        concurrency: 16,
        onProgress: (p) => (last = p),
      });
      console.log(`${line(result)} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      if (result.untagged > 0) console.log(`  ${result.untagged} objects were stored before source tags: purge them by path or key, or let them expire`);
      process.exitCode = result.failed > 0 ? 1 : 0;
    } finally {
      clearInterval(ticker);
    }
  } finally {
    redis.disconnect();
    bucket.close();
  }
}

runMain('reindex', () =>
  main().catch((error: Error) => {
    if (error instanceof StartupError) throw error;
    console.error(`imgproxy-cache reindex: ${error.message}`);
    process.exitCode = 1;
  }),
);
