import { cacheKeyOf, crc32Of, decodePayload, encodePayload, queuePrefix, redisKeys, UPLOAD_JOB_NAME, uploadJobOptions } from '@imgproxy-cache/shared';
import { UnrecoverableError, Worker } from 'bullmq';
import { afterEach, describe, expect, it } from 'vitest';
import { type Stack, startStack } from './support/stack.js';
import { waitFor } from './support/wait.js';

// The dedup rule (packages/shared/src/contract/dedup.ts) against real BullMQ jobs in every state: one row
// per state of the image's job and whether its bytes are in Redis, a real request through the
// proxy, then what Redis holds.

let stack: Stack | undefined;
let worker: Worker | undefined;
let release: (() => void) | undefined;
afterEach(async () => {
  release?.();
  await worker?.close(true);
  await stack?.stop();
  stack = worker = release = undefined;
});

type Arranged = 'uploaded' | 'waiting' | 'delayed' | 'active' | 'failed' | 'completed' | 'none';

const OLD = Buffer.from('bytes teed by an earlier response');
const oldPayload = encodePayload(
  { contentType: 'image/png', cacheControl: null, contentDisposition: null, size: OLD.length, crc32: crc32Of(OLD), receivedAt: 1 },
  [OLD],
);

/** Puts the image's job in `state` with real BullMQ calls (and a worker where only one can). */
async function arrange(s: Stack, path: string, state: Arranged): Promise<void> {
  const id = cacheKeyOf(path);
  const keys = redisKeys(s.config.queue.name);
  const add = (opts = {}) => s.queue.add(UPLOAD_JOB_NAME, { cacheKey: id, path }, { ...uploadJobOptions(s.config.queue, id), ...opts });
  const run = (processor: () => Promise<unknown>) => {
    worker = new Worker(s.config.queue.name, processor, { connection: s.redis.duplicate(), prefix: queuePrefix(s.config.queue.name) });
    worker.on('error', () => undefined);
  };
  if (state === 'uploaded') await s.redis.set(keys.uploaded(id), '1');
  if (state === 'waiting') await add();
  if (state === 'delayed') await add({ delay: 60_000 });
  if (state === 'active') {
    await add();
    const held = new Promise<void>((resolve) => (release = resolve));
    run(() => held);
  }
  if (state === 'failed') {
    await add({ attempts: 1 });
    run(async () => {
      throw new UnrecoverableError('failed on purpose');
    });
  }
  if (state === 'completed') {
    await add({ removeOnComplete: false });
    run(async () => 'done');
  }
  if (state === 'active' || state === 'failed' || state === 'completed') {
    await waitFor(async () => (await (await s.queue.getJob(id))?.getState()) === state, { what: `the job to be ${state}` });
    if (state !== 'active') await worker!.close();
  }
}

describe('the dedup rule, against real jobs', () => {
  it.each([
    // state, bytes there, outcome, bytes after, job after
    ['uploaded', false, 'uploaded', 'none', undefined],
    ['uploaded', true, 'uploaded', 'old', undefined],
    ['waiting', true, 'already-queued', 'old', 'waiting'],
    ['waiting', false, 'refilled', 'new', 'waiting'],
    ['delayed', true, 'already-queued', 'old', 'delayed'],
    ['delayed', false, 'refilled', 'new', 'delayed'],
    ['active', true, 'already-queued', 'old', 'active'],
    ['active', false, 'refilled', 'new', 'active'],
    ['failed', true, 'requeued', 'new', 'waiting'],
    ['failed', false, 'requeued', 'new', 'waiting'],
    ['completed', false, 'requeued', 'new', 'waiting'],
    ['none', false, 'queued', 'new', 'waiting'],
    ['none', true, 'queued', 'new', 'waiting'],
  ] as const)('job %s, bytes there: %s → %s; bytes: %s, job: %s', async (state, present, outcome, bytesAfter, jobAfter) => {
    stack = await startStack({ noUploader: true, env: { CACHE_RECENT_KEYS: '0' } });
    const s = stack;
    const path = `/sig/dedup/plain/https://example.com/${state}.jpg@png`;
    const id = cacheKeyOf(path);
    const payloadKey = redisKeys(s.config.queue.name).payload(id);
    await arrange(s, path, state);
    if (present) await s.redis.set(payloadKey, oldPayload);

    expect((await s.get(path)).body.equals(s.stub.imageFor(path))).toBe(true);
    expect(await s.outcomeOf(path)).toBe(outcome);

    const stored = await s.redis.getBuffer(payloadKey);
    const body = stored && 'body' in decodePayload(stored) ? (decodePayload(stored) as { body: Buffer }).body : undefined;
    const expectedBody = { none: undefined, old: OLD, new: s.stub.imageFor(path) }[bytesAfter];
    expect(body).toEqual(expectedBody);
    expect(await (await s.queue.getJob(id))?.getState()).toBe(jobAfter);
    if (jobAfter) expect(await s.queue.getJobCountByTypes('waiting', 'active', 'delayed', 'failed', 'completed')).toBe(1);
  });
});
