import { afterEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { startStack, type Stack } from './support/stack.js';

let stack: Stack | undefined;
afterEach(async (ctx) => {
  if (ctx.task.result?.state === 'fail') console.log(JSON.stringify(stack?.logs, null, 1), stack?.outcomes, stack?.tap.requests.map(r => r.method + ' ' + r.url));
  await stack?.stop();
  stack = undefined;
});

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

describe('a 200 from imgproxy', () => {
  it('reaches the client byte-exact and lands in the bucket at md5(path) with its metadata', async () => {
    stack = await startStack({ env: { S3_FOLDER: 'processed' } });
    const path = '/sig123/rs:fit:300:300/plain/https://example.com/cat.jpg@png';
    const reply = await stack.get(path);
    expect(reply.status).toBe(200);
    expect(reply.body.equals(stack.stub.imageFor(path))).toBe(true);
    expect(reply.headers['content-type']).toBe('image/png');
    expect(reply.headers['cache-control']).toBe('max-age=31536000, public');
    expect(reply.headers['content-disposition']).toBe('inline; filename="image.png"');

    const stored = await stack.waitForObject(path);
    expect(stack.keyFor(path)).toBe(`processed/${md5(path)}`);
    expect(stored.body.equals(stack.stub.imageFor(path))).toBe(true);
    expect(stored.contentType).toBe('image/png');
    expect(stored.cacheControl).toBe('max-age=31536000, public');
    expect(stored.contentDisposition).toBe('inline; filename="image.png"');
    expect(await stack.keys()).toEqual([`processed/${md5(path)}`]);
  });
});
