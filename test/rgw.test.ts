import { randomUUID } from 'node:crypto';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { BucketClient, cacheKeyOf, listKeys, loadConfig, reindex, SourceIndex } from '@imgproxy-cache/shared';
import { request } from 'undici';
import { describe, expect, inject, it } from 'vitest';
import { admin } from './support/admin.js';
import { freePort } from './support/free-port.js';
import { createBucket, testS3Client } from './support/s3.js';
import { type Service, spawnService } from './support/service.js';
import { bucketRequests, counter, rendered, xCache } from './support/stack.js';
import { useStack } from './support/use-stack.js';
import { waitFor } from './support/wait.js';

// The S3-facing behaviour against Ceph's RADOS Gateway, a real S3 implementation (the one many
// providers run), where the other suites use s3rver: conditional writes answered by the server
// itself, read-through, bucket truth, purge, listings past 1000 keys, reindex, setup-bucket and its
// policy, storage classes, wrong keys and a missing bucket.

const rgw = inject('rgw');

const services: Service[] = [];
const { start, stop } = useStack({
  defaults: { s3: 'rgw', env: { UPLOAD_GATHER_MS: '0' } },
  beforeStop: () => Promise.all(services.splice(0).map((s) => s.stop())),
});

/** The environment a service process needs to reach RGW. */
function rgwEnv(bucket: string): Record<string, string> {
  return {
    S3_ENDPOINT: rgw!.endpoint,
    S3_BUCKET: bucket,
    S3_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: rgw!.accessKeyId,
    AWS_SECRET_ACCESS_KEY: rgw!.secretAccessKey,
  };
}

describe.skipIf(!rgw)(`against Ceph RGW ${rgw?.version ?? '(not installed)'}`, () => {
  it('stores an image byte-exact with its metadata; an object already there meets RGW’s own 412 and is left alone', async () => {
    const s = await start({ env: { S3_FOLDER: 'processed' } });
    const path = '/sig/rs:fit:300:300/plain/https://example.com/rgw.jpg@png';
    expect((await s.get(path)).status).toBe(200);
    const stored = await s.waitForObject(path);
    expect(stored).toMatchObject({ contentType: 'image/png', cacheControl: 'max-age=31536000, public', contentDisposition: 'inline; filename="image.png"' });
    await s.drained();
    expect(bucketRequests(s, path, 'PUT').map((r) => `${r.method} ${r.status}`)).toEqual(['PUT 200']);

    const there = '/sig/plain/https://example.com/rgw-there.jpg@png';
    await s.s3.send(new PutObjectCommand({ Bucket: s.bucket, Key: s.keyFor(there), Body: s.stub.imageFor(there), ContentType: 'image/png' }));
    await s.get(there);
    await waitFor(() => s.logs.some((l) => l.msg === 'Already in S3, not written again' && l.path === there), { what: 'the upload to find the object' });
    expect(bucketRequests(s, there, 'PUT').map((r) => `${r.method} ${r.status}`)).toEqual(['PUT 412']);
    expect(bucketRequests(s, there, 'HEAD').map((r) => `${r.method} ${r.status}`)).toEqual(['HEAD 200']);
  });

  it('replaces an object holding other bytes after RGW refuses the create, and says so', async () => {
    const s = await start({ env: { CACHE_RECENT_KEYS: '0' } });
    const path = '/sig/plain/https://example.com/rgw-other.jpg@png';
    await s.s3.send(new PutObjectCommand({ Bucket: s.bucket, Key: s.keyFor(path), Body: Buffer.from('old bytes'), ContentType: 'image/png' }));
    await s.get(path);
    await s.waitForObject(path);
    expect(bucketRequests(s, path, 'PUT').map((r) => `${r.method} ${r.status}`)).toEqual(['PUT 412', 'PUT 200']);
    expect(s.logs.some((l) => String(l.msg).startsWith('Replacing an object that holds different bytes'))).toBe(true);
  });

  it('sends S3_STORAGE_CLASS with each upload; a class RGW does not know fails the job with a reason naming the variable', async () => {
    const s = await start({ env: { S3_STORAGE_CLASS: 'STANDARD' } });
    const path = '/sig/plain/https://example.com/rgw-class.jpg@png';
    await s.get(path);
    await s.waitForObject(path);
    expect(s.tap.puts()[0]!.headers['x-amz-storage-class']).toBe('STANDARD');
    await stop();

    const unknown = await start({ env: { S3_STORAGE_CLASS: 'NO_SUCH_CLASS', UPLOAD_ATTEMPTS: '1' } });
    const refused = '/sig/plain/https://example.com/rgw-no-class.jpg@png';
    await unknown.get(refused);
    const reason = await waitFor(
      async () => {
        const job = await unknown.queue.getJob(cacheKeyOf(refused));
        return job && (await job.getState()) === 'failed' ? job.failedReason : undefined;
      },
      { what: 'the upload to fail' },
    );
    // RGW names a class it does not know InvalidArgument (AWS: InvalidStorageClass)
    expect(reason).toBe('PutObject 400 InvalidArgument: no message (S3_STORAGE_CLASS=NO_SUCH_CLASS: the provider may not know it)');
    expect(await unknown.keys()).toEqual([]);
  });

  it('read-through serves a stored image from the bucket (HIT), and a missing object reads as a miss', async () => {
    const s = await start({ env: { CACHE_READ_THROUGH: 'true', CACHE_MEMORY_BYTES: '0' } });
    const path = '/sig/plain/https://example.com/rgw-hit.jpg@png';
    expect(xCache(await s.get(path))).toBe('200 MISS');
    await s.waitForObject(path);
    await s.drained();
    const hit = await s.get(path);
    expect(xCache(hit)).toBe('200 HIT');
    expect(hit.body.equals(s.stub.imageFor(path))).toBe(true);
    expect(hit.headers).toMatchObject({ 'content-type': 'image/png', 'cache-control': 'max-age=31536000, public' });
    expect(rendered(s, path)).toBe(1);
    // a HEAD of a key RGW does not hold is a 404, not a 403
    expect(xCache(await s.get('/sig/plain/https://example.com/rgw-never.jpg@png', { method: 'HEAD' }))).toBe('200 MISS');
    expect(bucketRequests(s, '/sig/plain/https://example.com/rgw-never.jpg@png', 'HEAD').map((r) => `${r.method} ${r.status}`)).toEqual(['HEAD 404']);
  });

  it('bucket truth: an image the bucket lost while hot in memory is stored again from memory, without a render', async () => {
    const s = await start({ env: { CACHE_READ_THROUGH: 'true', CACHE_MEMORY_CONFIRM_MS: '200' } });
    const path = '/sig/plain/https://example.com/rgw-lost.jpg@png';
    await s.get(path);
    await s.waitForObject(path);
    await s.drained();
    // memory hears from the bucket that it holds the image
    await waitFor(async () => xCache(await s.get(path)) === '200 HIT' && (await counter(s.proxy, 'memoryConfirmations', 'present')) >= 1, {
      what: 'the bucket to confirm the image',
    });
    await s.s3.send(new DeleteObjectCommand({ Bucket: s.bucket, Key: s.keyFor(path) }));
    await waitFor(
      async () => {
        expect(xCache(await s.get(path))).toBe('200 HIT');
        return (await s.object(path))?.body.equals(s.stub.imageFor(path));
      },
      { what: 'the image to be back in the bucket' },
    );
    expect(rendered(s, path)).toBe(1);
  });

  it('purge removes the object from RGW, and the next request renders and stores it anew', async () => {
    const s = await start({ env: { ADMIN_TOKEN: 'rgw-token' } });
    const path = '/sig/plain/https://example.com/rgw-purge.jpg@png';
    await s.get(path);
    await s.waitForObject(path);
    await s.drained();
    const res = await request(`http://127.0.0.1:${s.proxy.admin!.port}/cache${path}`, { method: 'DELETE', headers: { authorization: 'Bearer rgw-token' } });
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toMatchObject({ object: true });
    expect(await s.object(path)).toBeUndefined();
    await s.get(path);
    await s.waitForObject(path);
    expect(rendered(s, path)).toBe(2);
  });

  it('lists past 1000 keys (ListObjectsV2 continuations), and reindex rebuilds the source index from every object’s tag', async () => {
    const s3 = testS3Client(rgw!.endpoint, { accessKeyId: rgw!.accessKeyId, secretAccessKey: rgw!.secretAccessKey });
    const bucket = `rl-${randomUUID().slice(0, 8)}`;
    await createBucket(s3, bucket);
    const keys = Array.from({ length: 1203 }, (_, i) => cacheKeyOf(`/sig/plain/https://example.com/many-${i}.jpg@png`));
    const tag = 'f'.repeat(32);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(
        keys.slice(i, i + 50).map((key, j) =>
          s3.send(
            new PutObjectCommand({
              Bucket: bucket,
              Key: `processed/${key}`,
              Body: Buffer.from(key),
              Metadata: (i + j) % 2 === 0 ? { 'source-tag': tag } : undefined,
            }),
          ),
        ),
      );
    }
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'elsewhere/x', Body: Buffer.from('x') }));
    const client = new BucketClient(loadConfig(rgwEnv(bucket), 'uploader').s3, {
      credentials: async () => ({ accessKeyId: rgw!.accessKeyId, secretAccessKey: rgw!.secretAccessKey }),
    });
    try {
      const listed = await listKeys(client, 'processed/');
      expect(listed).toHaveLength(1203);
      expect(new Set(listed)).toEqual(new Set(keys.map((k) => `processed/${k}`)));

      const { Redis } = await import('ioredis');
      const redis = new Redis(inject('redisUrl'));
      const index = new SourceIndex(redis, `rl-${bucket}`, '');
      try {
        const progress = await reindex({ bucket: client, folder: 'processed/', index, concurrency: 16 });
        expect(progress).toEqual({ listed: 1203, looked: 1203, indexed: 602, untagged: 601, failed: 0 });
        expect(await redis.scard(index.key(tag))).toBe(602);
      } finally {
        await redis.del(index.key(tag));
        await redis.quit();
      }
    } finally {
      client.close();
      s3.destroy();
    }
  });

  it('setup-bucket creates the bucket and opens S3_FOLDER/ (and only it) to anonymous reads with a bucket policy; a second run changes nothing', async () => {
    const bucket = `rs-${randomUUID().slice(0, 8)}`;
    const env = { ...rgwEnv(bucket), S3_FOLDER: 'processed' };
    const first = spawnService(['apps/uploader/dist/setup-bucket-main.js'], env);
    services.push(first);
    expect(await first.exited(), first.output()).toBe(0);
    expect(first.output()).toMatch(new RegExp(`created bucket ${bucket}[\\s\\S]*anyone may read ${bucket}/processed/\\*`));

    const s3 = testS3Client(rgw!.endpoint, { accessKeyId: rgw!.accessKeyId, secretAccessKey: rgw!.secretAccessKey });
    for (const key of ['processed/abc', 'private/abc']) await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.from(key) }));
    s3.destroy();
    const open = await fetch(`${rgw!.endpoint}/${bucket}/processed/abc`);
    expect(open.status).toBe(200);
    expect(await open.text()).toBe('processed/abc');
    expect((await fetch(`${rgw!.endpoint}/${bucket}/private/abc`)).status).toBe(403);
    expect((await fetch(`${rgw!.endpoint}/${bucket}`)).status).toBe(403); // no anonymous listing

    const second = spawnService(['apps/uploader/dist/setup-bucket-main.js'], env);
    services.push(second);
    expect(await second.exited(), second.output()).toBe(0);
    expect(second.output()).toMatch(new RegExp(`bucket ${bucket} exists`));
  });

  it('wrong keys: the uploader names RGW’s code at start and /readyz says why', async () => {
    const bucket = `rk-${randomUUID().slice(0, 8)}`;
    const s3 = testS3Client(rgw!.endpoint, { accessKeyId: rgw!.accessKeyId, secretAccessKey: rgw!.secretAccessKey });
    await createBucket(s3, bucket);
    s3.destroy();
    const port = await freePort();
    const uploader = spawnService(['apps/uploader/dist/index.js'], {
      ...rgwEnv(bucket),
      AWS_SECRET_ACCESS_KEY: 'wrong-secret',
      REDIS_URL: inject('redisUrl'),
      QUEUE_NAME: bucket,
      METRICS_BIND: `127.0.0.1:${port}`,
    });
    services.push(uploader);
    await uploader.line(/Uploader started/);
    expect(uploader.logs()).toContainEqual(
      expect.objectContaining({ level: 40, code: 'SignatureDoesNotMatch', msg: 'S3 refuses the credentials (SignatureDoesNotMatch)' }),
    );
    const ready = await admin(port, '/readyz');
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.text)).toMatchObject({ checks: { s3: false }, reasons: { s3: expect.stringMatching(/^GetObject 403 SignatureDoesNotMatch: /) } });
    expect(ready.text).not.toContain('wrong-secret');
  });

  it('a missing bucket: the uploader stops with one line naming S3_BUCKET, exit 2', async () => {
    const bucket = `rm-${randomUUID().slice(0, 8)}`;
    const uploader = spawnService(['apps/uploader/dist/index.js'], { ...rgwEnv(bucket), REDIS_URL: inject('redisUrl'), QUEUE_NAME: bucket });
    services.push(uploader);
    expect(await uploader.exited()).toBe(2);
    expect(uploader.output()).toMatch(new RegExp(`S3_BUCKET "${bucket}" does not exist at S3_ENDPOINT ${rgw!.endpoint.replace(/\./g, '\\.')}`));
    expect(uploader.output()).not.toMatch(/\n\s+at /);
  });
});
