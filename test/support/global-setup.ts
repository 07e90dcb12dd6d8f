import type { TestProject } from 'vitest/node';
import { startTestRedis } from './redis-server.js';
import { startS3rver } from './s3.js';

// One Redis and one s3rver for the whole run; every test isolates itself with its own queue
// name (hence its own Redis keys) and its own bucket.

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    s3rverPort: number;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const redis = await startTestRedis();
  const s3 = await startS3rver();
  project.provide('redisUrl', redis.url);
  project.provide('s3rverPort', s3.port);
  return async () => {
    await s3.stop();
    await redis.stop();
  };
}
