import type { TestProject } from 'vitest/node';
import { startTestRedis } from './redis-server.js';
import { haveRgw, startRgw, type TestRgw } from './rgw.js';
import { startS3rver } from './s3.js';

// One Redis, one s3rver and one Ceph RGW for the whole run; every test isolates itself with its own
// queue name (hence its own Redis keys) and its own bucket. RGW is the real S3 server the S3-facing
// tests also run against: without Ceph's packages its tests are skipped with a warning, except in
// CI, where .ci/run installs them and their absence is an error.

export interface RgwTarget {
  endpoint: string;
  port: number;
  accessKeyId: string;
  secretAccessKey: string;
  version: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    s3rverPort: number;
    /** null where Ceph's packages are missing (outside CI) */
    rgw: RgwTarget | null;
  }
}

async function rgwIfThere(): Promise<TestRgw | undefined> {
  if (haveRgw()) return startRgw();
  if (process.env.CI) throw new Error('Ceph RGW is missing (radosgw, ceph-mon, ceph-osd, ceph-common): .ci/run installs them');
  console.warn('Ceph RGW is not installed (apt-get install radosgw ceph-mon ceph-osd ceph-common): the tests against a real S3 server are skipped');
  return undefined;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const [redis, s3, rgw] = await Promise.all([startTestRedis(), startS3rver(), rgwIfThere()]);
  project.provide('redisUrl', redis.url);
  project.provide('s3rverPort', s3.port);
  project.provide(
    'rgw',
    rgw
      ? {
          endpoint: rgw.endpoint,
          port: rgw.port,
          accessKeyId: rgw.credentials.accessKeyId,
          secretAccessKey: rgw.credentials.secretAccessKey,
          version: rgw.version,
        }
      : null,
  );
  return async () => {
    await rgw?.stop();
    await s3.stop();
    await redis.stop();
  };
}
