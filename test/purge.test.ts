import { cacheKeyOf, createLogger, purgeChannel, redisKeys } from '@imgproxy-cache/shared';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import type { CacheOutcome } from '../apps/proxy/src/handoff/outcome.js';
import { type RunningProxy, startProxy } from '../apps/proxy/src/server/start-proxy.js';
import { objectExists, S3RVER_CREDENTIALS } from './support/s3.js';
import { spawnService } from './support/service.js';
import { rendered, type Stack } from './support/stack.js';
import { useStack } from './support/use-stack.js';
import { waitFor } from './support/wait.js';

// Purge: `npm run purge` and DELETE /cache/<path or key> forget an image everywhere, so that its
// next request renders it anew.

const proxies: RunningProxy[] = [];
const TOKEN = 'purge-secret';
const { start } = useStack({
  defaults: { env: { ADMIN_TOKEN: TOKEN, UPLOAD_GATHER_MS: '0' } },
  beforeStop: () => Promise.all(proxies.splice(0).map((p) => p.close(2_000))),
});

async function purgeOver(s: Stack, target: string, token = TOKEN) {
  const res = await request(`http://127.0.0.1:${s.proxy.admin!.port}/cache${target.startsWith('/') ? target : `/${target}`}`, {
    method: 'DELETE',
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

function cli(s: Stack, args: string[]) {
  return spawnService(['apps/cli/dist/purge.js', ...args], {
    REDIS_URL: s.config.redisUrl,
    QUEUE_NAME: s.config.queue.name,
    S3_BUCKET: s.bucket,
    S3_ENDPOINT: s.tap.endpoint,
    S3_REGION: 'us-east-1',
  });
}

describe('DELETE /cache/<path or key>', () => {
  it('removes the object and the uploaded marker; every proxy forgets the image; the next request renders and stores it anew', async () => {
    const s = await start({ env: { CACHE_READ_THROUGH: 'true' } });
    // a second proxy that has handed the image off too, and remembers it
    const outcomes: CacheOutcome[] = [];
    // without read-through: only the purge's message can make it forget
    const other = await startProxy({ ...s.config, proxy: { ...s.config.proxy, readThrough: false }, metricsBind: undefined }, createLogger('proxy', 'silent'), {
      s3Credentials: S3RVER_CREDENTIALS,
      onOutcome: (o) => outcomes.push(o),
    });
    proxies.push(other);
    const path = '/sig/plain/https://example.com/purged.jpg@png';
    await s.get(path);
    await s.waitForObject(path);
    await s.drained();
    await request(`http://127.0.0.1:${other.port}${path}`).then((r) => r.body.arrayBuffer());
    // its hand-off has answered (found the image uploaded) before the next request
    await waitFor(() => outcomes.includes('uploaded'), { what: 'the other proxy’s hand-off' });
    expect((await s.get(path)).headers['x-cache']).toBe('HIT');
    await request(`http://127.0.0.1:${other.port}${path}`).then((r) => r.body.arrayBuffer());
    expect(outcomes.at(-1)).toBe('deduped'); // it remembers the image
    // both proxies listen for purges
    await waitFor(async () => {
      const [, listeners] = (await s.redis.call('PUBSUB', 'NUMSUB', purgeChannel(s.config.queue.name))) as [string, number];
      return listeners === 2;
    });

    const purged = await purgeOver(s, path);
    expect(purged).toEqual({
      status: 200,
      body: expect.objectContaining({
        key: cacheKeyOf(path),
        path,
        object: true,
        marker: true,
        bytes: false,
        result: `${cacheKeyOf(path)} (${path}): removed object, uploaded marker`,
      }),
    });
    expect(await objectExists(s.s3, s.bucket, s.keyFor(path))).toBe(false);

    const renders = rendered(s, path);
    const after = await s.get(path);
    expect(after.headers['x-cache']).toBe('MISS');
    expect(rendered(s, path)).toBe(renders + 1);
    expect((await s.waitForObject(path)).body.equals(s.stub.imageFor(path))).toBe(true);
    // the other proxy forgot it too: its next response is handed off again, not skipped as recent
    const seen = outcomes.length;
    await request(`http://127.0.0.1:${other.port}${path}`).then((r) => r.body.arrayBuffer());
    await waitFor(() => outcomes.length > seen);
    expect(outcomes[seen]).not.toBe('deduped');
  });

  it('removes a job waiting for upload, and its bytes', async () => {
    const s = await start({ noUploader: true });
    const path = '/sig/plain/https://example.com/waiting.jpg@png';
    await s.get(path);
    expect(await s.outcomeOf(path)).toBe('queued');
    const purged = await purgeOver(s, cacheKeyOf(path));
    expect(purged.status).toBe(200);
    expect(purged.body).toMatchObject({ key: cacheKeyOf(path), object: false, marker: false, job: 'waiting', bytes: true });
    expect(await s.queue.getJob(cacheKeyOf(path))).toBeUndefined();
    expect(await s.redis.exists(redisKeys(s.config.queue.name).payload(cacheKeyOf(path)))).toBe(0);
  });

  it('answers what it can: 404 for an image never stored, 400 for what is no image, 401 without the token, off without ADMIN_TOKEN', async () => {
    const s = await start();
    expect(await purgeOver(s, '/sig/plain/https://example.com/never.jpg@png')).toMatchObject({
      status: 404,
      body: { object: false, marker: false, bytes: false },
    });
    expect(await purgeOver(s, '/health')).toMatchObject({ status: 400, body: { error: '/health is imgproxy’s health check, not an image' } });
    expect(await purgeOver(s, '/sig/a%zzb.png')).toMatchObject({
      status: 400,
      body: { error: expect.stringMatching(/is not an image path: .*percent-encoding/) },
    });
    expect(await purgeOver(s, '/sig/x.png', '')).toMatchObject({ status: 401 });
    expect(await purgeOver(s, '/sig/x.png', 'wrong')).toMatchObject({ status: 401 });
    expect(await purgeOver(s, '/sig/x.png', 'x'.repeat(TOKEN.length))).toMatchObject({ status: 401 }); // same length

    const off = await startProxy({ ...s.config, proxy: { ...s.config.proxy, adminToken: undefined } }, createLogger('proxy', 'silent'));
    proxies.push(off);
    const res = await request(`http://127.0.0.1:${off.admin!.port}/cache/sig/x.png`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.statusCode).toBe(404);
    expect(await res.body.json()).toEqual({ error: 'purge is off: set ADMIN_TOKEN to turn it on' });
  });
});

describe('npm run purge', () => {
  it('purges paths and keys, one line each; exit 0 when every one was found, 1 when one was not', async () => {
    const s = await start();
    const a = '/sig/plain/https://example.com/cli-a.jpg@png';
    const b = '/sig/plain/https://example.com/cli-b.jpg@png';
    for (const p of [a, b]) {
      await s.get(p);
      await s.waitForObject(p);
    }
    await s.drained();
    const both = cli(s, [a, cacheKeyOf(b)]);
    expect(await both.exited()).toBe(0);
    expect(both.output().trim().split('\n')).toEqual([
      `${cacheKeyOf(a)} (${a}): removed object, uploaded marker`,
      `${cacheKeyOf(b)}: removed object, uploaded marker`,
    ]);
    expect(await objectExists(s.s3, s.bucket, s.keyFor(a))).toBe(false);
    expect(await objectExists(s.s3, s.bucket, s.keyFor(b))).toBe(false);

    const again = cli(s, [a]);
    expect(await again.exited()).toBe(1);
    expect(again.output().trim()).toBe(`${cacheKeyOf(a)} (${a}): nothing stored (no object, no marker, no job)`);
  });

  it('refuses input that names no image, with one line and exit 2, purging nothing', async () => {
    const s = await start();
    const path = '/sig/plain/https://example.com/kept.jpg@png';
    await s.get(path);
    await s.waitForObject(path);
    for (const [args, message] of [
      [[path, 'cat.jpg'], 'imgproxy-cache purge: cat.jpg is neither an image path (starting with "/") nor a key (32 lowercase hex digits)'],
      [[`${path}?v=2`], `imgproxy-cache purge: ${path}?v=2 has a query string: images are keyed by their path alone, give the path without it`],
      [
        [],
        'imgproxy-cache purge: usage: npm run purge -- <image path or key> ... (a path as clients request it, or its 32-hex-digit key), or --source <source URL> ... [--dry-run]',
      ],
    ] as const) {
      const run = cli(s, [...args]);
      expect(await run.exited()).toBe(2);
      expect(run.output().trim()).toBe(message);
    }
    expect(await objectExists(s.s3, s.bucket, s.keyFor(path))).toBe(true);
  });
});
