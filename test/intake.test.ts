import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { Intake, cacheKeyOf, createLogger, loadConfig, redisKeys, type UploadJobData } from '@imgproxy-cache/shared';
import { startUploader, type RunningUploader } from '../apps/uploader/src/uploader.js';
import type { UploadResult } from '../apps/uploader/src/processor.js';
import { S3ObjectStore, createS3Client } from '../apps/uploader/src/s3-writer.js';
import { S3RVER_CREDENTIALS } from './support/s3.js';
import { startStack, type Stack } from './support/stack.js';

// The proxy records each teed image on the intake; the uploaders turn the intake into BullMQ jobs.
// Several uploaders share it, and one that dies halfway loses nothing.

let stack: Stack | undefined;
const uploaders: RunningUploader[] = [];
afterEach(async (ctx) => {
  if (ctx.task.result?.state === 'fail' && stack) console.log('logs', JSON.stringify(stack.logs), 'outcomes', stack.outcomes);
  await Promise.all(uploaders.splice(0).map((u) => u.close(2_000)));
  await stack?.stop();
  stack = undefined;
});

type Results = Map<string, (UploadResult | 'failed')[]>;

async function addUploader(s: Stack, results: Results, intakeRescanMs?: number): Promise<RunningUploader> {
  const config = loadConfig(
    {
      REDIS_URL: s.config.redisUrl,
      QUEUE_NAME: s.config.queue.name,
      S3_BUCKET: s.bucket,
      S3_ENDPOINT: s.tap.endpoint,
      S3_REGION: 'us-east-1',
      METRICS_BIND: 'off',
      UPLOAD_NICE: '0',
    },
    'uploader',
  );
  const uploader = await startUploader({
    config,
    store: new S3ObjectStore(createS3Client(config, { credentials: S3RVER_CREDENTIALS }), s.bucket, 10_000),
    logger: createLogger(
      'uploader',
      'debug',
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          for (const line of chunk.toString().split('\n')) if (line) s.logs.push(JSON.parse(line) as Record<string, unknown>);
          done();
        },
      }),
    ),
    onResult: (result, job: UploadJobData) => results.set(job.cacheKey, [...(results.get(job.cacheKey) ?? []), result]),
    intakeRescanMs,
  });
  uploaders.push(uploader);
  return uploader;
}

describe('the intake', () => {
  it('is shared by several uploaders: every image becomes one job and is uploaded once', async () => {
    const s = (stack = await startStack({ noUploader: true, env: { CACHE_RECENT_KEYS: '0' } }));
    const results: Results = new Map();
    await addUploader(s, results);
    await addUploader(s, results);
    await addUploader(s, results);
    const paths = Array.from({ length: 60 }, (_, i) => `/sig/shared/plain/https://example.com/${i}.jpg@png`);
    // each image twice at once: one tee, the other 'pending' or later 'already-queued'/'uploaded'
    await Promise.all([...paths, ...paths].map((p) => s.get(p)));
    for (const p of paths) await s.waitForObject(p);
    await s.drained();

    const queued = s.outcomes.filter((o) => o.outcome === 'queued').map((o) => o.path);
    expect(queued.sort()).toEqual([...paths].sort());
    // one job per image: a second job for an image would have run and found it already present
    for (const p of paths) expect(results.get(cacheKeyOf(p)), p).toEqual(['uploaded']);
    expect(await s.queue.getJobCounts('failed')).toEqual({ failed: 0 });
    const keys = redisKeys(s.config.queue.name);
    expect(await s.redis.exists(keys.intake(), keys.intakeEntries(), keys.intakeClaimed())).toBe(0);
  });

  it('drops an entry it cannot read, without holding back the images claimed with it', async () => {
    const s = (stack = await startStack({ noUploader: true }));
    const keys = redisKeys(s.config.queue.name);
    const bad = 'f'.repeat(32);
    await s.redis.multi().hset(keys.intakeEntries(), bad, '{not json').rpush(keys.intake(), bad).exec();
    const path = '/sig/after-bad/plain/https://example.com/good.jpg@png';
    await s.get(path);
    expect(await s.outcomeOf(path)).toBe('queued');
    expect(await s.redis.llen(keys.intake())).toBe(2); // the bad entry first

    const results: Results = new Map();
    await addUploader(s, results);
    await s.waitForObject(path);
    await s.drained();
    expect(results.get(cacheKeyOf(path))).toEqual(['uploaded']);
    expect(s.logs).toContainEqual(expect.objectContaining({ level: 50, key: bad, msg: expect.stringMatching(/^Dropped an unreadable intake entry/) }));
    expect(await s.redis.exists(keys.intake(), keys.intakeEntries(), keys.intakeClaimed())).toBe(0);
  });

  it('takes over images claimed by an uploader that died before making their jobs', async () => {
    const s = (stack = await startStack({ noUploader: true }));
    const paths = ['/sig/orphan/plain/https://example.com/a.jpg@png', '/sig/orphan/plain/https://example.com/b.jpg@png'];
    for (const p of paths) {
      await s.get(p);
      expect(await s.outcomeOf(p)).toBe('queued');
    }
    // an uploader takes them off the intake, then dies before adding their jobs
    const keys = redisKeys(s.config.queue.name);
    const claimed = await new Intake(s.redis, keys).claim(10);
    expect([...claimed.keys()].sort()).toEqual(paths.map(cacheKeyOf).sort());
    expect(await s.redis.llen(keys.intake())).toBe(0);

    const results: Results = new Map();
    await addUploader(s, results, 100);
    for (const p of paths) await s.waitForObject(p);
    await s.drained();
    expect(s.logs).toContainEqual(expect.objectContaining({ msg: 'Teed images left claimed by an uploader that stopped: creating their jobs', images: 2 }));
    for (const p of paths) expect(results.get(cacheKeyOf(p))).toEqual(['uploaded']);
    expect(await s.redis.exists(keys.intake(), keys.intakeEntries(), keys.intakeClaimed())).toBe(0);
  });
});
