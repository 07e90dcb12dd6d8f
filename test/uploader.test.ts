import { PutObjectCommand } from '@aws-sdk/client-s3';
import { cacheKeyOf, crc32Of, encodePayload, redisKeys, UPLOAD_JOB_NAME, type UploadJobData, uploadJobOptions } from '@imgproxy-cache/shared';
import { describe, expect, it } from 'vitest';
import { admin, sample } from './support/admin.js';
import type { Stack } from './support/stack.js';
import { useStack } from './support/use-stack.js';
import { waitFor } from './support/wait.js';

// The uploader against real Redis and s3rver; S3 faults come from the recording tap in front of
// s3rver (real HTTP answers: 403, 503 SlowDown, 412, 409).

const { start } = useStack({ logLines: Infinity });

function jobData(path: string): UploadJobData {
  return { cacheKey: cacheKeyOf(path), path };
}

function payloadOf(bytes: Buffer): Buffer {
  return encodePayload(
    {
      contentType: 'image/png',
      cacheControl: 'max-age=60, public',
      contentDisposition: null,
      size: bytes.length,
      crc32: crc32Of(bytes),
      receivedAt: Date.now(),
    },
    [bytes],
  );
}

async function failedReason(s: Stack, cacheKey: string): Promise<string> {
  return waitFor(
    async () => {
      const job = await s.queue.getJob(cacheKey);
      return job && (await job.getState()) === 'failed' ? job.failedReason : undefined;
    },
    { what: `job ${cacheKey} to fail` },
  );
}

const isPutOf = (key: string) => (r: { method: string; url: string }) => r.method === 'PUT' && r.url.split('?')[0]!.endsWith(`/${key}`);

describe('the uploader', () => {
  it('fails a job for good, with a reason, when its bytes are gone from Redis', async () => {
    const s = await start();
    const data = jobData('/sig/gone.png');
    await s.queue.add(UPLOAD_JOB_NAME, data, uploadJobOptions(s.config.queue, data.cacheKey));
    const reason = await failedReason(s, data.cacheKey);
    expect(reason).toMatch(/^Image bytes are gone from Redis/);
    expect((await s.queue.getJob(data.cacheKey))!.attemptsMade).toBe(1); // not retried: it cannot heal
    expect(await s.keys()).toEqual([]);
  });

  it('completes, not fails, a job run again after its upload was done (lock lost to a stall)', async () => {
    const s = await start();
    const data = jobData('/sig/ran-twice.png');
    // what the first run left: no bytes, the image marked as uploaded
    await s.redis.set(redisKeys(s.config.queue.name).uploaded(data.cacheKey), '1');
    await s.queue.add(UPLOAD_JOB_NAME, data, uploadJobOptions(s.config.queue, data.cacheKey));
    await waitFor(() => s.logs.some((l) => l.msg === 'Already in S3, not written again' && l.path === data.path), { what: 'the second run to finish' });
    await s.drained();
    expect(await s.queue.getJob(data.cacheKey)).toBeUndefined(); // completed and removed, not failed
    expect(await s.queue.getJobCounts('failed')).toEqual({ failed: 0 });
    expect(s.tap.requests).toEqual([]); // S3 was not asked anything
  });

  it.each([
    [
      'bytes that do not match their size and checksum',
      (p: Buffer) => {
        p[p.length - 10] = (p[p.length - 10]! + 1) % 256;
        return p;
      },
      /do not match its header/,
    ],
    ['a value this tool never wrote', () => Buffer.from('not a payload'), /not a payload written by imgproxy-cache/],
  ])('refuses %s, and drops them', async (_name, corrupt, reason) => {
    const s = await start();
    const data = jobData('/sig/mismatch.png');
    const payloadKey = redisKeys(s.config.queue.name).payload(data.cacheKey);
    await s.redis.set(payloadKey, corrupt(payloadOf(s.stub.imageFor('good'))));
    await s.queue.add(UPLOAD_JOB_NAME, data, uploadJobOptions(s.config.queue, data.cacheKey));
    expect(await failedReason(s, data.cacheKey)).toMatch(reason);
    expect(s.tap.puts()).toHaveLength(0);
    expect(await s.keys()).toEqual([]);
    expect(await s.redis.exists(payloadKey)).toBe(0);
  });

  it.each([
    ['true', 'one conditional create, refused (412), then a look at the object'],
    ['false', 'a look at the object, no write'],
  ])('does not overwrite an object the bucket already holds, and remembers it as uploaded (S3_CONDITIONAL_WRITES=%s: %s)', async (conditional) => {
    const s = await start({ env: { CACHE_RECENT_KEYS: '0', S3_CONDITIONAL_WRITES: conditional } });
    const path = '/sig/plain/https://example.com/present.jpg@png';
    await s.s3.send(new PutObjectCommand({ Bucket: s.bucket, Key: s.keyFor(path), Body: s.stub.imageFor(path), ContentType: 'image/png' }));
    await s.get(path);
    expect(await s.outcomeOf(path)).toBe('queued');
    await s.drained();
    const keys = redisKeys(s.config.queue.name);
    await waitFor(async () => (await s.redis.exists(keys.uploaded(cacheKeyOf(path)))) === 1, { what: 'uploaded marker' });
    expect(await s.redis.exists(keys.payload(cacheKeyOf(path)))).toBe(0);
    const forKey = s.tap.requests.filter((r) => r.url.split('?')[0]!.endsWith(`/${s.keyFor(path)}`));
    expect(forKey.map((r) => `${r.method} ${r.status}`)).toEqual(conditional === 'true' ? ['PUT 412', 'HEAD 200'] : ['HEAD 200']);
    expect((await s.object(path))!.cacheControl).toBeUndefined(); // still the object put above
    await waitFor(() => s.logs.some((l) => l.msg === 'Already in S3, not written again'), { what: 'the log line' }); // just after the marker
    // and the next request tees nothing
    await s.get(path);
    expect(await s.outcomeOf(path, 2)).toBe('uploaded');
  });

  it.each([
    ['true', ['PUT 200'], '*'],
    ['false', ['HEAD 404', 'PUT 200'], undefined],
  ])('writes a new image with as few requests as it can (S3_CONDITIONAL_WRITES=%s: %j)', async (conditional, requests, ifNoneMatch) => {
    const s = await start({ env: { S3_CONDITIONAL_WRITES: conditional } });
    const path = '/sig/plain/https://example.com/new.jpg@png';
    await s.get(path);
    expect((await s.waitForObject(path)).body.equals(s.stub.imageFor(path))).toBe(true);
    await s.drained();
    const forKey = s.tap.requests.filter((r) => r.url.split('?')[0]!.endsWith(`/${s.keyFor(path)}`));
    expect(forKey.map((r) => `${r.method} ${r.status}`)).toEqual(requests);
    expect(forKey.find((r) => r.method === 'PUT')!.headers['if-none-match']).toBe(ifNoneMatch);
  });

  it('replaces an object holding different bytes for the same path, and says so', async () => {
    const s = await start();
    const path = '/sig/plain/https://example.com/changed.jpg@png';
    await s.s3.send(new PutObjectCommand({ Bucket: s.bucket, Key: s.keyFor(path), Body: Buffer.from('old bytes'), ContentType: 'image/png' }));
    await s.get(path);
    await waitFor(async () => (await s.object(path))?.body.equals(s.stub.imageFor(path)), { what: 'the new bytes' });
    expect(s.logs.some((l) => String(l.msg).startsWith('Replacing an object that holds different bytes'))).toBe(true);
  });

  it('treats 412 from a conditional create as done (another writer got there first)', async () => {
    const s = await start();
    const path = '/sig/plain/https://example.com/race.jpg@png';
    s.tap.fault = (r) => (isPutOf(cacheKeyOf(path))(r) ? { kind: 'status', status: 412, code: 'PreconditionFailed' } : undefined);
    await s.get(path);
    await s.drained();
    const put = s.tap.requests.find(isPutOf(cacheKeyOf(path)))!;
    expect(put.headers['if-none-match']).toBe('*');
    await waitFor(async () => (await s.redis.exists(redisKeys(s.config.queue.name).uploaded(cacheKeyOf(path)))) === 1, { what: 'uploaded marker' });
    expect(await s.queue.getJob(cacheKeyOf(path))).toBeUndefined(); // completed and removed, not failed
  });

  it('retries through S3 errors (503, 409, dropped connections) and lands the image', async () => {
    const s = await start({ env: { UPLOAD_ATTEMPTS: '6', UPLOAD_BACKOFF_MS: '20' } });
    const path = '/sig/plain/https://example.com/flaky.jpg@png';
    const faults = [
      { kind: 'status', status: 503, code: 'ServiceUnavailable' },
      { kind: 'drop' },
      { kind: 'status', status: 409, code: 'ConditionalRequestConflict' },
    ] as const;
    let n = 0;
    s.tap.fault = (r) => (isPutOf(cacheKeyOf(path))(r) ? faults[n++] : undefined);
    await s.get(path);
    const stored = await s.waitForObject(path);
    expect(stored.body.equals(s.stub.imageFor(path))).toBe(true);
    expect(n).toBeGreaterThanOrEqual(4);
  });

  it('gives up on an S3 request that hangs after S3_REQUEST_TIMEOUT_MS, and retries the upload', async () => {
    const s = await start({ env: { S3_REQUEST_TIMEOUT_MS: '300', UPLOAD_BACKOFF_MS: '10' } });
    const path = '/sig/plain/https://example.com/hanging-s3.jpg@png';
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    s.tap.fault = (r) => (isPutOf(cacheKeyOf(path))(r) ? { kind: 'hold', until: held } : undefined);
    try {
      await s.get(path);
      await waitFor(() => s.logs.some((l) => l.msg === 'Upload failed; will retry' && l.reason === 'PutObject timed out (S3_REQUEST_TIMEOUT_MS)'), {
        what: 'the upload to time out',
      });
      s.tap.fault = undefined;
      expect((await s.waitForObject(path)).body.equals(s.stub.imageFor(path))).toBe(true);
    } finally {
      release();
    }
  });

  it('keeps a job that failed every attempt in the failed set with a readable reason; a new request re-queues it', async () => {
    const s = await start({ env: { UPLOAD_ATTEMPTS: '3', UPLOAD_BACKOFF_MS: '10', CACHE_RECENT_KEYS: '0' } });
    const path = '/sig/plain/https://example.com/denied.jpg@png';
    s.tap.fault = (r) => (r.method === 'PUT' ? { kind: 'status', status: 403, code: 'AccessDenied', message: 'Access Denied' } : undefined);
    await s.get(path);
    expect(await failedReason(s, cacheKeyOf(path))).toBe('PutObject 403 AccessDenied: Access Denied');
    const job = (await s.queue.getJob(cacheKeyOf(path)))!;
    expect(job.attemptsMade).toBe(3);
    expect(s.tap.requests.filter(isPutOf(cacheKeyOf(path)))).toHaveLength(3);
    await waitFor(
      () => s.logs.some((l) => l.msg === 'Upload failed for good; kept in the failed set' && l.reason === 'PutObject 403 AccessDenied: Access Denied'),
      {
        what: 'the log line', // written when the worker hears of the failure, which Redis shows first
      },
    );

    // The bucket accepts writes again; the image is asked for again: it heals by itself.
    s.tap.fault = undefined;
    await s.get(path);
    expect(await s.outcomeOf(path, 2)).toBe('requeued');
    expect((await s.waitForObject(path)).body.equals(s.stub.imageFor(path))).toBe(true);
  });

  it.each([
    [
      '301 PermanentRedirect with S3’s error body (a bucket in another region)',
      { status: 301, code: 'PermanentRedirect', headers: { 'x-amz-bucket-region': 'eu-west-1' } },
    ],
    [
      '307 TemporaryRedirect without a body (a gateway)',
      { status: 307, code: 'TemporaryRedirect', bare: true, headers: { location: 'http://elsewhere.example/' } },
    ],
  ])('never takes a redirect for a store: %s fails the job with what to set, counts no upload, and /readyz says why', async (_, redirect) => {
    const s = await start({ env: { UPLOAD_ATTEMPTS: '2', UPLOAD_BACKOFF_MS: '10', CACHE_RECENT_KEYS: '0' } });
    // a wrong endpoint redirects every request, the probe's too
    s.tap.fault = () => ({ kind: 'status', message: 'The bucket you are attempting to access must be addressed using the specified endpoint.', ...redirect });
    const path = '/sig/plain/https://example.com/redirected.jpg@png';
    expect((await s.get(path)).status).toBe(200);
    const reason = await failedReason(s, cacheKeyOf(path));
    expect(reason).toMatch(
      new RegExp(
        `^PutObject ${redirect.status} ${redirect.code}: S3 redirects this bucket .*: the image was not stored; set S3_ENDPOINT \\(now ${s.tap.endpoint.replace(/\./g, '\\.')}\\) and S3_REGION \\(now us-east-1\\) to the bucket's own$`,
      ),
    );
    expect(s.tap.requests.filter(isPutOf(cacheKeyOf(path)))).toHaveLength(2);
    expect(await s.redis.exists(redisKeys(s.queue.name).uploaded(cacheKeyOf(path)))).toBe(0);
    expect(s.logs.filter((l) => String(l.msg).startsWith('Uploaded to S3'))).toEqual([]);
    const { text } = await admin(s.uploader!.admin!.port, '/metrics');
    expect(sample(text, 'imgproxy_cache_uploads_total', { result: 'uploaded' })).toBe(0);
    const ready = await admin(s.uploader!.admin!.port, '/readyz');
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.text)).toMatchObject({
      checks: { s3: false },
      reasons: { s3: expect.stringMatching(new RegExp(`^GetObject ${redirect.status} ${redirect.code}: .*S3_ENDPOINT`)) },
    });
    s.tap.fault = undefined;
    expect(await s.keys()).toEqual([]);
  });

  it('once the queue ran dry, lets the images of the next UPLOAD_GATHER_MS wait, to take them together', async () => {
    const s = await start({ env: { UPLOAD_GATHER_MS: '60000', CACHE_RECENT_KEYS: '0' } });
    // the queue is dry at start: the uploader gathers
    await waitFor(() => [...s.uploader!.queues.values()][0]!.worker.isPaused(), { what: 'the uploader to gather' });
    const paths = [1, 2, 3].map((i) => `/sig/plain/https://example.com/gathered-${i}.jpg@png`);
    for (const p of paths) {
      await s.get(p);
      expect(await s.outcomeOf(p)).toBe('queued');
    }
    expect(await s.queue.getJobCounts('waiting', 'active')).toEqual({ waiting: 3, active: 0 });
    expect(s.tap.puts()).toHaveLength(0);

    // a short window: they are taken when it ends
    await s.uploader!.close(2_000);
    s.uploader = undefined;
    await s.startUploader({ gatherMs: 100 });
    for (const p of paths) expect((await s.waitForObject(p)).body.equals(s.stub.imageFor(p))).toBe(true);
  });
});
