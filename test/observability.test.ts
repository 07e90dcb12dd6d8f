import { describe, expect, it } from 'vitest';
import { admin, sample } from './support/admin.js';
import { freePort } from './support/free-port.js';
import { useStack } from './support/use-stack.js';
import { waitFor } from './support/wait.js';

// Metrics, health checks and request ids, as an operator sees them on the admin address.

const { start } = useStack();

describe('proxy metrics and health', () => {
  it('counts requests, bytes and every cache decision', async () => {
    const s = await start();
    const cached = '/sig/plain/https://example.com/m.jpg@png';
    await s.get(cached);
    await s.waitForObject(cached);
    await s.get(cached);
    await s.get('/sig/x', { method: 'POST' });
    s.stub.on('/sig/missing', () => ({ status: 404, headers: { 'content-type': 'text/plain' }, body: Buffer.from('no') }));
    await s.get('/sig/missing');
    await s.outcomeOf(cached, 2);
    await s.outcomeOf('/sig/missing');

    const { status, text } = await admin(s.proxy.admin!.port, '/metrics');
    expect(status).toBe(200);
    expect(sample(text, 'imgproxy_cache_requests_total', { method: 'GET', status: '200' })).toBe(2);
    expect(sample(text, 'imgproxy_cache_requests_total', { method: 'POST', status: '405' })).toBe(1);
    expect(sample(text, 'imgproxy_cache_requests_total', { method: 'GET', status: '404' })).toBe(1);
    expect(sample(text, 'imgproxy_cache_cache_decisions_total', { outcome: 'queued' })).toBe(1);
    expect(sample(text, 'imgproxy_cache_cache_decisions_total', { outcome: 'deduped' })).toBe(1);
    expect(sample(text, 'imgproxy_cache_cache_decisions_total', { outcome: 'status' })).toBe(1);
    expect(sample(text, 'imgproxy_cache_response_bytes_total')).toBe(2 * s.stub.imageFor(cached).length + 2);
    expect(sample(text, 'imgproxy_cache_upstream_duration_seconds_count', { method: 'GET' })).toBe(3);
    expect(sample(text, 'imgproxy_cache_capture_bytes')).toBe(0);
  });

  it('counts one decision per response, also when an uncacheable body is cut short', async () => {
    const s = await start();
    s.stub.on('/sig/cut404', () => ({
      status: 404,
      headers: { 'content-type': 'text/plain' },
      body: Buffer.alloc(50_000, 1),
      pieceSize: 8192,
      cutAfter: 20_000,
    }));
    await expect(s.get('/sig/cut404')).rejects.toThrow();
    await s.outcomeOf('/sig/cut404');
    await waitFor(() => s.proxy.inflight.size === 0, { what: 'the response to settle' });
    const { text } = await admin(s.proxy.admin!.port, '/metrics');
    expect(sample(text, 'imgproxy_cache_cache_decisions_total', { outcome: 'status' })).toBe(1);
    expect(sample(text, 'imgproxy_cache_cache_decisions_total', { outcome: 'incomplete' })).toBeUndefined();
  });

  it('counts images not cached because Redis is down', async () => {
    const s = await start({ noUploader: true, env: { REDIS_URL: `redis://127.0.0.1:${await freePort()}` } });
    await s.get('/sig/plain/https://example.com/down.jpg@png');
    await s.outcomeOf('/sig/plain/https://example.com/down.jpg@png');
    const { text } = await admin(s.proxy.admin!.port, '/metrics');
    expect(sample(text, 'imgproxy_cache_cache_decisions_total', { outcome: 'redis-down' })).toBe(1);
    const ready = await admin(s.proxy.admin!.port, '/readyz');
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.text)).toEqual({
      ready: false,
      checks: { serving: true, imgproxy: true, redis: false },
      reasons: { redis: expect.stringMatching(/^REDIS_URL: (connecting|reconnecting) \(connect ECONNREFUSED 127\.0\.0\.1:\d+\)$/) },
    });
  });

  it('is live, and ready only while imgproxy is healthy', async () => {
    const s = await start();
    const port = s.proxy.admin!.port;
    expect(await admin(port, '/livez')).toEqual({ status: 200, text: 'ok\n' });
    expect((await admin(port, '/readyz')).status).toBe(200);
    s.stub.healthy = false;
    const notReady = await admin(port, '/readyz');
    expect(notReady.status).toBe(503);
    expect(JSON.parse(notReady.text).checks).toEqual({ serving: true, imgproxy: false, redis: true });
    expect(JSON.parse(notReady.text).reasons).toEqual({ imgproxy: "imgproxy's /health answered 500" });
  });
});

describe('uploader metrics and health', () => {
  it('counts uploads by result, bytes, queue depth and backlog; ready when Redis and S3 answer', async () => {
    const s = await start();
    const path = '/sig/plain/https://example.com/u.jpg@png';
    await s.get(path);
    await s.waitForObject(path);
    await s.drained();
    const port = s.uploader!.admin!.port;
    const metrics = await waitFor(
      async () => {
        const { text } = await admin(port, '/metrics');
        return sample(text, 'imgproxy_cache_uploads_total', { result: 'uploaded' }) === 1 ? text : undefined;
      },
      { what: 'the upload to be counted' },
    );
    expect(sample(metrics, 'imgproxy_cache_upload_bytes_total')).toBe(s.stub.imageFor(path).length);
    expect(sample(metrics, 'imgproxy_cache_upload_duration_seconds_count', { result: 'uploaded' })).toBe(1);
    expect(sample(metrics, 'imgproxy_cache_queue_jobs', { state: 'waiting' })).toBe(0);
    expect(sample(metrics, 'imgproxy_cache_queue_jobs', { state: 'failed' })).toBe(0);
    expect(sample(metrics, 'imgproxy_cache_backlog_bytes')).toBe(0);
    expect(await admin(port, '/readyz')).toEqual({ status: 200, text: '{"ready":true,"checks":{"redis":true,"s3":true,"shards":true}}\n' });

    s.tap.fault = () => ({ kind: 'status', status: 503, code: 'ServiceUnavailable' });
    expect(JSON.parse((await admin(port, '/readyz')).text)).toEqual({
      ready: false,
      checks: { redis: true, s3: false, shards: true },
      reasons: { s3: 'GetObject 503 ServiceUnavailable: ServiceUnavailable' },
    });
  });
});

describe('request ids', () => {
  it('takes the client’s X-Request-ID or makes one, passes it to imgproxy, and logs it with the upload', async () => {
    const s = await start();
    const given = '/sig/plain/https://example.com/rid-given.jpg@png';
    await s.get(given, { headers: { 'x-request-id': 'client-chosen-1' } });
    expect(s.stub.requests.at(-1)!.headers['x-request-id']).toBe('client-chosen-1');
    const made = '/sig/plain/https://example.com/rid-made.jpg@png';
    await s.get(made);
    const generated = s.stub.requests.at(-1)!.headers['x-request-id'];
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);
    await s.waitForObject(given);
    await s.waitForObject(made);
    const uploadLine = await waitFor(() => s.logs.find((l) => String(l.msg).startsWith(`Uploaded to S3 path=${given}`)), { what: 'upload line' });
    expect(uploadLine).toMatchObject({
      requestId: 'client-chosen-1',
      path: given,
      bucket: s.bucket,
      key: s.keyFor(given),
      size: s.stub.imageFor(given).length,
    });
    expect(uploadLine.durationMs).toEqual(expect.any(Number));
    // the line follows the PUT (the object can be read a moment before it is written)
    const madeLine = await waitFor(() => s.logs.find((l) => String(l.msg).startsWith(`Uploaded to S3 path=${made}`)), { what: 'upload line' });
    expect(madeLine).toMatchObject({ requestId: generated });
  });
});
