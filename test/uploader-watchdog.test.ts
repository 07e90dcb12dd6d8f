import { Writable } from 'node:stream';
import { BucketClient, createLogger } from '@imgproxy-cache/shared';
import { request } from 'undici';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { S3ObjectStore } from '../apps/uploader/src/s3-store.js';
import { type RunningUploader, startUploader } from '../apps/uploader/src/uploader.js';
import { S3RVER_CREDENTIALS } from './support/s3.js';
import { type Stack, startStack } from './support/stack.js';
import { startTcpTap, type TcpTap } from './support/tcp-tap.js';
import { waitFor } from './support/wait.js';

// The uploader's watchdog on real parts: a shard worker whose blocking connection to Redis hangs
// (a relay freezes it, as a failover can leave it) while jobs wait in its queue is restarted on a
// new connection, said so once, counted, and the image lands.

let stack: Stack | undefined;
let tap: TcpTap | undefined;
let uploader: RunningUploader | undefined;
afterEach(async () => {
  tap?.thaw();
  await uploader?.close(2_000);
  await stack?.stop();
  await tap?.close();
  stack = tap = uploader = undefined;
});

describe('the shard watchdog (UPLOAD_STUCK_MS)', () => {
  it('restarts a worker whose blocking connection hangs while its queue holds a job: warned once, counted, the image lands', async () => {
    stack = await startStack({ noUploader: true, env: { UPLOAD_GATHER_MS: '0' } });
    const s = stack;
    tap = await startTcpTap(Number(new URL(inject('redisUrl')).port));
    const logs: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const config = { ...s.uploaderConfig, redisUrl: tap.url, uploader: { ...s.uploaderConfig.uploader, stuckMs: 1_500 } };
    uploader = await startUploader({
      config,
      store: new S3ObjectStore(new BucketClient(config.s3, { credentials: async () => S3RVER_CREDENTIALS }), config.s3.folder),
      logger: createLogger('uploader', 'info', sink),
      watchdogIntervalMs: 200,
    });
    const first = '/sig/plain/https://example.com/before-the-hang.jpg@png';
    await s.get(first);
    await s.waitForObject(first);
    // the uploader's own connection (the first) keeps flowing; the worker's blocking one hangs
    tap.freeze(1);
    const path = '/sig/plain/https://example.com/while-it-hangs.jpg@png';
    await s.get(path);
    await s.waitForObject(path);

    const warnings = logs.filter((l) => String(l.msg).startsWith('A shard worker took none of its waiting jobs'));
    expect(warnings.map((l) => l.queue)).toEqual([s.config.queue.name]);
    const { values } = await uploader.metrics.workerRestarts.get();
    expect(values.map((v) => [v.labels.queue, v.value])).toEqual([[s.config.queue.name, 1]]);
    // ready again once the new worker has taken a job
    const readyz = async () => JSON.parse(await (await request(`http://127.0.0.1:${uploader!.admin!.port}/readyz`)).body.text()).checks;
    await waitFor(async () => (await readyz()).shards === true, { what: '/readyz to count the shard as working again' });
  }, 40_000);
});
